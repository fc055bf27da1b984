// Package eventlog writes the scheduler's events as rows (the
// qscheduler.events.v1.TaskEvent message): JSON lines to a local file, to
// memory for tests, and later to BigQuery. Sinks buffer and write in the
// background; under sustained failure or overload they shed the oldest rows
// and count what they dropped.
package eventlog

import (
	"fmt"
	"slices"
	"sync/atomic"

	eventsv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/events/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Counters of a sink, for metrics.
type Counters struct {
	Written atomic.Int64
	Dropped atomic.Int64
	Failed  atomic.Int64 // rows not written: they failed to marshal, or their write failed (a full disk) and they were cut from the file
}

var rowSeq atomic.Uint64

// Row converts one event of pool into its row. rowID makes retried writes
// idempotent; it is unique within the process and across restarts by its
// prefix (the caller's instance id). Event types and completion reasons have
// the values of the row's enums (TestRowTypesAndReasons).
func Row(instance, pool string, e scheduler.Event) *eventsv1.TaskEvent {
	r := &eventsv1.TaskEvent{
		RowId:               fmt.Sprintf("%s-%d", instance, rowSeq.Add(1)),
		Pool:                pool,
		Type:                eventsv1.TaskEvent_Type(e.Type),
		TaskId:              string(e.Task),
		Time:                timestamppb.New(scheduler.Time(e.Time)),
		BaseLabels:          slices.Clone(e.BaseLabels),
		ProvisionableLabels: slices.Clone(e.ProvisionableLabels),
		AccountId:           string(e.Account),
		AccountValid:        e.AccountValid,
		AccountBalance:      slices.Clone(e.Balance[:]),
		Cost:                slices.Clone(e.Cost[:]),
		BotId:               string(e.Worker),
		BotDimensions:       slices.Clone(e.WorkerLabels),
		FromCallback:        e.FromCallback,
		Tags:                slices.Clone(e.Tags),
		Reason:              eventsv1.TaskEvent_Reason(e.Reason),
		OtherTaskId:         string(e.OtherTask),
		OtherBotId:          string(e.OtherWorker),
		Priority:            int32(e.Level),
		OldPriority:         int32(e.OldLevel),
		ProvisionRequired:   e.ProvisionRequired,
		Preempting:          e.Preempting,
		PreemptedTaskId:     string(e.PreemptedTask),
		PreemptorTaskId:     string(e.PreemptorTask),
		Error:               e.Error,
	}
	if e.Preempting {
		r.PreemptionCost = slices.Clone(e.PreemptionCost[:])
	}
	return r
}
