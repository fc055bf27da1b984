package prpc

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/anypb"
)

// DefaultMaxResponseSize is the default limit on response bodies: 32 MiB.
const DefaultMaxResponseSize = 32 << 20

// Client calls pRPC servers. It implements grpc.ClientConnInterface, so the
// generated NewXxxClient functions accept it. It is safe for concurrent use.
type Client struct {
	baseURL string
	hc      *http.Client
	enc     Encoding
	header  http.Header
	maxResp int64
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithEncoding sets the request and response encoding (default
// EncodingBinary, as Swarming sends).
func WithEncoding(e Encoding) ClientOption {
	return func(c *Client) {
		if e.valid() {
			c.enc = e
		}
	}
}

// WithHeader adds a header sent with every request, e.g. Authorization. The
// protocol's own headers (Content-Type, Accept, X-Prpc-Grpc-Timeout) cannot
// be overridden.
func WithHeader(key, value string) ClientOption {
	return func(c *Client) { c.header.Add(key, value) }
}

// WithMaxResponseSize sets the limit on response bodies in bytes; n <= 0
// means DefaultMaxResponseSize.
func WithMaxResponseSize(n int64) ClientOption {
	return func(c *Client) {
		if n <= 0 {
			n = DefaultMaxResponseSize
		}
		c.maxResp = n
	}
}

// NewClient returns a client of the pRPC server at baseURL (scheme and host,
// e.g. "https://qscheduler.example.com"; methods are under baseURL/prpc/).
// httpClient nil means http.DefaultClient.
func NewClient(baseURL string, httpClient *http.Client, opts ...ClientOption) *Client {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	c := &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		hc:      httpClient,
		header:  http.Header{},
		maxResp: DefaultMaxResponseSize,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

var _ grpc.ClientConnInterface = (*Client)(nil)

// Invoke performs a unary RPC. method is "/pkg.Service/Method". Errors are
// status errors: the server's code and message, DeadlineExceeded or Canceled
// from ctx, Unavailable when the server cannot be reached, or a code guessed
// from the HTTP status when the response is not pRPC. grpc.Header and
// grpc.Trailer call options receive the response headers; other call options
// are ignored.
func (c *Client) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	in, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "prpc: request %T is not a protobuf message", args)
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "prpc: reply %T is not a protobuf message", reply)
	}
	svc, meth, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok || !strings.HasPrefix(method, "/") || svc == "" || meth == "" || strings.Contains(meth, "/") {
		return status.Errorf(codes.Internal, "prpc: malformed method name %q", method)
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	body, err := marshal(in, c.enc)
	if err != nil {
		return status.Errorf(codes.Internal, "prpc: encoding request: %v", err)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+"/prpc"+method, bytes.NewReader(body))
	if err != nil {
		return status.Errorf(codes.Internal, "prpc: %v", err)
	}
	for k, vs := range c.header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		mdToHeader(md, req.Header)
	}
	req.Header.Set("Content-Type", c.enc.ContentType())
	req.Header.Set("Accept", c.enc.ContentType())
	req.Header.Del(HeaderTimeout)
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
		}
		req.Header.Set(HeaderTimeout, FormatTimeout(d))
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return status.FromContextError(cerr).Err()
		}
		return status.Errorf(codes.Unavailable, "prpc: %v", err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return status.FromContextError(cerr).Err()
		}
		return status.Errorf(codes.Unavailable, "prpc: reading response: %v", err)
	}
	if int64(len(respBody)) > c.maxResp {
		return status.Errorf(codes.ResourceExhausted, "prpc: response exceeds %d bytes", c.maxResp)
	}
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = headerMD(resp.Header)
		case grpc.TrailerCallOption:
			*o.TrailerAddr = headerMD(resp.Header)
		}
	}

	codeStr := resp.Header.Get(HeaderGRPCCode)
	if codeStr == "" {
		return status.Errorf(codeFromHTTPStatus(resp.StatusCode), "prpc: HTTP %d response without %s: %s",
			resp.StatusCode, HeaderGRPCCode, truncate(string(respBody), 256))
	}
	n, err := strconv.ParseUint(codeStr, 10, 32)
	if err != nil {
		return status.Errorf(codes.Internal, "prpc: bad %s %q", HeaderGRPCCode, codeStr)
	}
	if code := codes.Code(n); code != codes.OK {
		st := status.New(code, strings.TrimSuffix(string(respBody), "\n"))
		return c.withDetails(st, resp.Header.Values(HeaderStatusDetails)).Err()
	}

	enc, err := parseContentType(resp.Header.Get("Content-Type"))
	if err != nil {
		return status.Errorf(codes.Internal, "prpc: response: %v", err)
	}
	if enc == EncodingJSON {
		respBody = bytes.TrimPrefix(respBody, []byte(strings.TrimSuffix(JSONPrefix, "\n")))
	}
	if err := unmarshal(respBody, out, enc); err != nil {
		return status.Errorf(codes.Internal, "prpc: decoding %s response: %v", enc, err)
	}
	return nil
}

// withDetails attaches the details of X-Prpc-Status-Details-Bin whose types
// are linked in; others are dropped.
func (c *Client) withDetails(st *status.Status, values []string) *status.Status {
	var details []protoadapt.MessageV1
	for _, v := range values {
		b, err := decodeBin(v)
		if err != nil {
			continue
		}
		a := &anypb.Any{}
		if unmarshal([]byte(b), a, c.enc) != nil && unmarshal([]byte(b), a, EncodingBinary) != nil {
			continue
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		details = append(details, protoadapt.MessageV1Of(m))
	}
	if len(details) == 0 {
		return st
	}
	if withD, err := st.WithDetails(details...); err == nil {
		return withD
	}
	return st
}

// headerMD converts response headers to metadata, decoding "-bin" values.
func headerMD(h http.Header) metadata.MD {
	md := make(metadata.MD, len(h))
	for k, vs := range h {
		key := strings.ToLower(k)
		for _, v := range vs {
			if strings.HasSuffix(key, binSuffix) {
				if d, err := decodeBin(v); err == nil {
					v = d
				}
			}
			md[key] = append(md[key], v)
		}
	}
	return md
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// NewStream returns Unimplemented: pRPC has no streams.
func (c *Client) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Errorf(codes.Unimplemented, "prpc: streaming RPCs are not supported (%s)", method)
}
