package frontend

import (
	"context"
	"fmt"

	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
)

// Swarming implements swarming.v1.ExternalScheduler.
type Swarming struct {
	swarmingv1.UnimplementedExternalSchedulerServer
	P *state.Pipeline
}

// AssignTasks answers idle bots' polls.
func (h *Swarming) AssignTasks(ctx context.Context, req *swarmingv1.AssignTasksRequest) (*swarmingv1.AssignTasksResponse, error) {
	if err := validPool("scheduler_id", req.SchedulerId); err != nil {
		return nil, err
	}
	if req.Time == nil {
		return nil, invalid("time: not set")
	}
	if err := req.Time.CheckValid(); err != nil {
		return nil, invalid("time: %v", err)
	}
	if err := scheduler.ValidateTime("time", req.Time.AsTime()); err != nil {
		return nil, toStatus(err)
	}
	in := state.AssignInput{Time: req.Time.AsTime()}
	for i, b := range req.IdleBots {
		if err := scheduler.ValidateID(fmt.Sprintf("idle_bots[%d].bot_id", i), b.GetBotId()); err != nil {
			return nil, toStatus(err)
		}
		in.Bots = append(in.Bots, scheduler.IdleWorker{ID: scheduler.WorkerID(b.BotId), Labels: b.Dimensions})
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
	in, err := translateNotify(req)
	if err != nil {
		return nil, err
	}
	if err := h.P.Notify(ctx, req.SchedulerId, in); err != nil {
		return nil, toStatus(err)
	}
	return &swarmingv1.NotifyTasksResponse{}, nil
}

// GetCancellations returns the tasks to stop.
func (h *Swarming) GetCancellations(ctx context.Context, req *swarmingv1.GetCancellationsRequest) (*swarmingv1.GetCancellationsResponse, error) {
	if err := validPool("scheduler_id", req.SchedulerId); err != nil {
		return nil, err
	}
	resp := &swarmingv1.GetCancellationsResponse{}
	err := h.P.Read(ctx, req.SchedulerId, func(s *scheduler.Scheduler) error {
		for _, c := range s.Cancellations() {
			reason := swarmingv1.GetCancellationsResponse_Cancellation_PREEMPTED
			if c.Reason == scheduler.CancelError {
				reason = swarmingv1.GetCancellationsResponse_Cancellation_ERROR
			}
			resp.Cancellations = append(resp.Cancellations, &swarmingv1.GetCancellationsResponse_Cancellation{
				BotId: string(c.Worker), TaskId: string(c.Task), Reason: reason, ExtraInfo: c.ExtraInfo,
			})
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// GetCallbacks returns the tasks Swarming should re-notify.
func (h *Swarming) GetCallbacks(ctx context.Context, req *swarmingv1.GetCallbacksRequest) (*swarmingv1.GetCallbacksResponse, error) {
	if err := validPool("scheduler_id", req.SchedulerId); err != nil {
		return nil, err
	}
	resp := &swarmingv1.GetCallbacksResponse{}
	err := h.P.Read(ctx, req.SchedulerId, func(s *scheduler.Scheduler) error {
		for _, id := range s.Callbacks() {
			resp.TaskIds = append(resp.TaskIds, string(id))
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}
