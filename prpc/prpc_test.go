package prpc_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
)

const assignPath = "/prpc/swarming.v1.ExternalScheduler/AssignTasks"

// seenCall is what a fake handler observed about its context.
type seenCall struct {
	method      string
	md          metadata.MD
	deadline    time.Time
	hasDeadline bool
	prpc        bool
	grpcMethod  string
	peerAddr    string
}

// fakeES is a fake swarming.v1.ExternalScheduler.
type fakeES struct {
	swarmingv1.UnimplementedExternalSchedulerServer

	mu         sync.Mutex
	fail       error // returned by every method when set
	panicWith  any   // panicked with by every method when set
	seen       []seenCall
	lastAssign *swarmingv1.AssignTasksRequest
	lastNotify *swarmingv1.NotifyTasksRequest
}

func (f *fakeES) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeES) setPanic(v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.panicWith = v
}

func (f *fakeES) calls() []seenCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

func (f *fakeES) last(t *testing.T) seenCall {
	t.Helper()
	c := f.calls()
	if len(c) == 0 {
		t.Fatal("handler was not called")
	}
	return c[len(c)-1]
}

func (f *fakeES) record(ctx context.Context, name string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	dl, ok := ctx.Deadline()
	c := seenCall{method: name, md: md.Copy(), deadline: dl, hasDeadline: ok, prpc: prpc.FromPRPC(ctx)}
	c.grpcMethod, _ = grpc.Method(ctx)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		c.peerAddr = p.Addr.String()
	}
	f.mu.Lock()
	f.seen = append(f.seen, c)
	fail, pv := f.fail, f.panicWith
	f.mu.Unlock()
	if pv != nil {
		panic(pv)
	}
	return fail
}

func (f *fakeES) AssignTasks(ctx context.Context, req *swarmingv1.AssignTasksRequest) (*swarmingv1.AssignTasksResponse, error) {
	if err := f.record(ctx, "AssignTasks"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.lastAssign = proto.Clone(req).(*swarmingv1.AssignTasksRequest)
	f.mu.Unlock()
	// Response metadata: a plain, a binary and a reserved key (dropped).
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-served-by", "fake", "x-blob-bin", "\x00\x01\xff", "content-type", "evil/type"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t"))
	return assignResponse(req), nil
}

func assignResponse(req *swarmingv1.AssignTasksRequest) *swarmingv1.AssignTasksResponse {
	resp := &swarmingv1.AssignTasksResponse{}
	for _, b := range req.GetIdleBots() {
		resp.Assignments = append(resp.Assignments, &swarmingv1.TaskAssignment{
			BotId: b.GetBotId(), TaskId: "task-for-" + b.GetBotId(), SliceNumber: int32(len(b.GetDimensions())),
		})
	}
	return resp
}

func (f *fakeES) GetCancellations(ctx context.Context, req *swarmingv1.GetCancellationsRequest) (*swarmingv1.GetCancellationsResponse, error) {
	if err := f.record(ctx, "GetCancellations"); err != nil {
		return nil, err
	}
	return &swarmingv1.GetCancellationsResponse{Cancellations: []*swarmingv1.GetCancellationsResponse_Cancellation{{
		BotId: "bot1", TaskId: "t1", Reason: swarmingv1.GetCancellationsResponse_Cancellation_PREEMPTED, ExtraInfo: req.GetSchedulerId(),
	}}}, nil
}

func (f *fakeES) NotifyTasks(ctx context.Context, req *swarmingv1.NotifyTasksRequest) (*swarmingv1.NotifyTasksResponse, error) {
	if err := f.record(ctx, "NotifyTasks"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.lastNotify = proto.Clone(req).(*swarmingv1.NotifyTasksRequest)
	f.mu.Unlock()
	return &swarmingv1.NotifyTasksResponse{}, nil
}

func (f *fakeES) GetCallbacks(ctx context.Context, req *swarmingv1.GetCallbacksRequest) (*swarmingv1.GetCallbacksResponse, error) {
	if err := f.record(ctx, "GetCallbacks"); err != nil {
		return nil, err
	}
	return &swarmingv1.GetCallbacksResponse{TaskIds: []string{req.GetSchedulerId() + "-1", req.GetSchedulerId() + "-2"}}, nil
}

// fakeView is a fake qscheduler.v1.QSchedulerView.
type fakeView struct {
	qschedulerv1.UnimplementedQSchedulerViewServer
}

func (fakeView) ListSchedulerPools(context.Context, *qschedulerv1.ListSchedulerPoolsRequest) (*qschedulerv1.ListSchedulerPoolsResponse, error) {
	return &qschedulerv1.ListSchedulerPoolsResponse{PoolIds: []string{"pool-a", "pool-b"}}, nil
}

func (fakeView) InspectPool(_ context.Context, req *qschedulerv1.InspectPoolRequest) (*qschedulerv1.InspectPoolResponse, error) {
	if req.GetPoolId() != "pool-a" {
		return nil, status.Errorf(codes.NotFound, "pool %q not found", req.GetPoolId())
	}
	return &qschedulerv1.InspectPoolResponse{NumWaitingTasks: 3, NumRunningTasks: 2, NumIdleBots: 1}, nil
}

// fakeAdmin is a fake qscheduler.v1.QSchedulerAdmin.
type fakeAdmin struct {
	qschedulerv1.UnimplementedQSchedulerAdminServer
}

func (fakeAdmin) CreateSchedulerPool(_ context.Context, req *qschedulerv1.CreateSchedulerPoolRequest) (*qschedulerv1.CreateSchedulerPoolResponse, error) {
	if req.GetPoolId() == "pool-a" {
		return nil, status.Errorf(codes.AlreadyExists, "pool %q already exists", req.GetPoolId())
	}
	return &qschedulerv1.CreateSchedulerPoolResponse{}, nil
}

type env struct {
	ts *httptest.Server
	es *fakeES
}

func newEnv(t *testing.T, opts ...prpc.Option) *env {
	t.Helper()
	s := prpc.NewServer(opts...)
	es := &fakeES{}
	swarmingv1.RegisterExternalSchedulerServer(s, es)
	qschedulerv1.RegisterQSchedulerViewServer(s, fakeView{})
	qschedulerv1.RegisterQSchedulerAdminServer(s, fakeAdmin{})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return &env{ts: ts, es: es}
}

// do sends a raw HTTP request; hdr holds header name/value pairs.
func (e *env) do(t *testing.T, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// post sends a POST, with Content-Type binary unless hdr names one.
func (e *env) post(t *testing.T, path string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	named := false
	for i := 0; i+1 < len(hdr); i += 2 {
		named = named || http.CanonicalHeaderKey(hdr[i]) == "Content-Type"
	}
	if !named {
		hdr = append([]string{"Content-Type", prpc.ContentTypeBinary}, hdr...)
	}
	return e.do(t, http.MethodPost, path, bytes.NewReader(body), hdr...)
}

func sampleAssign() *swarmingv1.AssignTasksRequest {
	return &swarmingv1.AssignTasksRequest{
		SchedulerId: "pool-a",
		Time:        timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 8000, time.UTC)),
		IdleBots: []*swarmingv1.IdleBot{
			{BotId: "bot1", Dimensions: []string{"id:bot1", "os:Linux", "pool:pool-a"}},
			{BotId: "bot2", Dimensions: []string{"id:bot2", "pool:pool-a"}},
		},
	}
}

func mustMarshal(t *testing.T, m proto.Message, enc prpc.Encoding) []byte {
	t.Helper()
	var b []byte
	var err error
	switch enc {
	case prpc.EncodingJSON:
		b, err = protojson.Marshal(m)
	case prpc.EncodingText:
		b, err = prototext.Marshal(m)
	default:
		b, err = proto.Marshal(m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeResponse checks the response's Content-Type and decodes its body.
func decodeResponse(t *testing.T, resp *http.Response, body []byte, want prpc.Encoding, m proto.Message) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != want.ContentType() {
		t.Fatalf("Content-Type = %q, want %q", ct, want.ContentType())
	}
	var err error
	switch want {
	case prpc.EncodingJSON:
		rest, ok := bytes.CutPrefix(body, []byte(")]}'\n"))
		if !ok {
			t.Fatalf("JSON body lacks the )]}' prefix: %q", body)
		}
		err = protojson.Unmarshal(rest, m)
	case prpc.EncodingText:
		err = prototext.Unmarshal(body, m)
	default:
		err = proto.Unmarshal(body, m)
	}
	if err != nil {
		t.Fatalf("decoding %s body %q: %v", want, body, err)
	}
}

func checkOK(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Prpc-Grpc-Code") != "0" {
		t.Fatalf("status %d, X-Prpc-Grpc-Code %q, body %q; want 200 and 0",
			resp.StatusCode, resp.Header.Get("X-Prpc-Grpc-Code"), body)
	}
}

func checkError(t *testing.T, resp *http.Response, body []byte, httpStatus int, code codes.Code) {
	t.Helper()
	if resp.StatusCode != httpStatus {
		t.Errorf("HTTP status %d, want %d (body %q)", resp.StatusCode, httpStatus, body)
	}
	if got := resp.Header.Get("X-Prpc-Grpc-Code"); got != strconv.Itoa(int(code)) {
		t.Errorf("X-Prpc-Grpc-Code %q, want %d (%v)", got, code, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if len(body) == 0 {
		t.Errorf("empty error body")
	}
}

func TestRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		name        string
		contentType string
		enc         prpc.Encoding
		accept      string
	}{
		{"binary", "application/prpc; encoding=binary", prpc.EncodingBinary, "application/prpc; encoding=binary"},
		{"json", "application/json", prpc.EncodingJSON, "application/json"},
		{"prpc-json", "application/prpc; encoding=json", prpc.EncodingJSON, "application/prpc; encoding=json"},
		{"text", "application/prpc; encoding=text", prpc.EncodingText, "application/prpc; encoding=text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			req := sampleAssign()
			resp, body := e.post(t, assignPath, mustMarshal(t, req, tc.enc), "Content-Type", tc.contentType, "Accept", tc.accept)
			checkOK(t, resp, body)
			got := &swarmingv1.AssignTasksResponse{}
			decodeResponse(t, resp, body, tc.enc, got)
			if want := assignResponse(req); !proto.Equal(got, want) {
				t.Errorf("response %v, want %v", got, want)
			}
			e.es.mu.Lock()
			seen := e.es.lastAssign
			e.es.mu.Unlock()
			if !proto.Equal(seen, req) {
				t.Errorf("handler saw %v, want %v", seen, req)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
		})
	}
}

func TestJSONPrefixAndNames(t *testing.T) {
	e := newEnv(t)
	// Both the proto names and the JSON names are accepted; unknown fields
	// are ignored.
	body := []byte(`{"scheduler_id":"p","idleBots":[{"botId":"b","dimensions":["id:b"]}],"future_field":1}`)
	resp, rb := e.post(t, assignPath, body, "Content-Type", "application/json", "Accept", "application/json")
	checkOK(t, resp, rb)
	if !bytes.HasPrefix(rb, []byte(")]}'\n{")) {
		t.Fatalf("body %q does not start with )]}' and a newline", rb)
	}
	got := &swarmingv1.AssignTasksResponse{}
	decodeResponse(t, resp, rb, prpc.EncodingJSON, got)
	if len(got.Assignments) != 1 || got.Assignments[0].TaskId != "task-for-b" {
		t.Errorf("response %v", got)
	}
}

func TestRequestContentTypes(t *testing.T) {
	for _, ct := range []string{"application/prpc", "application/prpc; encoding=binary", "application/x-protobuf", "application/protobuf", "application/prpc; encoding=BINARY"} {
		t.Run(ct, func(t *testing.T) {
			e := newEnv(t)
			resp, body := e.post(t, assignPath, mustMarshal(t, sampleAssign(), prpc.EncodingBinary), "Content-Type", ct)
			checkOK(t, resp, body)
			got := &swarmingv1.AssignTasksResponse{}
			decodeResponse(t, resp, body, prpc.EncodingBinary, got)
			if !proto.Equal(got, assignResponse(sampleAssign())) {
				t.Errorf("response %v", got)
			}
		})
	}
}

func TestAcceptChoosesResponseEncoding(t *testing.T) {
	for _, tc := range []struct {
		accept string
		want   prpc.Encoding
	}{
		{"", prpc.EncodingBinary},
		{"*/*", prpc.EncodingBinary},
		{"application/*", prpc.EncodingBinary},
		{"application/prpc", prpc.EncodingBinary},
		{"application/prpc; encoding=binary", prpc.EncodingBinary},
		{"application/x-protobuf", prpc.EncodingBinary},
		{"application/json", prpc.EncodingJSON},
		{"application/json; charset=utf-8", prpc.EncodingJSON},
		{"application/prpc; encoding=json", prpc.EncodingJSON},
		{"application/prpc; encoding=text", prpc.EncodingText},
		{"text/html, application/json;q=0.9, */*;q=0.8", prpc.EncodingJSON},
		{"application/json;q=0.5, application/prpc; encoding=text", prpc.EncodingText},
		{"application/json;q=0, */*", prpc.EncodingBinary},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			e := newEnv(t)
			hdr := []string{"Content-Type", "application/prpc; encoding=binary"}
			if tc.accept != "" {
				hdr = append(hdr, "Accept", tc.accept)
			}
			resp, body := e.post(t, assignPath, mustMarshal(t, sampleAssign(), prpc.EncodingBinary), hdr...)
			checkOK(t, resp, body)
			got := &swarmingv1.AssignTasksResponse{}
			decodeResponse(t, resp, body, tc.want, got)
			if !proto.Equal(got, assignResponse(sampleAssign())) {
				t.Errorf("response %v", got)
			}
		})
	}
	t.Run("unsupported", func(t *testing.T) {
		e := newEnv(t)
		resp, body := e.post(t, assignPath, nil, "Accept", "image/png")
		checkError(t, resp, body, http.StatusNotAcceptable, codes.InvalidArgument)
		if n := len(e.es.calls()); n != 0 {
			t.Errorf("handler called %d times", n)
		}
	})
}

func TestErrorMapping(t *testing.T) {
	type tc struct {
		name       string
		err        error
		httpStatus int
		code       codes.Code
		msg        string
	}
	cases := []tc{
		{"plain error", errors.New("boom"), 500, codes.Unknown, "boom"},
		{"context deadline", context.DeadlineExceeded, 504, codes.DeadlineExceeded, context.DeadlineExceeded.Error()},
		{"wrapped cancel", fmt.Errorf("waiting: %w", context.Canceled), 499, codes.Canceled, "waiting: context canceled"},
		{"wrapped status", fmt.Errorf("ctx: %w", status.Error(codes.NotFound, "gone")), 404, codes.NotFound, "ctx: rpc error: code = NotFound desc = gone"},
	}
	want := map[codes.Code]int{
		codes.Canceled: 499, codes.Unknown: 500, codes.InvalidArgument: 400, codes.DeadlineExceeded: 504,
		codes.NotFound: 404, codes.AlreadyExists: 409, codes.PermissionDenied: 403, codes.ResourceExhausted: 429,
		codes.FailedPrecondition: 500, codes.Aborted: 500, codes.OutOfRange: 500, codes.Unimplemented: 501,
		codes.Internal: 500, codes.Unavailable: 503, codes.DataLoss: 500, codes.Unauthenticated: 401,
	}
	for code := codes.Canceled; code <= codes.Unauthenticated; code++ {
		msg := "failure: " + code.String() + " ünïcode"
		cases = append(cases, tc{code.String(), status.Error(code, msg), want[code], code, msg})
	}
	e := newEnv(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.es.setFail(c.err)
			resp, body := e.post(t, assignPath, mustMarshal(t, sampleAssign(), prpc.EncodingBinary),
				"Content-Type", "application/prpc; encoding=binary", "Accept", "application/prpc; encoding=binary")
			checkError(t, resp, body, c.httpStatus, c.code)
			if string(body) != c.msg+"\n" {
				t.Errorf("body %q, want %q", body, c.msg+"\n")
			}
			if got := prpc.HTTPStatus(c.code); got != c.httpStatus {
				t.Errorf("HTTPStatus(%v) = %d, want %d", c.code, got, c.httpStatus)
			}
		})
	}
}

func TestQSchedulerServiceErrorsOverHTTP(t *testing.T) {
	e := newEnv(t)
	b := mustMarshal(t, &qschedulerv1.InspectPoolRequest{PoolId: "nope"}, prpc.EncodingBinary)
	resp, body := e.post(t, "/prpc/qscheduler.v1.QSchedulerView/InspectPool", b)
	checkError(t, resp, body, 404, codes.NotFound)
	if string(body) != "pool \"nope\" not found\n" {
		t.Errorf("body %q", body)
	}
	b = mustMarshal(t, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "pool-a"}, prpc.EncodingJSON)
	resp, body = e.post(t, "/prpc/qscheduler.v1.QSchedulerAdmin/CreateSchedulerPool", b, "Content-Type", "application/json")
	checkError(t, resp, body, 409, codes.AlreadyExists)
}

// streamDesc is a service with a streaming method, to check that streams
// are refused.
var streamDesc = grpc.ServiceDesc{
	ServiceName: "test.v1.Streamer",
	HandlerType: (*any)(nil),
	Streams:     []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(any, grpc.ServerStream) error { return nil }}},
}

func TestUnknownServiceOrMethod(t *testing.T) {
	e := newEnv(t)
	s := prpc.NewServer()
	s.RegisterService(&streamDesc, struct{}{})
	streams := httptest.NewServer(s)
	defer streams.Close()
	for _, path := range []string{
		"/prpc/swarming.v1.Nope/AssignTasks",
		"/prpc/swarming.v1.ExternalScheduler/Nope",
		"/prpc/swarming.v1.ExternalScheduler",
		"/prpc/swarming.v1.ExternalScheduler/",
		"/prpc//AssignTasks",
		"/prpc/swarming.v1.ExternalScheduler/AssignTasks/extra",
		"/prpc/",
	} {
		t.Run(path, func(t *testing.T) {
			resp, body := e.post(t, path, nil)
			checkError(t, resp, body, http.StatusNotImplemented, codes.Unimplemented)
		})
	}
	t.Run("stream", func(t *testing.T) {
		resp, err := streams.Client().Post(streams.URL+"/prpc/test.v1.Streamer/Watch", "application/prpc; encoding=binary", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		checkError(t, resp, body, http.StatusNotImplemented, codes.Unimplemented)
	})
	t.Run("not prpc", func(t *testing.T) {
		resp, body := e.post(t, "/other/path", nil)
		checkError(t, resp, body, http.StatusNotFound, codes.NotFound)
	})
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch} {
		t.Run(m, func(t *testing.T) {
			resp, body := e.do(t, m, assignPath, nil)
			checkError(t, resp, body, http.StatusMethodNotAllowed, codes.Unimplemented)
			if got := resp.Header.Get("Allow"); got != "POST" {
				t.Errorf("Allow %q, want POST", got)
			}
		})
	}
	if n := len(e.es.calls()); n != 0 {
		t.Errorf("handler called %d times", n)
	}
}

func TestUnsupportedMediaType(t *testing.T) {
	e := newEnv(t)
	b := mustMarshal(t, sampleAssign(), prpc.EncodingBinary)
	// Without a Content-Type: never taken for binary.
	resp, body := e.do(t, http.MethodPost, assignPath, bytes.NewReader(b))
	checkError(t, resp, body, http.StatusUnsupportedMediaType, codes.InvalidArgument)
	if !strings.Contains(string(body), "no Content-Type") {
		t.Errorf("no Content-Type: %q", body)
	}
	for _, hdr := range [][]string{
		{"Content-Type", "application/x-www-form-urlencoded"},
		{"Content-Type", "multipart/form-data; boundary=x"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Type", "text/html"},
		{"Content-Type", "application/xml"},
		{"Content-Type", "application/prpc; encoding=yaml"},
		{"Content-Type", "text/plain"},
		{"Content-Type", "not a media type;;"},
		{"Content-Type", "application/prpc; encoding=binary", "Content-Encoding", "br"},
	} {
		t.Run(strings.Join(hdr, " "), func(t *testing.T) {
			resp, body := e.post(t, assignPath, b, hdr...)
			checkError(t, resp, body, http.StatusUnsupportedMediaType, codes.InvalidArgument)
		})
	}
	if n := len(e.es.calls()); n != 0 {
		t.Errorf("handler called %d times", n)
	}
}

// unsized hides the length of a reader so that the request is chunked.
type unsized struct{ r io.Reader }

func (u unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

func TestBodyTooLarge(t *testing.T) {
	const limit = 1024
	e := newEnv(t, prpc.WithMaxBodySize(limit, "--max-request-bytes"))
	// A valid request of exactly the limit: tag, 2-byte length, 1021 bytes.
	exact := mustMarshal(t, &swarmingv1.AssignTasksRequest{SchedulerId: strings.Repeat("x", 1021)}, prpc.EncodingBinary)
	if len(exact) != limit {
		t.Fatalf("exact request is %d bytes", len(exact))
	}
	big := mustMarshal(t, &swarmingv1.AssignTasksRequest{SchedulerId: strings.Repeat("x", 2000)}, prpc.EncodingBinary)

	resp, body := e.post(t, assignPath, exact)
	checkOK(t, resp, body)

	resp, body = e.post(t, assignPath, big)
	checkError(t, resp, body, http.StatusRequestEntityTooLarge, codes.InvalidArgument)
	if want := fmt.Sprintf("request body: %d bytes, at most 1024 allowed (--max-request-bytes)\n", len(big)); string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}

	resp, body = e.do(t, http.MethodPost, assignPath, unsized{bytes.NewReader(big)}, "Content-Type", prpc.ContentTypeBinary)
	checkError(t, resp, body, http.StatusRequestEntityTooLarge, codes.InvalidArgument)
	if want := "request body: more than 1024 bytes, at most 1024 allowed (--max-request-bytes)\n"; string(body) != want {
		t.Errorf("body %q, want %q", body, want)
	}

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(big)
	_ = zw.Close()
	if gz.Len() >= limit {
		t.Fatalf("compressed body is %d bytes", gz.Len())
	}
	resp, body = e.post(t, assignPath, gz.Bytes(), "Content-Encoding", "gzip")
	checkError(t, resp, body, http.StatusRequestEntityTooLarge, codes.InvalidArgument)

	if n := len(e.es.calls()); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
	if prpc.DefaultMaxBodySize != 32<<20 {
		t.Errorf("DefaultMaxBodySize = %d", prpc.DefaultMaxBodySize)
	}
}

func TestGzipRequest(t *testing.T) {
	e := newEnv(t)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(mustMarshal(t, sampleAssign(), prpc.EncodingBinary))
	_ = zw.Close()
	resp, body := e.post(t, assignPath, gz.Bytes(), "Content-Encoding", "gzip")
	checkOK(t, resp, body)
	resp, body = e.post(t, assignPath, []byte("not gzip"), "Content-Encoding", "gzip")
	checkError(t, resp, body, http.StatusBadRequest, codes.InvalidArgument)
}

func TestGarbageBodies(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, ct string
		body     string
	}{
		{"binary", "application/prpc; encoding=binary", "\xff\xff\xff\xff"},
		{"binary bad utf8", "application/prpc; encoding=binary", "\x0a\x02\xff\xfe"},
		{"json syntax", "application/json", "{not json"},
		{"json type", "application/json", `{"schedulerId": 5}`},
		{"json array", "application/json", `[]`},
		{"text", "application/prpc; encoding=text", "}}} nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.post(t, assignPath, []byte(tc.body), "Content-Type", tc.ct)
			checkError(t, resp, body, http.StatusBadRequest, codes.InvalidArgument)
		})
	}
	if n := len(e.es.calls()); n != 0 {
		t.Errorf("handler called %d times", n)
	}
	// An empty body is an empty request in every encoding.
	for _, ct := range []string{"application/prpc; encoding=binary", "application/json", "application/prpc; encoding=text"} {
		resp, body := e.post(t, assignPath, nil, "Content-Type", ct)
		checkOK(t, resp, body)
	}
}

func TestRandomBodiesNeverFail(t *testing.T) {
	e := newEnv(t)
	rng := rand.New(rand.NewSource(1))
	valid := mustMarshal(t, sampleAssign(), prpc.EncodingBinary)
	cts := []string{"application/prpc; encoding=binary", "application/json", "application/prpc; encoding=text"}
	for i := range 300 {
		var b []byte
		if i%2 == 0 {
			b = make([]byte, rng.Intn(64))
			rng.Read(b)
		} else { // mutations of a valid message
			b = slices.Clone(valid)
			for range 1 + rng.Intn(4) {
				b[rng.Intn(len(b))] = byte(rng.Intn(256))
			}
			b = b[:rng.Intn(len(b)+1)]
		}
		ct := cts[i%len(cts)]
		resp, body := e.post(t, assignPath, b, "Content-Type", ct)
		switch code := resp.Header.Get("X-Prpc-Grpc-Code"); {
		case resp.StatusCode == 200 && code == "0":
		case resp.StatusCode == 400 && code == "3":
		default:
			t.Fatalf("body %q as %s: HTTP %d code %q: %s", b, ct, resp.StatusCode, code, body)
		}
	}
}

func TestTimeoutHeaderSetsDeadline(t *testing.T) {
	e := newEnv(t)
	b := mustMarshal(t, sampleAssign(), prpc.EncodingBinary)
	for _, tc := range []struct {
		header string
		d      time.Duration
	}{
		{"20S", 20 * time.Second},
		{"500m", 500 * time.Millisecond},
		{"1500000u", 1500 * time.Millisecond},
		{"2M", 2 * time.Minute},
		{"1H", time.Hour},
		{"99999999n", 99999999 * time.Nanosecond},
	} {
		t.Run(tc.header, func(t *testing.T) {
			before := time.Now()
			resp, body := e.post(t, assignPath, b, "X-Prpc-Grpc-Timeout", tc.header)
			after := time.Now()
			checkOK(t, resp, body)
			c := e.es.last(t)
			if !c.hasDeadline {
				t.Fatal("handler context has no deadline")
			}
			if c.deadline.Before(before.Add(tc.d)) || c.deadline.After(after.Add(tc.d)) {
				t.Errorf("deadline %v not within [%v, %v]", c.deadline, before.Add(tc.d), after.Add(tc.d))
			}
			if got := c.md.Get("x-prpc-grpc-timeout"); len(got) != 1 || got[0] != tc.header {
				t.Errorf("metadata x-prpc-grpc-timeout = %q", got)
			}
		})
	}
	t.Run("absent", func(t *testing.T) {
		resp, body := e.post(t, assignPath, b)
		checkOK(t, resp, body)
		if c := e.es.last(t); c.hasDeadline {
			t.Errorf("deadline %v without a timeout header", c.deadline)
		}
	})
}

func TestMalformedTimeout(t *testing.T) {
	e := newEnv(t)
	b := mustMarshal(t, sampleAssign(), prpc.EncodingBinary)
	for _, v := range []string{"abc", "10", "S", "10x", "-5S", "1.5S", "123456789S", "3000000000n", "5 S", "0x10S", "+5S"} {
		t.Run(v, func(t *testing.T) {
			resp, body := e.post(t, assignPath, b, "X-Prpc-Grpc-Timeout", v)
			checkError(t, resp, body, http.StatusBadRequest, codes.InvalidArgument)
		})
	}
	if n := len(e.es.calls()); n != 0 {
		t.Errorf("handler called %d times", n)
	}
}

func TestParseFormatTimeout(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{20 * time.Second, "20S"},
		{500 * time.Millisecond, "500m"},
		{1500 * time.Millisecond, "1500m"},
		{2 * time.Minute, "2M"},
		{90 * time.Minute, "90M"},
		{time.Hour, "1H"},
		{time.Nanosecond, "1n"},
		{0, "0n"},
		{-time.Second, "0n"},
		{123456789 * time.Nanosecond, "123457u"},
	} {
		if got := prpc.FormatTimeout(tc.d); got != tc.want {
			t.Errorf("FormatTimeout(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, d := range []time.Duration{1, 999, 19999999999, 20*time.Second - 1, 1<<40 + 7, math.MaxInt64} {
		s := prpc.FormatTimeout(d)
		got, err := prpc.ParseTimeout(s)
		if err != nil {
			t.Fatalf("ParseTimeout(%q): %v", s, err)
		}
		if got < d {
			t.Errorf("FormatTimeout(%v) = %q parses as %v, shorter", d, s, got)
		}
		if len(strings.TrimRight(s, "HMSmun")) > 8 {
			t.Errorf("FormatTimeout(%v) = %q has more than 8 digits", d, s)
		}
	}
	if got, err := prpc.ParseTimeout("99999999H"); err != nil || got != time.Duration(math.MaxInt64) {
		t.Errorf("ParseTimeout(99999999H) = %v, %v; want clamped to the maximum", got, err)
	}
}

func TestBadBinaryMetadata(t *testing.T) {
	e := newEnv(t)
	resp, body := e.post(t, assignPath, nil, "X-Thing-Bin", "!!not base64!!")
	checkError(t, resp, body, http.StatusBadRequest, codes.InvalidArgument)
}

// icRecorder is an interceptor that records what it sees.
type icRecorder struct {
	mu    sync.Mutex
	calls []icCall
}

type icCall struct {
	name       string
	fullMethod string
	server     any
	prpc       bool
	auth       []string
	grpcMethod string
}

func (r *icRecorder) interceptor(name string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		m, _ := grpc.Method(ctx)
		r.mu.Lock()
		r.calls = append(r.calls, icCall{name: name, fullMethod: info.FullMethod, server: info.Server,
			prpc: prpc.FromPRPC(ctx), auth: md.Get("authorization"), grpcMethod: m})
		r.mu.Unlock()
		return handler(ctx, req)
	}
}

func (r *icRecorder) get() []icCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func TestInterceptors(t *testing.T) {
	rec := &icRecorder{}
	e := newEnv(t, prpc.WithUnaryInterceptors(rec.interceptor("outer"), rec.interceptor("inner")))
	resp, body := e.post(t, assignPath, mustMarshal(t, sampleAssign(), prpc.EncodingBinary),
		"Authorization", "Bearer swarming-token", "X-Custom", "a", "X-Custom", "b")
	checkOK(t, resp, body)
	calls := rec.get()
	if len(calls) != 2 || calls[0].name != "outer" || calls[1].name != "inner" {
		t.Fatalf("interceptor calls %+v, want outer then inner", calls)
	}
	for _, c := range calls {
		if c.fullMethod != swarmingv1.ExternalScheduler_AssignTasks_FullMethodName {
			t.Errorf("%s: FullMethod %q", c.name, c.fullMethod)
		}
		if c.server != any(e.es) {
			t.Errorf("%s: info.Server is %T, not the registered impl", c.name, c.server)
		}
		if !c.prpc {
			t.Errorf("%s: FromPRPC false", c.name)
		}
		if !slices.Equal(c.auth, []string{"Bearer swarming-token"}) {
			t.Errorf("%s: authorization metadata %q", c.name, c.auth)
		}
		if c.grpcMethod != c.fullMethod {
			t.Errorf("%s: grpc.Method %q", c.name, c.grpcMethod)
		}
	}
	h := e.es.last(t)
	if got := h.md.Get("x-custom"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("x-custom metadata %q", got)
	}
	if got := h.md.Get(":authority"); len(got) != 1 || got[0] != strings.TrimPrefix(e.ts.URL, "http://") {
		t.Errorf(":authority %q", got)
	}
	if !strings.HasPrefix(h.peerAddr, "127.0.0.1:") {
		t.Errorf("peer address %q", h.peerAddr)
	}
	// Decoding failures happen before the interceptors, as in gRPC.
	resp, body = e.post(t, assignPath, []byte("\xff\xff"))
	checkError(t, resp, body, http.StatusBadRequest, codes.InvalidArgument)
	if n := len(rec.get()); n != 2 {
		t.Errorf("interceptors ran for an undecodable request")
	}
}

// rejection is one call of the rejection hook.
type rejection struct {
	method string
	code   codes.Code
	prpc   bool
	auth   []string
}

// TestRejectionHook: every call to a known method answered before its
// handler runs reaches the hook, with its context and error; calls the
// handler answers and paths naming no method do not.
func TestRejectionHook(t *testing.T) {
	var mu sync.Mutex
	var got []rejection
	rec := &icRecorder{}
	e := newEnv(t, prpc.WithMaxBodySize(64, ""), prpc.WithUnaryInterceptors(rec.interceptor("ic")),
		prpc.WithRejectionHook(func(ctx context.Context, method string, err error) {
			md, _ := metadata.FromIncomingContext(ctx)
			mu.Lock()
			defer mu.Unlock()
			got = append(got, rejection{method, status.Code(err), prpc.FromPRPC(ctx), md.Get("authorization")})
		}))
	ok := mustMarshal(t, &swarmingv1.AssignTasksRequest{SchedulerId: "p"}, prpc.EncodingBinary)
	for _, tc := range []struct {
		name   string
		body   []byte
		hdr    []string
		status int
		code   codes.Code
	}{
		{"no Content-Type", ok, []string{"Content-Type", ""}, http.StatusUnsupportedMediaType, codes.InvalidArgument},
		{"text/plain", ok, []string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType, codes.InvalidArgument},
		{"bad Accept", ok, []string{"Accept", "image/png"}, http.StatusNotAcceptable, codes.InvalidArgument},
		{"bad timeout", ok, []string{"X-Prpc-Grpc-Timeout", "soon"}, http.StatusBadRequest, codes.InvalidArgument},
		{"body over the limit", make([]byte, 65), nil, http.StatusRequestEntityTooLarge, codes.InvalidArgument},
		{"undecodable", []byte("\x0a\x01\xff"), nil, http.StatusBadRequest, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.post(t, assignPath, tc.body, append(tc.hdr, "Authorization", "Bearer t")...)
			checkError(t, resp, body, tc.status, tc.code)
		})
	}
	// Answered by the handler or naming no method: not rejections.
	resp, body := e.post(t, assignPath, ok, "Content-Type", prpc.ContentTypeBinary)
	checkOK(t, resp, body)
	resp, body = e.post(t, "/prpc/nope.Service/Method", ok, "Content-Type", prpc.ContentTypeBinary)
	checkError(t, resp, body, http.StatusNotImplemented, codes.Unimplemented)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 6 {
		t.Fatalf("hook called %d times, want 6: %+v", len(got), got)
	}
	for i, r := range got {
		if r.method != swarmingv1.ExternalScheduler_AssignTasks_FullMethodName || r.code != codes.InvalidArgument || !r.prpc {
			t.Errorf("rejection %d: %+v", i, r)
		}
	}
	// Metadata is parsed after the protocol headers are checked.
	if last := got[len(got)-1]; !slices.Equal(last.auth, []string{"Bearer t"}) {
		t.Errorf("undecodable body: authorization metadata %q", last.auth)
	}
	if n := len(rec.get()); n != 1 {
		t.Errorf("interceptors ran %d times, want once (the valid call)", n)
	}
}

func TestResponseMetadata(t *testing.T) {
	e := newEnv(t)
	resp, body := e.post(t, assignPath, mustMarshal(t, sampleAssign(), prpc.EncodingBinary))
	checkOK(t, resp, body)
	if got := resp.Header.Get("X-Served-By"); got != "fake" {
		t.Errorf("X-Served-By %q", got)
	}
	if got := resp.Header.Get("X-Trailer"); got != "t" {
		t.Errorf("X-Trailer %q", got)
	}
	if got := resp.Header.Get("X-Blob-Bin"); got != base64.StdEncoding.EncodeToString([]byte("\x00\x01\xff")) {
		t.Errorf("X-Blob-Bin %q", got)
	}
	if got := resp.Header.Get("Content-Type"); got != prpc.ContentTypeBinary {
		t.Errorf("Content-Type %q: metadata overrode it", got)
	}
}

func TestHandlerPanic(t *testing.T) {
	var logs testutil.Buffer
	e := newEnv(t, prpc.WithErrorLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	e.es.setPanic("kaboom")
	resp, body := e.post(t, assignPath, mustMarshal(t, sampleAssign(), prpc.EncodingBinary))
	checkError(t, resp, body, http.StatusInternalServerError, codes.Internal)
	if strings.Contains(string(body), "kaboom") {
		t.Errorf("panic value leaked to the client: %q", body)
	}
	if l := logs.String(); !strings.Contains(l, "kaboom") || !strings.Contains(l, "AssignTasks") || !strings.Contains(l, "goroutine") {
		t.Errorf("log lacks the panic, method or stack: %s", l)
	}
	// The server keeps serving.
	e.es.setPanic(nil)
	resp, body = e.post(t, assignPath, mustMarshal(t, sampleAssign(), prpc.EncodingBinary))
	checkOK(t, resp, body)
}

func TestRegisterServicePanics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	s := prpc.NewServer()
	swarmingv1.RegisterExternalSchedulerServer(s, &fakeES{})
	mustPanic("duplicate", func() { swarmingv1.RegisterExternalSchedulerServer(s, &fakeES{}) })
	mustPanic("wrong type", func() { s.RegisterService(&swarmingv1.ExternalScheduler_ServiceDesc, struct{}{}) })
}

var allEncodings = []prpc.Encoding{prpc.EncodingBinary, prpc.EncodingJSON, prpc.EncodingText}

func TestClientAllEncodings(t *testing.T) {
	e := newEnv(t)
	for _, enc := range allEncodings {
		t.Run(enc.String(), func(t *testing.T) {
			c := prpc.NewClient(e.ts.URL+"/", e.ts.Client(), prpc.WithEncoding(enc))
			es := swarmingv1.NewExternalSchedulerClient(c)
			ctx := context.Background()

			req := sampleAssign()
			got, err := es.AssignTasks(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, assignResponse(req)) {
				t.Errorf("AssignTasks = %v", got)
			}
			if h := e.es.last(t); h.md.Get("content-type")[0] != enc.ContentType() || h.md.Get("accept")[0] != enc.ContentType() {
				t.Errorf("request Content-Type %q, Accept %q", h.md.Get("content-type"), h.md.Get("accept"))
			}

			notify := &swarmingv1.NotifyTasksRequest{SchedulerId: "pool-a", IsCallback: true, Notifications: []*swarmingv1.NotifyTasksItem{{
				Time: timestamppb.New(time.Unix(1700000000, 5)),
				Task: &swarmingv1.TaskSpec{Id: "t1", Tags: []string{"qs_account:acc"}, State: swarmingv1.TaskSpec_PENDING,
					Slices: []*swarmingv1.SliceSpec{{Dimensions: []string{"pool:pool-a"}}}, EnqueuedTime: timestamppb.New(time.Unix(1699999999, 0))},
			}}}
			if _, err := es.NotifyTasks(ctx, notify); err != nil {
				t.Fatal(err)
			}
			e.es.mu.Lock()
			seen := e.es.lastNotify
			e.es.mu.Unlock()
			if !proto.Equal(seen, notify) {
				t.Errorf("NotifyTasks saw %v, want %v", seen, notify)
			}

			cb, err := es.GetCallbacks(ctx, &swarmingv1.GetCallbacksRequest{SchedulerId: "p"})
			if err != nil || !slices.Equal(cb.GetTaskIds(), []string{"p-1", "p-2"}) {
				t.Errorf("GetCallbacks = %v, %v", cb, err)
			}
			cn, err := es.GetCancellations(ctx, &swarmingv1.GetCancellationsRequest{SchedulerId: "p"})
			if err != nil || len(cn.GetCancellations()) != 1 || cn.Cancellations[0].Reason != swarmingv1.GetCancellationsResponse_Cancellation_PREEMPTED {
				t.Errorf("GetCancellations = %v, %v", cn, err)
			}

			view := qschedulerv1.NewQSchedulerViewClient(c)
			pools, err := view.ListSchedulerPools(ctx, &qschedulerv1.ListSchedulerPoolsRequest{})
			if err != nil || !slices.Equal(pools.GetPoolIds(), []string{"pool-a", "pool-b"}) {
				t.Errorf("ListSchedulerPools = %v, %v", pools, err)
			}
			insp, err := view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: "pool-a"})
			if err != nil || insp.GetNumWaitingTasks() != 3 {
				t.Errorf("InspectPool = %v, %v", insp, err)
			}
			_, err = view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: "x"})
			if status.Code(err) != codes.NotFound || status.Convert(err).Message() != `pool "x" not found` {
				t.Errorf("InspectPool(x) error %v", err)
			}
			_, err = qschedulerv1.NewQSchedulerAdminClient(c).CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "pool-a"})
			if status.Code(err) != codes.AlreadyExists {
				t.Errorf("CreateSchedulerPool error %v", err)
			}
		})
	}
}

func TestClientErrorMapping(t *testing.T) {
	e := newEnv(t)
	for _, enc := range allEncodings {
		c := swarmingv1.NewExternalSchedulerClient(prpc.NewClient(e.ts.URL, e.ts.Client(), prpc.WithEncoding(enc)))
		for code := codes.Canceled; code <= codes.Unauthenticated; code++ {
			t.Run(enc.String()+"/"+code.String(), func(t *testing.T) {
				msg := "client sees " + code.String() + "\nsecond line"
				e.es.setFail(status.Error(code, msg))
				_, err := c.AssignTasks(context.Background(), sampleAssign())
				st, ok := status.FromError(err)
				if !ok || st.Code() != code || st.Message() != msg {
					t.Errorf("error %v, want code %v message %q", err, code, msg)
				}
			})
		}
		t.Run(enc.String()+"/details", func(t *testing.T) {
			st, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(wrapperspb.String("retry in 5s"))
			if err != nil {
				t.Fatal(err)
			}
			e.es.setFail(st.Err())
			_, err = c.AssignTasks(context.Background(), sampleAssign())
			got := status.Convert(err)
			if got.Code() != codes.ResourceExhausted || len(got.Details()) != 1 {
				t.Fatalf("error %v, details %v", err, got.Details())
			}
			if d, ok := got.Details()[0].(*wrapperspb.StringValue); !ok || d.GetValue() != "retry in 5s" {
				t.Errorf("detail %v", got.Details()[0])
			}
		})
		t.Run(enc.String()+"/plain error", func(t *testing.T) {
			e.es.setFail(errors.New("opaque"))
			_, err := c.AssignTasks(context.Background(), sampleAssign())
			if status.Code(err) != codes.Unknown || status.Convert(err).Message() != "opaque" {
				t.Errorf("error %v", err)
			}
		})
	}
	e.es.setFail(nil)
	err := prpc.NewClient(e.ts.URL, e.ts.Client()).Invoke(context.Background(), "/swarming.v1.ExternalScheduler/Nope",
		&swarmingv1.GetCallbacksRequest{}, &swarmingv1.GetCallbacksResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown method: %v", err)
	}
}

func TestClientRequestHeaders(t *testing.T) {
	e := newEnv(t)
	c := swarmingv1.NewExternalSchedulerClient(prpc.NewClient(e.ts.URL, e.ts.Client(),
		prpc.WithHeader("Authorization", "Bearer ya29.token"),
		prpc.WithHeader("Content-Type", "text/evil"))) // cannot override the protocol's headers
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", "r1", "x-blob-bin", "\x00\x01\xff")
	var hdr metadata.MD
	if _, err := c.AssignTasks(ctx, sampleAssign(), grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	h := e.es.last(t)
	want := map[string]string{
		"content-type":  "application/prpc; encoding=binary",
		"accept":        "application/prpc; encoding=binary",
		"authorization": "Bearer ya29.token",
		"x-request-id":  "r1",
		"x-blob-bin":    "\x00\x01\xff",
	}
	for k, v := range want {
		if got := h.md.Get(k); !slices.Equal(got, []string{v}) {
			t.Errorf("metadata %s = %q, want %q", k, got, v)
		}
	}
	tv := h.md.Get("x-prpc-grpc-timeout")
	if len(tv) != 1 {
		t.Fatalf("x-prpc-grpc-timeout = %q", tv)
	}
	d, err := prpc.ParseTimeout(tv[0])
	if err != nil || d > 20*time.Second || d < 10*time.Second {
		t.Errorf("timeout header %q = %v, %v; want at most 20s", tv[0], d, err)
	}
	if !h.hasDeadline || time.Until(h.deadline) > 20*time.Second {
		t.Errorf("handler deadline %v", h.deadline)
	}
	if got := hdr.Get("x-served-by"); !slices.Equal(got, []string{"fake"}) {
		t.Errorf("grpc.Header x-served-by = %q", got)
	}
	if got := hdr.Get("x-blob-bin"); !slices.Equal(got, []string{"\x00\x01\xff"}) {
		t.Errorf("grpc.Header x-blob-bin = %q", got)
	}

	// Without a deadline, no timeout header.
	if _, err := c.AssignTasks(context.Background(), sampleAssign()); err != nil {
		t.Fatal(err)
	}
	if got := e.es.last(t).md.Get("x-prpc-grpc-timeout"); len(got) != 0 {
		t.Errorf("x-prpc-grpc-timeout %q without a deadline", got)
	}
}

func TestClientContextErrors(t *testing.T) {
	var hits atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer ts.Close()
	c := swarmingv1.NewExternalSchedulerClient(prpc.NewClient(ts.URL, ts.Client()))

	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := c.AssignTasks(ctx, sampleAssign()); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("expired deadline: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c.AssignTasks(ctx, sampleAssign()); status.Code(err) != codes.Canceled {
		t.Errorf("canceled: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests sent with a dead context", n)
	}
}

func TestClientNonPRPCResponses(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   codes.Code
	}{
		{http.StatusServiceUnavailable, codes.Unavailable},
		{http.StatusBadGateway, codes.Unavailable},
		{http.StatusUnauthorized, codes.Unauthenticated},
		{http.StatusForbidden, codes.PermissionDenied},
		{http.StatusNotFound, codes.Unimplemented},
		{http.StatusOK, codes.Internal},
		{http.StatusTeapot, codes.Unknown},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, "<html>proxy says no</html>")
			}))
			defer ts.Close()
			_, err := swarmingv1.NewExternalSchedulerClient(prpc.NewClient(ts.URL, ts.Client())).AssignTasks(context.Background(), sampleAssign())
			if status.Code(err) != tc.want || !strings.Contains(err.Error(), "proxy says no") {
				t.Errorf("error %v, want code %v", err, tc.want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		ts := httptest.NewServer(http.NotFoundHandler())
		url := ts.URL
		ts.Close()
		_, err := swarmingv1.NewExternalSchedulerClient(prpc.NewClient(url, nil)).AssignTasks(context.Background(), sampleAssign())
		if status.Code(err) != codes.Unavailable {
			t.Errorf("error %v, want Unavailable", err)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		e := newEnv(t)
		_, err := swarmingv1.NewExternalSchedulerClient(prpc.NewClient(e.ts.URL, e.ts.Client(), prpc.WithMaxResponseSize(8))).
			AssignTasks(context.Background(), sampleAssign())
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("error %v, want ResourceExhausted", err)
		}
	})
}

func TestClientNewStream(t *testing.T) {
	c := prpc.NewClient("http://127.0.0.1:1", nil)
	if _, err := c.NewStream(context.Background(), &grpc.StreamDesc{}, "/a.B/C"); status.Code(err) != codes.Unimplemented {
		t.Errorf("NewStream error %v", err)
	}
	var _ grpc.ClientConnInterface = c
}

// TestSameInterceptorsOnGRPCAndPRPC registers one implementation on a real
// grpc.Server and on the pRPC server with the same interceptor, and calls
// both through the generated client.
func TestSameInterceptorsOnGRPCAndPRPC(t *testing.T) {
	rec := &icRecorder{}
	ic := rec.interceptor("auth")
	impl := &fakeES{}

	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(ic))
	swarmingv1.RegisterExternalSchedulerServer(gs, impl)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("grpc Serve: %v", err)
		}
	}()

	ps := prpc.NewServer(prpc.WithUnaryInterceptors(ic))
	swarmingv1.RegisterExternalSchedulerServer(ps, impl)
	hs := httptest.NewServer(ps)
	defer hs.Close()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pc := prpc.NewClient(hs.URL, hs.Client(), prpc.WithHeader("Authorization", "Bearer tok"))

	var responses []*swarmingv1.AssignTasksResponse
	for _, conn := range []grpc.ClientConnInterface{cc, pc} {
		ctx := context.Background()
		if conn == grpc.ClientConnInterface(cc) {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok")
		}
		resp, err := swarmingv1.NewExternalSchedulerClient(conn).AssignTasks(ctx, sampleAssign())
		if err != nil {
			t.Fatal(err)
		}
		responses = append(responses, resp)
	}
	if !proto.Equal(responses[0], responses[1]) {
		t.Errorf("gRPC %v and pRPC %v responses differ", responses[0], responses[1])
	}
	calls := rec.get()
	if len(calls) != 2 {
		t.Fatalf("interceptor ran %d times, want 2", len(calls))
	}
	for i, c := range calls {
		if c.fullMethod != swarmingv1.ExternalScheduler_AssignTasks_FullMethodName || c.grpcMethod != c.fullMethod {
			t.Errorf("call %d: FullMethod %q, grpc.Method %q", i, c.fullMethod, c.grpcMethod)
		}
		if c.server != any(impl) {
			t.Errorf("call %d: info.Server %T", i, c.server)
		}
		if !slices.Equal(c.auth, []string{"Bearer tok"}) {
			t.Errorf("call %d: authorization %q", i, c.auth)
		}
		if c.prpc != (i == 1) {
			t.Errorf("call %d: FromPRPC %v", i, c.prpc)
		}
	}
	// The handler saw the same FullMethod on both transports.
	if h := impl.calls(); len(h) != 2 || h[0].grpcMethod != h[1].grpcMethod {
		t.Errorf("handler calls %+v", h)
	}
}

// TestRefusedCallKeepsItsConnection: a call refused at admission with a
// small declared body keeps its connection for the caller's next call
// (reconnecting for every refusal makes overload cost more), while one whose
// body has no declared length, or a large one, closes it unread.
func TestRefusedCallKeepsItsConnection(t *testing.T) {
	e := newEnv(t, prpc.WithAdmission(func(ctx context.Context, fullMethod string) (func(), error) {
		return nil, status.Error(codes.ResourceExhausted, "busy")
	}))
	body, err := proto.Marshal(&swarmingv1.AssignTasksRequest{SchedulerId: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for i := range 3 {
		req, err := http.NewRequest("POST", e.ts.URL+assignPath, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/prpc; encoding=binary")
		resp, err := e.ts.Client().Do(req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { conns = append(conns, info.Conn) },
		})))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Close {
			t.Fatalf("call %d: HTTP %d, close %v; want 429 on a connection kept open", i, resp.StatusCode, resp.Close)
		}
	}
	if len(conns) != 3 || conns[1] != conns[0] || conns[2] != conns[0] {
		t.Errorf("the three refused calls used %d distinct connections, want one", len(slices.Compact(conns)))
	}

	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"no declared length", io.MultiReader(bytes.NewReader(body))},
		{"over 64 KiB", bytes.NewReader(make([]byte, 64<<10+1))},
	} {
		req, err := http.NewRequest("POST", e.ts.URL+assignPath, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/prpc; encoding=binary")
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || !resp.Close {
			t.Errorf("%s: HTTP %d, close %v; want 429 and the connection closed", tc.name, resp.StatusCode, resp.Close)
		}
	}
}
