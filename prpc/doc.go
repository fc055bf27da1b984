// Package prpc implements pRPC, the LUCI protocol for protobuf RPCs over plain
// HTTP/1.1, on top of the generated gRPC service descriptors. Swarming's
// external-scheduler client speaks only pRPC (docs/service.md §1).
//
// # Server
//
// Server is an http.Handler and a grpc.ServiceRegistrar, so the generated
// RegisterXxxServer functions register an implementation on it exactly as on
// a *grpc.Server:
//
//	ps := prpc.NewServer(prpc.WithUnaryInterceptors(authIC, metricsIC, logIC))
//	swarmingv1.RegisterExternalSchedulerServer(ps, impl)
//	mux.Handle("/prpc/", ps)
//
// A call is dispatched through the generated grpc.MethodDesc.Handler with the
// chained unary interceptors and a *grpc.UnaryServerInfo whose FullMethod is
// "/pkg.Service/Method": the same code path as native gRPC. The handler context
// carries
//   - the request headers as incoming gRPC metadata (lower-cased keys, all
//     headers including Content-Type, Accept and X-Prpc-Grpc-Timeout; keys
//     ending in "-bin" are base64-decoded) plus ":authority" (the Host);
//   - a peer.Peer with the remote address and, for TLS connections, a
//     credentials.TLSInfo (so mTLS authentication works on both transports);
//   - a grpc.ServerTransportStream, so grpc.Method, grpc.SetHeader,
//     grpc.SendHeader and grpc.SetTrailer work; header and trailer metadata
//     are both written as HTTP response headers (pRPC has no trailers);
//   - a marker reported by FromPRPC;
//   - the deadline from X-Prpc-Grpc-Timeout, if present.
//
// Protocol decisions (docs/service.md §1 and LUCI's pRPC v1.x):
//
//	request                                   result
//	non-POST                                  405, Allow: POST, code 12 (Unimplemented)
//	path not under /prpc/                     404, code 5 (NotFound)
//	unknown service or method, or a stream    501, code 12 (Unimplemented)
//	no Content-Type, or an unknown one, or an 415, code 3 (InvalidArgument)
//	unknown Content-Encoding
//	Accept names no supported encoding        406, code 3 (InvalidArgument)
//	malformed X-Prpc-Grpc-Timeout             400, code 3 (InvalidArgument)
//	body over the limit (default 32 MiB)      413, code 3 (InvalidArgument); refused before
//	                                          reading when Content-Length is over it
//	undecodable body                          400, code 3 (InvalidArgument)
//	handler panic                             500, code 13 (Internal); logged with the stack
//
// Every row but the first three and the panic is answered before the
// handler and the interceptors run, as gRPC answers undecodable requests;
// WithRejectionHook sees those calls (to log them, for example).
//
// Handler errors are converted with status.FromError; errors that carry no
// status become DeadlineExceeded or Canceled when they wrap
// context.DeadlineExceeded or context.Canceled, and Unknown otherwise. The HTTP
// status is: OK 200, InvalidArgument 400, Unauthenticated 401,
// PermissionDenied 403, NotFound 404, AlreadyExists 409, ResourceExhausted 429,
// Canceled 499 (nginx's "client closed request", as LUCI uses), Unimplemented
// 501, Unavailable 503, DeadlineExceeded 504, and 500 for everything else,
// including Unknown (so a non-status error is 500 with code 2). An error
// response has Content-Type: text/plain, X-Prpc-Grpc-Code and the status
// message followed by a newline as its body (as LUCI's server writes it; the
// Client strips that newline). Status details, if any, travel in
// X-Prpc-Status-Details-Bin (pRPC v1.2): one base64 google.protobuf.Any per
// value, encoded like the response.
//
// A request must name its encoding in Content-Type: without one, and with
// text/plain or a form encoding, a browser sends a body to any origin
// without a CORS preflight, so such requests are refused, never decoded.
// The server grants no CORS permission (no Access-Control-Allow-* header; an
// OPTIONS preflight is 405), so a page of another origin cannot send the
// encodings it accepts.
//
// Every response carries X-Prpc-Grpc-Code and X-Content-Type-Options: nosniff.
// Request bodies may be gzip-compressed (Content-Encoding: gzip); the size
// limit applies to both the compressed and the decompressed body. An empty
// body is an empty message in every encoding. JSON and text requests ignore
// unknown fields, as binary ones do, so that newer clients keep working.
//
// # Client
//
// Client implements grpc.ClientConnInterface over pRPC, so the generated
// NewXxxClient functions work with it. It sends Content-Type and Accept for
// its encoding (binary by default), X-Prpc-Grpc-Timeout derived from the
// context deadline, the configured extra headers and the context's outgoing
// gRPC metadata, and maps X-Prpc-Grpc-Code back to status errors.
package prpc
