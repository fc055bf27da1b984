package frontend

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultMaxClockSkew is how far ahead of the server's clock a request's
// time may be when Swarming.MaxClockSkew is not set.
const DefaultMaxClockSkew = 10 * time.Minute

// Swarming implements swarming.v1.ExternalScheduler for Swarming's Python
// server: its client retries only 5xx and 408 answers, once; it sends
// NotifyTasks inside task creation; and one cron calls GetCancellations and
// GetCallbacks for every pool in turn, stopping at the first error.
type Swarming struct {
	swarmingv1.UnimplementedExternalSchedulerServer
	P *state.Pipeline
	// MaxClockSkew bounds how far ahead of Now the time of an AssignTasks
	// call or of a notification may be (0: DefaultMaxClockSkew), so that
	// one bad request cannot move a pool's clock into the future.
	MaxClockSkew time.Duration
	// Limits bound what one request may carry (zero fields: DefaultLimits).
	Limits Limits
	// Now is the server's clock (nil: time.Now).
	Now func() time.Time
	// Log receives the warnings (nil: slog.Default()).
	Log *slog.Logger

	// EmptyCancellations and EmptyCallbacks count GetCancellations and
	// GetCallbacks calls answered with an empty list because the pool they
	// name cannot be read (no such pool, an empty or invalid id, the pool
	// unavailable).
	EmptyCancellations, EmptyCallbacks atomic.Int64
	warned                             perKeyLimiter
}

func (h *Swarming) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Swarming) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

// clockBound returns the server's time and how far ahead of it a request's
// time may be.
func (h *Swarming) clockBound() clockBound {
	skew := h.MaxClockSkew
	if skew <= 0 {
		skew = DefaultMaxClockSkew
	}
	return clockBound{now: h.now(), skew: skew}
}

// clockBound is the server's clock at a request and the skew allowed.
type clockBound struct {
	now  time.Time
	skew time.Duration
}

// check checks that a time that moves a pool's clock is at most skew ahead
// of now. Only the frontend knows the server's clock; whether the scheduler
// can hold the time is checked where the time is applied.
func (b clockBound) check(field string, t time.Time) error {
	if ahead := t.Sub(b.now); ahead > b.skew {
		return invalid("%s: %s is %v ahead of the server's clock (%s); at most %v is allowed",
			field, t.Format(time.RFC3339Nano), ahead.Round(time.Millisecond), b.now.UTC().Format(time.RFC3339Nano), b.skew)
	}
	return nil
}

// timeOf reads a required timestamp: set and valid.
func timeOf(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, invalid("%s: not set", field)
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, invalid("%s: %v", field, err)
	}
	return ts.AsTime(), nil
}

// AssignTasks answers idle bots' polls.
func (h *Swarming) AssignTasks(ctx context.Context, req *swarmingv1.AssignTasksRequest) (*swarmingv1.AssignTasksResponse, error) {
	if err := validPool("scheduler_id", req.SchedulerId); err != nil {
		return nil, err
	}
	now, err := timeOf("time", req.Time)
	if err != nil {
		return nil, err
	}
	if err := h.clockBound().check("time", now); err != nil {
		return nil, err
	}
	if msg := h.Limits.orDefault().botsError(req.IdleBots); msg != "" {
		return nil, invalid("%s", msg)
	}
	// The pipeline checks the time's range and the bot ids of each call on
	// its own, so that one bad call does not fail the batch holding it.
	in := state.AssignInput{Time: now, Size: proto.Size(req)}
	for _, b := range req.IdleBots {
		in.Bots = append(in.Bots, scheduler.IdleWorker{ID: scheduler.WorkerID(b.GetBotId()), Labels: b.GetDimensions()})
	}
	out, err := h.P.Assign(ctx, req.SchedulerId, in)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &swarmingv1.AssignTasksResponse{}
	for _, a := range out {
		slice := int32(0)
		if a.ProvisionRequired {
			// The second slice holds only the base dimensions: the bot
			// provisions the rest.
			slice = 1
		}
		resp.Assignments = append(resp.Assignments, &swarmingv1.TaskAssignment{BotId: string(a.Worker), TaskId: string(a.Task), SliceNumber: slice})
	}
	return resp, nil
}

// NotifyTasks applies task state changes.
func (h *Swarming) NotifyTasks(ctx context.Context, req *swarmingv1.NotifyTasksRequest) (*swarmingv1.NotifyTasksResponse, error) {
	if err := validPool("scheduler_id", req.SchedulerId); err != nil {
		return nil, err
	}
	in, err := translateNotify(req, h.clockBound(), h.Limits.orDefault())
	if err != nil {
		return nil, err
	}
	in.Size = proto.Size(req)
	if err := h.P.Notify(ctx, req.SchedulerId, in); err != nil {
		return nil, toStatus(err)
	}
	return &swarmingv1.NotifyTasksResponse{}, nil
}

// GetCancellations returns the tasks to stop.
func (h *Swarming) GetCancellations(ctx context.Context, req *swarmingv1.GetCancellationsRequest) (*swarmingv1.GetCancellationsResponse, error) {
	resp := &swarmingv1.GetCancellationsResponse{}
	err := h.readForCron(ctx, "GetCancellations", &h.EmptyCancellations, req.SchedulerId, func(s *scheduler.Scheduler) {
		for _, c := range s.Cancellations() {
			reason := swarmingv1.GetCancellationsResponse_Cancellation_PREEMPTED
			if c.Reason == scheduler.CancelError {
				reason = swarmingv1.GetCancellationsResponse_Cancellation_ERROR
			}
			resp.Cancellations = append(resp.Cancellations, &swarmingv1.GetCancellationsResponse_Cancellation{
				BotId: string(c.Worker), TaskId: string(c.Task), Reason: reason, ExtraInfo: c.ExtraInfo,
			})
		}
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// GetCallbacks returns the tasks Swarming should re-notify.
func (h *Swarming) GetCallbacks(ctx context.Context, req *swarmingv1.GetCallbacksRequest) (*swarmingv1.GetCallbacksResponse, error) {
	resp := &swarmingv1.GetCallbacksResponse{}
	err := h.readForCron(ctx, "GetCallbacks", &h.EmptyCallbacks, req.SchedulerId, func(s *scheduler.Scheduler) {
		for _, id := range s.Callbacks() {
			resp.TaskIds = append(resp.TaskIds, string(id))
		}
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// readForCron runs f on the pool's committed state for GetCancellations and
// GetCallbacks. Swarming calls both from one cron that goes through every
// pool of its configuration and stops at the first error, so a pool that
// cannot be read (no such pool, an empty or invalid id, a pool unavailable
// for now) must not fail the call: it gets an empty answer, counted, and a
// warning at most once a minute per pool id. Only a caller that gave up
// gets its own error.
func (h *Swarming) readForCron(ctx context.Context, method string, empty *atomic.Int64, poolID string, f func(s *scheduler.Scheduler)) error {
	err := state.ValidatePoolID("scheduler_id", poolID)
	if err == nil {
		err = h.P.Read(ctx, poolID, func(s *scheduler.Scheduler) error {
			f(s)
			return nil
		})
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return toStatus(err)
	}
	empty.Add(1)
	if h.warned.allow(poolID, h.now()) {
		h.log().Warn("answering an empty list for a pool that cannot be read", "method", method,
			"scheduler_id", quoteBounded(poolID), "code", status.Code(toStatus(err)).String(), "err", err)
	}
	return nil
}

// perKeyLimiter lets one event per key through each minute. It remembers at
// most perKeyLimit keys, so that callers inventing ids cannot grow it.
type perKeyLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const perKeyLimit = 1024

func (l *perKeyLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < time.Minute {
		return false
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if len(l.last) >= perKeyLimit {
		for k, t := range l.last {
			if now.Sub(t) >= time.Minute {
				delete(l.last, k)
			}
		}
		if len(l.last) >= perKeyLimit {
			clear(l.last)
		}
	}
	l.last[key] = now
	return true
}
