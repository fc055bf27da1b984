package main

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The gRPC library answers Internal for a request it cannot unmarshal, before
// any interceptor runs: such calls would be neither InvalidArgument, as over
// pRPC, nor logged. The service therefore decodes gRPC requests itself: the
// server's codec hands the unary methods of the services registered through
// decodingRegistrar their bytes undecoded, and the method's handler decodes
// them, answers InvalidArgument for what it cannot decode and reports the
// call to a hook that logs it.
//
// A request over the receive limit (grpc.MaxRecvMsgSize, set from
// --max-request-bytes) is refused by the library from the length before the
// message: it answers ResourceExhausted itself, before the handler can
// choose another code, and the hook logs the call with that code.

// rawRequest receives the bytes of a request, undecoded.
type rawRequest struct{ b []byte }

// serverCodec is the proto codec, except that it leaves a rawRequest's bytes
// undecoded.
type serverCodec struct{ encoding.CodecV2 }

func newServerCodec() serverCodec { return serverCodec{encoding.GetCodecV2("proto")} }

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		r.b = data.Materialize()
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// decodingRegistrar registers services on a grpc.Server with unary handlers
// that decode their requests as described above. The server must use
// serverCodec (grpc.ForceServerCodecV2).
type decodingRegistrar struct {
	s grpc.ServiceRegistrar
	// rejected is told of every call whose request could not be received or
	// decoded, with the error answered.
	rejected func(ctx context.Context, fullMethod string, err error)
}

func (r decodingRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		m := &d.Methods[i]
		fullMethod := "/" + desc.ServiceName + "/" + m.MethodName
		handler := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			var decErr error
			out, err := handler(srv, ctx, func(v any) error {
				decErr = r.decode(dec, v)
				return decErr
			}, ic)
			if decErr != nil && r.rejected != nil {
				r.rejected(ctx, fullMethod, decErr)
			}
			return out, err
		}
	}
	r.s.RegisterService(&d, impl)
}

// decode reads the request's bytes through dec and decodes them into v.
func (r decodingRegistrar) decode(dec func(any) error, v any) error {
	var raw rawRequest
	if err := dec(&raw); err != nil {
		// A request over the receive limit fails here, and the library has
		// already answered ResourceExhausted: return what it answered.
		return err
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request type %T is not a protobuf message", v)
	}
	if err := proto.Unmarshal(raw.b, msg); err != nil {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("could not decode the request: %v", err))
	}
	return nil
}
