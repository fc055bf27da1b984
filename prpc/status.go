package prpc

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StatusClientClosedRequest is the HTTP status for Canceled (nginx's 499,
// which LUCI's pRPC server uses too).
const StatusClientClosedRequest = 499

// HTTPStatus returns the HTTP status a pRPC server responds with for code.
func HTTPStatus(code codes.Code) int {
	switch code {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return StatusClientClosedRequest
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// codeFromHTTPStatus guesses a code for a response without X-Prpc-Grpc-Code
// (from a proxy or a server that is not pRPC), following gRPC's mapping of
// HTTP statuses.
func codeFromHTTPStatus(s int) codes.Code {
	switch s {
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.Unimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codes.Unavailable
	case http.StatusOK:
		return codes.Internal
	}
	return codes.Unknown
}

// protocolError is an error of the pRPC layer itself, with an HTTP status
// that need not be the one derived from its code (405, 406, 413, 415).
type protocolError struct {
	st         *status.Status
	httpStatus int
}

func (e *protocolError) Error() string              { return e.st.Err().Error() }
func (e *protocolError) GRPCStatus() *status.Status { return e.st }

func protoErr(httpStatus int, code codes.Code, msg string) *protocolError {
	return &protocolError{st: status.New(code, msg), httpStatus: httpStatus}
}

// toStatus converts a handler error into a status and an HTTP status.
func toStatus(err error) (*status.Status, int) {
	var pe *protocolError
	if errors.As(err, &pe) {
		return pe.st, pe.httpStatus
	}
	st, ok := status.FromError(err)
	if !ok {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			st = status.New(codes.DeadlineExceeded, err.Error())
		case errors.Is(err, context.Canceled):
			st = status.New(codes.Canceled, err.Error())
		}
	}
	return st, HTTPStatus(st.Code())
}
