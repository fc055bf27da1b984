// Package frontend holds the RPC handlers of qscheduler-swarming: they
// decode and validate requests, call the pipeline, encode the answers and
// map errors to gRPC codes. The same handlers serve native gRPC and pRPC
// (package prpc) through one dispatch path.
package frontend

import (
	"context"
	"errors"
	"fmt"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus classifies an error once: every handler returns what it gives,
// never codes.Unknown.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, scheduler.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, scheduler.ErrNotFound), errors.Is(err, state.ErrPoolNotFound):
		code = codes.NotFound
	case errors.Is(err, state.ErrPoolExists):
		code = codes.AlreadyExists
	case errors.Is(err, state.ErrOverloaded):
		code = codes.ResourceExhausted
	case errors.Is(err, state.ErrInternal):
		code = codes.Internal
	case errors.Is(err, state.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

func invalid(format string, args ...any) error {
	return status.Error(codes.InvalidArgument, fmt.Sprintf(format, args...))
}

// validPool checks a pool id by the one rule for pool ids.
func validPool(field, id string) error {
	return toStatus(state.ValidatePoolID(field, id))
}
