package frontend

import (
	"fmt"
	"slices"
	"strings"

	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
)

// accountTag is the tag prefix naming a task's quota account.
const accountTag = "qs_account"

// translateNotify turns a NotifyTasks request into pipeline input
// (docs/algorithm.md §4). More items than lim allows, or an item without
// time, task or task id, or with a time the scheduler cannot hold or further
// ahead of the server's clock than the skew allowed, makes the whole call
// invalid; every other problem with an item, a waiting task's tags and slices
// beyond lim included, becomes a task error and the other items are applied.
func translateNotify(req *swarmingv1.NotifyTasksRequest, clock clockBound, lim Limits) (state.NotifyInput, error) {
	in := state.NotifyInput{IsCallback: req.IsCallback}
	if msg := countError("notifications", len(req.Notifications), lim.NotifyItems, "items", "--max-notify-items"); msg != "" {
		return in, invalid("%s", msg)
	}
	for i, item := range req.Notifications {
		field := fmt.Sprintf("notifications[%d]", i)
		t, err := timeOf(field+".time", item.GetTime())
		if err != nil {
			return in, err
		}
		// scheduler.Notify rejects a time out of its range too, but the
		// pipeline reports what Notify rejects as a task error; such a time
		// fails the whole call.
		if err := scheduler.ValidateTime(field+".time", t); err != nil {
			return in, toStatus(err)
		}
		if err := clock.check(field+".time", t); err != nil {
			return in, err
		}
		if item.Task == nil {
			return in, invalid("%s.task: not set", field)
		}
		if item.Task.Id == "" {
			return in, invalid("%s.task.id: not set", field)
		}
		id := scheduler.RequestID(item.Task.Id)
		if err := scheduler.ValidateID(field+".task.id", item.Task.Id); err != nil {
			return in, toStatus(err)
		}
		n, msg := translateItem(item, lim)
		if msg != "" {
			in.TaskErrors = append(in.TaskErrors, state.TaskError{Task: id, Msg: msg})
			continue
		}
		in.Items = append(in.Items, n)
	}
	return in, nil
}

// translateItem translates one valid-shaped item; a non-empty message is a
// task error.
func translateItem(item *swarmingv1.NotifyTasksItem, lim Limits) (scheduler.Notification, string) {
	t := item.Task
	n := scheduler.Notification{Time: item.Time.AsTime(), Task: scheduler.Task{ID: scheduler.RequestID(t.Id)}}
	switch category := int32(t.State) &^ 0x0F; category {
	case 0x10:
		n.Kind = scheduler.NotifyWaiting
	case 0x20:
		if t.BotId == "" {
			return n, fmt.Sprintf("task is %v but has no bot_id", t.State)
		}
		if err := scheduler.ValidateID("bot_id", t.BotId); err != nil {
			return n, err.Error()
		}
		n.Kind = scheduler.NotifyRunning
		n.Worker = scheduler.WorkerID(t.BotId)
		return n, ""
	case 0x30, 0x40, 0x50:
		n.Kind = scheduler.NotifyAbsent
		return n, ""
	default:
		return n, fmt.Sprintf("unknown task state %v (0x%x)", t.State, int32(t.State))
	}
	// Slices and tags matter only for waiting tasks.
	if msg := lim.tagsError(t.Tags); msg != "" {
		return n, msg
	}
	account, msg := accountOf(t.Tags)
	if msg != "" {
		return n, msg
	}
	base, prov, msg := labelsOf(t.Slices, lim)
	if msg != "" {
		return n, msg
	}
	if t.EnqueuedTime == nil {
		return n, "pending task has no enqueued_time"
	}
	if err := t.EnqueuedTime.CheckValid(); err != nil {
		return n, "enqueued_time: " + err.Error()
	}
	if err := scheduler.ValidateTime("enqueued_time", t.EnqueuedTime.AsTime()); err != nil {
		return n, err.Error()
	}
	n.Task.Account = account
	n.Task.EnqueueTime = t.EnqueuedTime.AsTime()
	n.Task.BaseLabels, n.Task.ProvisionableLabels = base, prov
	n.Task.Tags = t.Tags
	return n, ""
}

// accountOf reads the qs_account tag: none → no account, one → its value,
// more → a task error.
func accountOf(tags []string) (scheduler.AccountID, string) {
	var found []string
	for _, tag := range tags {
		key, value, _ := strings.Cut(tag, ":")
		if key == accountTag {
			found = append(found, value)
		}
	}
	switch len(found) {
	case 0:
		return "", ""
	case 1:
		if err := scheduler.ValidateID("qs_account tag", found[0]); err != nil {
			return "", err.Error()
		}
		return scheduler.AccountID(found[0]), ""
	default:
		return "", fmt.Sprintf("%d %s tags, at most one allowed", len(found), accountTag)
	}
}

// labelsOf derives base and provisionable labels from a task's slices: one
// slice → its dimensions are the base; two → slice 1 must be a subset of
// slice 0, base = slice 1 and provisionable = slice 0 minus slice 1. Slices
// beyond lim are a task error.
func labelsOf(slices_ []*swarmingv1.SliceSpec, lim Limits) (base, prov []string, msg string) {
	if n := len(slices_); n == 1 || n == 2 {
		if msg := lim.slicesError(slices_); msg != "" {
			return nil, nil, msg
		}
	}
	switch len(slices_) {
	case 1:
		return sortedUnique(slices_[0].GetDimensions()), nil, ""
	case 2:
		s0 := sortedUnique(slices_[0].GetDimensions())
		s1 := sortedUnique(slices_[1].GetDimensions())
		for _, d := range s1 {
			if _, ok := slices.BinarySearch(s0, d); !ok {
				return nil, nil, fmt.Sprintf("slice 1 dimension %s is not in slice 0 (slice 1 must be a subset of slice 0)", quoteBounded(d))
			}
		}
		for _, d := range s0 {
			if _, ok := slices.BinarySearch(s1, d); !ok {
				prov = append(prov, d)
			}
		}
		return s1, prov, ""
	default:
		return nil, nil, fmt.Sprintf("task has %d slices; only 1-slice or 2-slice tasks are supported", len(slices_))
	}
}

func sortedUnique(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
