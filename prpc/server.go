package prpc

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// DefaultMaxBodySize is the default limit on request bodies: 32 MiB.
const DefaultMaxBodySize = 32 << 20

// pathPrefix is where pRPC methods live: /prpc/<service>/<method>.
const pathPrefix = "/prpc/"

// Server serves registered gRPC services over pRPC. It implements
// http.Handler and grpc.ServiceRegistrar. Its methods are safe for concurrent
// use; services may be registered while it serves.
type Server struct {
	interceptors []grpc.UnaryServerInterceptor
	interceptor  grpc.UnaryServerInterceptor // the chain, nil if none
	maxBody      int64
	maxBodyName  string
	logger       *slog.Logger
	rejected     func(ctx context.Context, fullMethod string, err error)
	admit        func(ctx context.Context, fullMethod string) (release func(), err error)

	mu       sync.RWMutex
	services map[string]*service
}

type service struct {
	impl    any
	methods map[string]*method
	streams map[string]bool
}

type method struct {
	desc       grpc.MethodDesc
	fullMethod string
}

// Option configures a Server.
type Option func(*Server)

// WithUnaryInterceptors appends unary interceptors, run in order (the first
// is outermost), as grpc.ChainUnaryInterceptor does on a grpc.Server. Passing
// the same interceptors to both servers gives pRPC and gRPC calls the same
// chain.
func WithUnaryInterceptors(ics ...grpc.UnaryServerInterceptor) Option {
	return func(s *Server) {
		for _, ic := range ics {
			if ic != nil {
				s.interceptors = append(s.interceptors, ic)
			}
		}
	}
}

// WithMaxBodySize sets the limit on request bodies in bytes (compressed and
// decompressed). n <= 0 means DefaultMaxBodySize. name, if not empty, names
// the setting in the error a body over the limit gets (for example the flag
// that sets it).
func WithMaxBodySize(n int64, name string) Option {
	return func(s *Server) {
		if n <= 0 {
			n = DefaultMaxBodySize
		}
		s.maxBody = n
		s.maxBodyName = name
	}
}

// WithErrorLogger sets the logger for failures the caller never sees in full:
// handler panics (with the stack), responses that cannot be encoded, and
// failed writes. nil, the default, means slog.Default().
func WithErrorLogger(l *slog.Logger) Option {
	return func(s *Server) { s.logger = l }
}

// WithRejectionHook sets a function called for every call to a known method
// that is answered before its handler and interceptors run: an unsupported
// Content-Type or Accept, a malformed timeout or metadata header, a body over
// the limit, unreadable or undecodable. ctx is the call's context (FromPRPC,
// the peer, and the incoming metadata once parsed); err is the error
// answered. It lets such calls be logged like the others, which the
// interceptors never see, as in gRPC.
func WithRejectionHook(f func(ctx context.Context, fullMethod string, err error)) Option {
	return func(s *Server) { s.rejected = f }
}

// WithAdmission sets a function that decides, before a call's body is read,
// whether the server takes the call: an error refuses it with that error's
// status (a status error, for example ResourceExhausted, which pRPC answers
// 429), reported to the rejection hook like the other calls answered before
// their handler; otherwise release, if not nil, is called once the call is
// answered. It runs for every call to a known method whose protocol headers
// are valid, and must not block: it lets a server shed load before paying
// for reading and decoding requests it would refuse anyway. A refused
// call's body is never decoded. A body of at most 64 KiB declared by
// Content-Length (a poll is a few hundred bytes) is discarded by net/http
// and the connection kept, since reconnecting after every refusal would
// make overload cost more; any other body is never read, and the
// connection closes after the answer.
func WithAdmission(f func(ctx context.Context, fullMethod string) (release func(), err error)) Option {
	return func(s *Server) { s.admit = f }
}

// maxRefusedBodyKept is the largest declared body of a call refused at
// admission whose connection is kept.
const maxRefusedBodyKept = 64 << 10

// NewServer returns a Server with no services.
func NewServer(opts ...Option) *Server {
	s := &Server{maxBody: DefaultMaxBodySize, services: map[string]*service{}}
	for _, o := range opts {
		o(s)
	}
	s.interceptor = chainUnary(s.interceptors)
	return s
}

var _ grpc.ServiceRegistrar = (*Server)(nil)
var _ http.Handler = (*Server)(nil)

// RegisterService registers a service implementation, like
// (*grpc.Server).RegisterService; the generated RegisterXxxServer functions
// call it. It panics if impl does not implement desc.HandlerType or the
// service is already registered. Streaming methods are recorded and answered
// with Unimplemented.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if impl != nil && desc.HandlerType != nil {
		ht := reflect.TypeOf(desc.HandlerType).Elem()
		if st := reflect.TypeOf(impl); !st.Implements(ht) {
			panic(fmt.Sprintf("prpc: RegisterService found the handler of type %v that does not satisfy %v", st, ht))
		}
	}
	svc := &service{
		impl:    impl,
		methods: make(map[string]*method, len(desc.Methods)),
		streams: make(map[string]bool, len(desc.Streams)),
	}
	for _, m := range desc.Methods {
		svc.methods[m.MethodName] = &method{desc: m, fullMethod: "/" + desc.ServiceName + "/" + m.MethodName}
	}
	for _, st := range desc.Streams {
		svc.streams[st.StreamName] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.services[desc.ServiceName]; dup {
		panic(fmt.Sprintf("prpc: service %q is already registered", desc.ServiceName))
	}
	s.services[desc.ServiceName] = svc
}

// lookup finds a unary method; err is an Unimplemented protocol error.
func (s *Server) lookup(svcName, methodName string) (*service, *method, error) {
	s.mu.RLock()
	svc := s.services[svcName]
	s.mu.RUnlock()
	if svc == nil {
		return nil, nil, protoErr(http.StatusNotImplemented, codes.Unimplemented,
			fmt.Sprintf("unknown service %q", svcName))
	}
	if m := svc.methods[methodName]; m != nil {
		return svc, m, nil
	}
	if svc.streams[methodName] {
		return nil, nil, protoErr(http.StatusNotImplemented, codes.Unimplemented,
			fmt.Sprintf("method %s.%s is a stream; pRPC supports only unary methods", svcName, methodName))
	}
	return nil, nil, protoErr(http.StatusNotImplemented, codes.Unimplemented,
		fmt.Sprintf("unknown method %q in service %q", methodName, svcName))
}

type prpcKey struct{}

// FromPRPC reports whether ctx is the context of a call that arrived over
// pRPC (as opposed to native gRPC).
func FromPRPC(ctx context.Context) bool {
	v, _ := ctx.Value(prpcKey{}).(bool)
	return v
}

// ServeHTTP serves POST /prpc/<service>/<method>.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")

	rest, ok := strings.CutPrefix(r.URL.Path, pathPrefix)
	if !ok {
		s.writeError(w, protoErr(http.StatusNotFound, codes.NotFound,
			fmt.Sprintf("%q is not a pRPC path; expected %s<service>/<method>", r.URL.Path, pathPrefix)), EncodingBinary)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.writeError(w, protoErr(http.StatusMethodNotAllowed, codes.Unimplemented,
			fmt.Sprintf("method %s not allowed; pRPC uses POST", r.Method)), EncodingBinary)
		return
	}
	svcName, methodName, ok := strings.Cut(rest, "/")
	if !ok || svcName == "" || methodName == "" || strings.Contains(methodName, "/") {
		s.writeError(w, protoErr(http.StatusNotImplemented, codes.Unimplemented,
			fmt.Sprintf("unknown method: %q is not %s<service>/<method>", r.URL.Path, pathPrefix)), EncodingBinary)
		return
	}
	svc, m, err := s.lookup(svcName, methodName)
	if err != nil {
		s.writeError(w, err, EncodingBinary)
		return
	}

	// From here on the call names a method: whatever stops it before the
	// handler runs is reported to the rejection hook.
	ctx := context.WithValue(r.Context(), prpcKey{}, true)
	ctx = peer.NewContext(ctx, peerOf(r))
	stream := &transportStream{method: m.fullMethod}
	ctx = grpc.NewContextWithServerTransportStream(ctx, stream)
	respEnc := EncodingBinary
	reject := func(err error) {
		if s.rejected != nil {
			s.rejected(ctx, m.fullMethod, err)
		}
		s.writeError(w, err, respEnc)
	}

	reqEnc, err := parseRequestContentType(r.Header.Get("Content-Type"))
	if err != nil {
		reject(protoErr(http.StatusUnsupportedMediaType, codes.InvalidArgument, err.Error()))
		return
	}
	if respEnc, err = parseAccept(r.Header.Values("Accept")); err != nil {
		respEnc = EncodingBinary
		reject(protoErr(http.StatusNotAcceptable, codes.InvalidArgument, err.Error()))
		return
	}

	if vs := r.Header.Values(HeaderTimeout); len(vs) > 0 {
		d, err := ParseTimeout(vs[0])
		if err != nil {
			reject(protoErr(http.StatusBadRequest, codes.InvalidArgument,
				fmt.Sprintf("bad %s header %q: %v", HeaderTimeout, vs[0], err)))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}

	md, err := headerToMD(r.Header, r.Host)
	if err != nil {
		reject(protoErr(http.StatusBadRequest, codes.InvalidArgument, err.Error()))
		return
	}
	ctx = metadata.NewIncomingContext(ctx, md)

	if s.admit != nil {
		release, err := s.admit(ctx, m.fullMethod)
		if err != nil {
			// A small declared body is discarded by net/http, which keeps
			// the connection. Any other stays unread and the connection
			// closes after the answer: otherwise net/http would read up to
			// 256 KiB of it, for as long as the client takes to send it,
			// before answering.
			if r.ContentLength < 0 || r.ContentLength > maxRefusedBodyKept {
				w.Header().Set("Connection", "close")
			}
			reject(err)
			return
		}
		if release != nil {
			defer release()
		}
	}

	body, err := s.readBody(w, r)
	if err != nil {
		reject(err)
		return
	}

	out, decErr, err := s.invoke(ctx, svc, m, body, reqEnc)
	if decErr != nil {
		reject(decErr)
		return
	}
	if err != nil {
		if !errors.Is(err, errPanic) {
			stream.writeTo(w.Header())
		}
		s.writeError(w, err, respEnc)
		return
	}
	stream.writeTo(w.Header())
	s.writeMessage(w, out, respEnc, m.fullMethod)
}

// readBody reads the request body within the size limit, decompressing gzip.
// A body whose Content-Length is over the limit is refused before any of it
// is read.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooLarge := s.tooLarge(fmt.Sprintf("more than %d bytes", s.maxBody))
	if r.ContentLength > s.maxBody {
		return nil, s.tooLarge(fmt.Sprintf("%d bytes", r.ContentLength))
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, s.maxBody)
	switch ce := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); ce {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			if isMaxBytes(err) {
				return nil, tooLarge
			}
			return nil, protoErr(http.StatusBadRequest, codes.InvalidArgument, fmt.Sprintf("bad gzip body: %v", err))
		}
		defer zr.Close()
		src = zr
	default:
		return nil, protoErr(http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("unsupported Content-Encoding %q", ce))
	}
	body, err := io.ReadAll(io.LimitReader(src, s.maxBody+1))
	switch {
	case isMaxBytes(err) || int64(len(body)) > s.maxBody:
		return nil, tooLarge
	case err != nil:
		return nil, protoErr(http.StatusBadRequest, codes.InvalidArgument, fmt.Sprintf("reading request body: %v", err))
	}
	return body, nil
}

// tooLarge is the error of a body over the limit: 413, and InvalidArgument
// since the same request can never succeed.
func (s *Server) tooLarge(size string) error {
	msg := fmt.Sprintf("request body: %s, at most %d allowed", size, s.maxBody)
	if s.maxBodyName != "" {
		msg += " (" + s.maxBodyName + ")"
	}
	return protoErr(http.StatusRequestEntityTooLarge, codes.InvalidArgument, msg)
}

func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

var errPanic = errors.New("prpc: handler panicked")

// invoke runs the method through the generated handler and the interceptor
// chain, turning a panic into Internal. decErr is the error of a body that
// cannot be decoded: the generated handler returns it before the
// interceptors run, as in gRPC.
func (s *Server) invoke(ctx context.Context, svc *service, m *method, body []byte, enc Encoding) (out any, decErr, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log().ErrorContext(ctx, "prpc: handler panicked",
				"method", m.fullMethod, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			out, decErr = nil, nil
			err = &panicError{st: status.New(codes.Internal, "internal error")}
		}
	}()
	dec := func(in any) error {
		msg, ok := in.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "request type %T is not a protobuf message", in)
		}
		if err := unmarshal(body, msg, enc); err != nil {
			decErr = protoErr(http.StatusBadRequest, codes.InvalidArgument,
				fmt.Sprintf("could not decode %s request body: %v", enc, err))
			return decErr
		}
		return nil
	}
	out, err = m.desc.Handler(svc.impl, ctx, dec, s.interceptor)
	return out, decErr, err
}

type panicError struct{ st *status.Status }

func (e *panicError) Error() string              { return e.st.Err().Error() }
func (e *panicError) GRPCStatus() *status.Status { return e.st }
func (e *panicError) Is(target error) bool       { return target == errPanic }

func (s *Server) log() *slog.Logger {
	if s.logger != nil {
		return s.logger
	}
	return slog.Default()
}

// writeMessage writes a successful response.
func (s *Server) writeMessage(w http.ResponseWriter, out any, enc Encoding, fullMethod string) {
	msg, ok := out.(proto.Message)
	if !ok {
		s.writeError(w, status.Errorf(codes.Internal, "handler returned %T, not a protobuf message", out), enc)
		return
	}
	b, err := marshal(msg, enc)
	if err != nil {
		s.log().Error("prpc: cannot encode response", "method", fullMethod, "encoding", enc.String(), "err", err)
		s.writeError(w, status.Errorf(codes.Internal, "cannot encode the response as %s: %v", enc, err), enc)
		return
	}
	if enc == EncodingJSON {
		b = append([]byte(JSONPrefix), b...)
	}
	h := w.Header()
	h.Set("Content-Type", enc.ContentType())
	h.Set(HeaderGRPCCode, "0")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(b); err != nil {
		s.log().Debug("prpc: writing response failed", "method", fullMethod, "err", err)
	}
}

// writeError writes an error response: HTTP status, X-Prpc-Grpc-Code, the
// details header and the message as text.
func (s *Server) writeError(w http.ResponseWriter, err error, enc Encoding) {
	st, httpStatus := toStatus(err)
	h := w.Header()
	h.Del(HeaderStatusDetails)
	for _, d := range st.Proto().GetDetails() {
		b, err := marshal(d, enc)
		if err != nil {
			b, err = marshal(d, EncodingBinary) // e.g. JSON of an unregistered type
		}
		if err == nil {
			h.Add(HeaderStatusDetails, base64.StdEncoding.EncodeToString(b))
		}
	}
	body := st.Message() + "\n"
	h.Set("Content-Type", "text/plain")
	h.Set(HeaderGRPCCode, strconv.Itoa(int(st.Code())))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(httpStatus)
	if _, err := io.WriteString(w, body); err != nil {
		s.log().Debug("prpc: writing error response failed", "err", err)
	}
}

// peerOf describes the HTTP client as a gRPC peer.
func peerOf(r *http.Request) *peer.Peer {
	p := &peer.Peer{Addr: strAddr(r.RemoteAddr)}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		p.Addr = net.TCPAddrFromAddrPort(ap)
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		p.LocalAddr = la
	}
	if r.TLS != nil {
		p.AuthInfo = credentials.TLSInfo{
			State:          *r.TLS,
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		}
	}
	return p
}

type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

// transportStream lets grpc.Method, grpc.SetHeader, grpc.SendHeader and
// grpc.SetTrailer work in pRPC handlers. Header and trailer metadata both
// become response headers.
type transportStream struct {
	method string

	mu         sync.Mutex
	header     metadata.MD
	trailer    metadata.MD
	headerSent bool
}

func (t *transportStream) Method() string { return t.method }

func (t *transportStream) SetHeader(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.headerSent {
		return status.Error(codes.Internal, "prpc: SetHeader called after SendHeader")
	}
	t.header = metadata.Join(t.header, md)
	return nil
}

func (t *transportStream) SendHeader(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.headerSent {
		return status.Error(codes.Internal, "prpc: SendHeader called twice")
	}
	t.header = metadata.Join(t.header, md)
	t.headerSent = true
	return nil
}

func (t *transportStream) SetTrailer(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trailer = metadata.Join(t.trailer, md)
	return nil
}

func (t *transportStream) writeTo(h http.Header) {
	t.mu.Lock()
	defer t.mu.Unlock()
	mdToHeader(t.header, h)
	mdToHeader(t.trailer, h)
}

// chainUnary composes interceptors into one, the first outermost, as
// grpc.ChainUnaryInterceptor does.
func chainUnary(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return ics[0](ctx, req, info, chainedHandler(ics, 0, info, handler))
	}
}

func chainedHandler(ics []grpc.UnaryServerInterceptor, cur int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if cur == len(ics)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return ics[cur+1](ctx, req, info, chainedHandler(ics, cur+1, info, final))
	}
}
