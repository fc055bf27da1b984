package prpc_test

// Fuzz targets of the pRPC server's request path: whatever a caller sends
// (body, Content-Type, Content-Encoding, Accept, X-Prpc-Grpc-Timeout,
// metadata headers), the server never panics and never answers anything but
// OK or InvalidArgument (400, 406, 413 or 415) before the handler; a body
// that decodes reaches the handler as exactly the message it encodes, and
// one that does not never reaches it.
//
//	go test -run '^$' -fuzz FuzzServeRequest -fuzztime 60s ./prpc
//	go test -run '^$' -fuzz FuzzParseTimeout -fuzztime 30s ./prpc

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
)

// fuzzMaxBody is the server's body limit in the fuzz target: small, so that
// the fuzzer reaches 413 with compressed bodies.
const fuzzMaxBody = 4096

// fuzzMethods are the methods the fuzzer calls, with their request types.
var fuzzMethods = []struct {
	name   string
	newReq func() proto.Message
}{
	{swarmingv1.ExternalScheduler_AssignTasks_FullMethodName, func() proto.Message { return &swarmingv1.AssignTasksRequest{} }},
	{swarmingv1.ExternalScheduler_NotifyTasks_FullMethodName, func() proto.Message { return &swarmingv1.NotifyTasksRequest{} }},
	{swarmingv1.ExternalScheduler_GetCancellations_FullMethodName, func() proto.Message { return &swarmingv1.GetCancellationsRequest{} }},
	{swarmingv1.ExternalScheduler_GetCallbacks_FullMethodName, func() proto.Message { return &swarmingv1.GetCallbacksRequest{} }},
	{qschedulerv1.QSchedulerAdmin_CreateAccount_FullMethodName, func() proto.Message { return &qschedulerv1.CreateAccountRequest{} }},
	{qschedulerv1.QSchedulerAdmin_ModAccount_FullMethodName, func() proto.Message { return &qschedulerv1.ModAccountRequest{} }},
	{qschedulerv1.QSchedulerAdmin_ModSchedulerPool_FullMethodName, func() proto.Message { return &qschedulerv1.ModSchedulerPoolRequest{} }},
	{qschedulerv1.QSchedulerView_InspectPool_FullMethodName, func() proto.Message { return &qschedulerv1.InspectPoolRequest{} }},
}

// fuzzContentTypes are the Content-Types the selector picks; past its end
// the fuzzed string is sent.
var fuzzContentTypes = []struct {
	ct  string
	enc prpc.Encoding
}{
	{prpc.ContentTypeBinary, prpc.EncodingBinary},
	{prpc.ContentTypeJSON, prpc.EncodingJSON},
	{prpc.ContentTypeText, prpc.EncodingText},
}

// Content-Encoding modes of the fuzz target.
const (
	ceNone     = iota // no header
	ceGzip            // the body gzipped, with the header
	ceGzipRaw         // the header, the body as it is
	ceIdentity        // "identity"
	ceOther           // an encoding the server does not read
	numCE
)

// captured holds the request message the handler chain received.
type captured struct {
	mu  sync.Mutex
	msg proto.Message
	n   int
}

func (c *captured) take() (proto.Message, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, n := c.msg, c.n
	c.msg, c.n = nil, 0
	return m, n
}

// newFuzzServer serves the three real service descriptions; an interceptor
// records the decoded request and answers an empty message, so that only
// the transport's decoding is under test.
func newFuzzServer() (*prpc.Server, *captured) {
	c := &captured{}
	record := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.msg, _ = req.(proto.Message)
		c.n++
		return &emptypb.Empty{}, nil
	}
	s := prpc.NewServer(prpc.WithUnaryInterceptors(record), prpc.WithMaxBodySize(fuzzMaxBody, "--max-request-bytes"))
	swarmingv1.RegisterExternalSchedulerServer(s, swarmingv1.UnimplementedExternalSchedulerServer{})
	qschedulerv1.RegisterQSchedulerAdminServer(s, qschedulerv1.UnimplementedQSchedulerAdminServer{})
	qschedulerv1.RegisterQSchedulerViewServer(s, qschedulerv1.UnimplementedQSchedulerViewServer{})
	return s, c
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// gunzip decompresses at most limit+1 bytes of b.
func gunzip(b []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(io.LimitReader(zr, limit+1))
}

// decodeAs decodes b as the server documents it: an empty (JSON and text:
// blank) body is an empty message, unknown JSON and text fields are
// ignored.
func decodeAs(b []byte, m proto.Message, enc prpc.Encoding) error {
	switch enc {
	case prpc.EncodingJSON:
		if len(bytes.TrimSpace(b)) == 0 {
			return nil
		}
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
	case prpc.EncodingText:
		return prototext.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}

// fuzzSeedMessages are valid requests, encoded in every encoding as seeds.
func fuzzSeedMessages() []struct {
	method int
	msg    proto.Message
} {
	t0 := timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC))
	return []struct {
		method int
		msg    proto.Message
	}{
		{0, &swarmingv1.AssignTasksRequest{SchedulerId: "lab", Time: t0, IdleBots: []*swarmingv1.IdleBot{
			{BotId: "bot1", Dimensions: []string{"id:bot1", "os:Linux", "pool:lab"}}, {BotId: "bot2"}}}},
		{1, &swarmingv1.NotifyTasksRequest{SchedulerId: "lab", IsCallback: true, Notifications: []*swarmingv1.NotifyTasksItem{{
			Time: t0, Task: &swarmingv1.TaskSpec{Id: "t1", State: swarmingv1.TaskSpec_PENDING, EnqueuedTime: t0, BotId: "b",
				Tags: []string{"qs_account:a", "pool:lab"}, Slices: []*swarmingv1.SliceSpec{{Dimensions: []string{"pool:lab", "os:ü"}}, {}}},
		}}}},
		{2, &swarmingv1.GetCancellationsRequest{SchedulerId: "lab"}},
		{3, &swarmingv1.GetCallbacksRequest{SchedulerId: "lab"}},
		{4, &qschedulerv1.CreateAccountRequest{PoolId: "lab", AccountId: "a", Config: &statev1.AccountConfig{
			ChargeRate: []float32{5, 1.5}, MaxChargeSeconds: 600, MaxFanout: 3, PerLabelTaskLimits: map[string]int32{"model": 2}}}},
		{5, &qschedulerv1.ModAccountRequest{PoolId: "lab", AccountId: "a", MaxFanout: wrapperspb.Int32(0), ResetBalance: true}},
		{6, &qschedulerv1.ModSchedulerPoolRequest{PoolId: "lab"}},
		{7, &qschedulerv1.InspectPoolRequest{PoolId: "lab", MaxItems: 20}},
	}
}

func FuzzServeRequest(f *testing.F) {
	for i, s := range fuzzSeedMessages() {
		for ct := range fuzzContentTypes {
			var b []byte
			var err error
			switch fuzzContentTypes[ct].enc {
			case prpc.EncodingJSON:
				b, err = protojson.Marshal(s.msg)
			case prpc.EncodingText:
				b, err = prototext.Marshal(s.msg)
			default:
				b, err = proto.Marshal(s.msg)
			}
			if err != nil {
				f.Fatal(err)
			}
			ce := uint8((i + ct) % numCE)
			f.Add(uint8(s.method), uint8(ct), "", ce, "", "", "", "", b)
		}
	}
	// Headers Swarming sends, and malformed ones.
	valid, _ := proto.Marshal(fuzzSeedMessages()[0].msg)
	f.Add(uint8(0), uint8(0), "", uint8(ceNone), "20S", prpc.ContentTypeBinary, "Authorization", "Bearer x", valid)
	f.Add(uint8(0), uint8(3), "application/prpc; encoding=json", uint8(ceGzip), "99999999H", "application/json;q=0.5, */*;q=0.1", "X-Blob-Bin", "AAEC", []byte(`{"schedulerId":"lab","idleBots":[{"botId":"b"}]}`))
	f.Add(uint8(1), uint8(3), "text/plain", uint8(ceNone), "1.5S", "text/html", "X-Bad-Bin", "!!", []byte("{}"))
	f.Add(uint8(1), uint8(3), "application/prpc; encoding=\"", uint8(ceGzipRaw), "-5S", "*/*;q=2", "", "", []byte("\x1f\x8b\x08\x00"))
	f.Add(uint8(0), uint8(0), "", uint8(ceNone), "", "", "", "", []byte("\x0a\x01\xff"))
	f.Add(uint8(0), uint8(1), "", uint8(ceNone), "", "", "", "", []byte(`{"time": "2099-13-01T00:00:00Z"}`))
	f.Add(uint8(0), uint8(2), "", uint8(ceOther), "0n", "", "", "", []byte(`time: {seconds: -99999999999999}`))
	f.Add(uint8(0), uint8(0), "", uint8(ceGzip), "", "", "", "", bytes.Repeat([]byte("\x12\x00"), fuzzMaxBody))

	srv, got := newFuzzServer()
	f.Fuzz(func(t *testing.T, method, ctSel uint8, ctStr string, ce uint8, timeout, accept, hdrKey, hdrVal string, body []byte) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		ct, enc, ctKnown := ctStr, prpc.Encoding(-1), false
		if int(ctSel) < len(fuzzContentTypes) {
			ct, enc, ctKnown = fuzzContentTypes[ctSel].ct, fuzzContentTypes[ctSel].enc, true
		}
		sent, plain := body, body // what goes on the wire, what it decompresses to
		contentEncoding := ""
		switch ce % numCE {
		case ceGzip:
			contentEncoding, sent = "gzip", gzipped(body)
		case ceGzipRaw:
			contentEncoding = "gzip"
		case ceIdentity:
			contentEncoding = "identity"
		case ceOther:
			contentEncoding = "br"
		}

		req := httptest.NewRequest(http.MethodPost, "/prpc"+m.name, bytes.NewReader(sent))
		req.Header.Set("Content-Type", ct)
		if contentEncoding != "" {
			req.Header.Set("Content-Encoding", contentEncoding)
		}
		if timeout != "" {
			req.Header.Set(prpc.HeaderTimeout, timeout)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if hdrKey != "" {
			req.Header[hdrKey] = []string{hdrVal}
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req) // a panic fails the fuzz target
		res := rec.Result()
		resBody := rec.Body.Bytes()
		code, err := strconv.Atoi(res.Header.Get(prpc.HeaderGRPCCode))
		if err != nil {
			t.Fatalf("HTTP %d without a valid %s header: %q", res.StatusCode, prpc.HeaderGRPCCode, resBody)
		}
		msg, calls := got.take()

		if codes.Code(code) != codes.OK {
			switch {
			case codes.Code(code) != codes.InvalidArgument:
				t.Fatalf("answer %v (HTTP %d, %q), want OK or InvalidArgument", codes.Code(code), res.StatusCode, resBody)
			case res.StatusCode != http.StatusBadRequest && res.StatusCode != http.StatusNotAcceptable &&
				res.StatusCode != http.StatusRequestEntityTooLarge && res.StatusCode != http.StatusUnsupportedMediaType:
				t.Fatalf("InvalidArgument with HTTP %d (%q), want 400, 406, 413 or 415", res.StatusCode, resBody)
			case calls != 0:
				t.Fatalf("a rejected call (HTTP %d, %q) reached the handler", res.StatusCode, resBody)
			case len(resBody) == 0 || res.Header.Get("Content-Type") != "text/plain":
				t.Fatalf("error answer without a text message: Content-Type %q, body %q", res.Header.Get("Content-Type"), resBody)
			case len(resBody) > 4*(len(sent)+len(ct)+len(timeout)+len(accept)+len(hdrKey)+len(hdrVal))+4096:
				t.Fatalf("error message of %d bytes for a request of %d", len(resBody), len(sent))
			}
		} else {
			if res.StatusCode != http.StatusOK {
				t.Fatalf("code OK with HTTP %d", res.StatusCode)
			}
			if calls != 1 || msg == nil {
				t.Fatalf("OK, but the handler was called %d times", calls)
			}
		}
		if !ctKnown {
			return
		}

		// With a Content-Type of the three and no Accept or extra header
		// (their own rules, checked above), the outcome follows from the
		// timeout, the encoding and the body alone.
		if accept != "" || hdrKey != "" {
			return
		}
		if _, err := prpc.ParseTimeout(timeout); timeout != "" && err != nil {
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("timeout %q (%v): HTTP %d, want 400", timeout, err, res.StatusCode)
			}
			return
		}
		mode := ce % numCE
		if mode == ceGzipRaw {
			var gzErr error
			if plain, gzErr = gunzip(body, fuzzMaxBody); gzErr != nil {
				mode = ceOther // undecodable gzip: refused
			}
		}
		want := m.newReq()
		decodable := mode != ceOther && len(sent) <= fuzzMaxBody && len(plain) <= fuzzMaxBody && decodeAs(plain, want, enc) == nil
		switch {
		case decodable && codes.Code(code) != codes.OK:
			t.Fatalf("a body that decodes as %v was refused: HTTP %d %q", enc, res.StatusCode, resBody)
		case !decodable && codes.Code(code) == codes.OK:
			t.Fatalf("a body that does not decode as %v was accepted as %v", enc, msg)
		case decodable && !proto.Equal(msg, want):
			t.Fatalf("the handler got %v, the body encodes %v", msg, want)
		}
		if !decodable && mode == ceNone && len(plain) <= fuzzMaxBody && res.StatusCode != http.StatusBadRequest {
			t.Fatalf("an undecodable body: HTTP %d, want 400", res.StatusCode)
		}
	})
}

// FuzzParseTimeout: ParseTimeout never panics, accepts exactly 1 to 8
// digits and a unit, never returns a negative duration, and reads back
// what FormatTimeout writes, rounded up at most to the unit.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"20S", "500m", "1500000u", "2M", "1H", "99999999n", "99999999H", "0n", "",
		"S", "10", "10x", "-5S", "1.5S", "123456789S", "+5S", "0x10S", "5 S", "٣S", "00000000M"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := prpc.ParseTimeout(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("ParseTimeout(%q) = %v with error %v", s, d, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("ParseTimeout(%q) = %v, negative", s, d)
		}
		digits, unit := s[:len(s)-1], s[len(s)-1]
		if len(digits) < 1 || len(digits) > 8 || strings.Trim(digits, "0123456789") != "" || !strings.ContainsRune("HMSmun", rune(unit)) {
			t.Fatalf("ParseTimeout(%q) = %v, want an error", s, d)
		}
		back := prpc.FormatTimeout(d)
		d2, err := prpc.ParseTimeout(back)
		if err != nil {
			t.Fatalf("ParseTimeout(FormatTimeout(%v) = %q): %v", d, back, err)
		}
		if d2 < d {
			t.Fatalf("FormatTimeout(%v) = %q reads back shorter: %v", d, back, d2)
		}
		if d2-d >= time.Hour && d < time.Duration(1<<63-1) {
			t.Fatalf("FormatTimeout(%v) = %q reads back %v, an hour or more longer", d, back, d2)
		}
	})
}
