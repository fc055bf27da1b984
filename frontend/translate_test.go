package frontend

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var (
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ts0 = timestamppb.New(t0)
	enq = timestamppb.New(t0.Add(-time.Minute))
	// The server's clock: the requests' time, 10 minutes of skew allowed.
	clock = clockBound{now: t0, skew: 10 * time.Minute}
)

func item(task *swarmingv1.TaskSpec) *swarmingv1.NotifyTasksItem {
	return &swarmingv1.NotifyTasksItem{Time: ts0, Task: task}
}

func slice(dims ...string) *swarmingv1.SliceSpec { return &swarmingv1.SliceSpec{Dimensions: dims} }

func pending(id string, tags []string, slices ...*swarmingv1.SliceSpec) *swarmingv1.TaskSpec {
	return &swarmingv1.TaskSpec{Id: id, Tags: tags, Slices: slices, State: swarmingv1.TaskSpec_PENDING, EnqueuedTime: enq}
}

// TestTranslateItems checks every rule of docs/algorithm.md §4 for one item.
func TestTranslateItems(t *testing.T) {
	for _, tc := range []struct {
		name    string
		task    *swarmingv1.TaskSpec
		want    *scheduler.Notification // nil when a task error is expected
		wantErr string                  // substring of the task error
	}{
		{
			name: "1-slice pending task: base labels are its dimensions, account from the tag",
			task: pending("t1", []string{"pool:lab", "qs_account:acct1"}, slice("pool:lab", "os:linux")),
			want: &scheduler.Notification{Kind: scheduler.NotifyWaiting, Time: t0, Task: scheduler.Task{
				ID: "t1", Account: "acct1", EnqueueTime: enq.AsTime(), BaseLabels: []string{"os:linux", "pool:lab"},
				Tags: []string{"pool:lab", "qs_account:acct1"},
			}},
		},
		{
			name: "2-slice task: base is slice 1, provisionable is slice 0 minus slice 1",
			task: pending("t2", nil, slice("pool:lab", "os:linux", "image:i1"), slice("pool:lab", "os:linux")),
			want: &scheduler.Notification{Kind: scheduler.NotifyWaiting, Time: t0, Task: scheduler.Task{
				ID: "t2", EnqueueTime: enq.AsTime(), BaseLabels: []string{"os:linux", "pool:lab"}, ProvisionableLabels: []string{"image:i1"},
			}},
		},
		{
			name: "tags split at the first colon: a value may contain colons",
			task: pending("t3", []string{"qs_account:a:b"}, slice("pool:lab")),
			want: &scheduler.Notification{Kind: scheduler.NotifyWaiting, Time: t0, Task: scheduler.Task{
				ID: "t3", Account: "a:b", EnqueueTime: enq.AsTime(), BaseLabels: []string{"pool:lab"}, Tags: []string{"qs_account:a:b"},
			}},
		},
		{
			name: "no qs_account tag: no account",
			task: pending("t4", []string{"qs_accountx:y", "other:z"}, slice("pool:lab")),
			want: &scheduler.Notification{Kind: scheduler.NotifyWaiting, Time: t0, Task: scheduler.Task{
				ID: "t4", EnqueueTime: enq.AsTime(), BaseLabels: []string{"pool:lab"}, Tags: []string{"qs_accountx:y", "other:z"},
			}},
		},
		{name: "two qs_account tags: task error", task: pending("t5", []string{"qs_account:a", "qs_account:b"}, slice("pool:lab")), wantErr: "2 qs_account tags"},
		{name: "empty qs_account value: task error", task: pending("t5b", []string{"qs_account:"}, slice("pool:lab")), wantErr: "must not be empty"},
		{name: "3 slices: task error", task: pending("t6", nil, slice("a"), slice("a"), slice("a")), wantErr: "only 1-slice or 2-slice tasks are supported"},
		{name: "0 slices: task error", task: pending("t7", nil), wantErr: "only 1-slice or 2-slice tasks are supported"},
		{name: "slice 1 not a subset of slice 0: task error", task: pending("t8", nil, slice("a"), slice("a", "b")), wantErr: "not in slice 0"},
		{
			name:    "pending without enqueued_time: task error",
			task:    &swarmingv1.TaskSpec{Id: "t9", State: swarmingv1.TaskSpec_PENDING_DEDUPING, Slices: []*swarmingv1.SliceSpec{slice("a")}},
			wantErr: "no enqueued_time",
		},
		{
			name: "running (any 0x2X state) with a bot: running, slices and tags ignored",
			task: &swarmingv1.TaskSpec{Id: "t10", State: swarmingv1.TaskSpec_RUNNING_OVERHEAD_SETUP, BotId: "bot1", Tags: []string{"qs_account:a", "qs_account:b"}},
			want: &scheduler.Notification{Kind: scheduler.NotifyRunning, Time: t0, Task: scheduler.Task{ID: "t10"}, Worker: "bot1"},
		},
		{
			name:    "running without a bot: task error",
			task:    &swarmingv1.TaskSpec{Id: "t11", State: swarmingv1.TaskSpec_RUNNING},
			wantErr: "no bot_id",
		},
		{name: "0x30 transient done: absent", task: &swarmingv1.TaskSpec{Id: "t12", State: swarmingv1.TaskSpec_BOT_DISAPPEARED},
			want: &scheduler.Notification{Kind: scheduler.NotifyAbsent, Time: t0, Task: scheduler.Task{ID: "t12"}}},
		{name: "0x40 execution done: absent", task: &swarmingv1.TaskSpec{Id: "t13", State: swarmingv1.TaskSpec_COMPLETED},
			want: &scheduler.Notification{Kind: scheduler.NotifyAbsent, Time: t0, Task: scheduler.Task{ID: "t13"}}},
		{name: "0x50 never ran: absent, whatever the slices say", task: &swarmingv1.TaskSpec{Id: "t14", State: swarmingv1.TaskSpec_EXPIRED, Slices: []*swarmingv1.SliceSpec{slice("a"), slice("b")}},
			want: &scheduler.Notification{Kind: scheduler.NotifyAbsent, Time: t0, Task: scheduler.Task{ID: "t14"}}},
		{name: "invalid state: task error", task: &swarmingv1.TaskSpec{Id: "t15", State: swarmingv1.TaskSpec_TASK_STATE_INVALID}, wantErr: "unknown task state"},
		{name: "unknown state 0x60: task error", task: &swarmingv1.TaskSpec{Id: "t16", State: 0x60}, wantErr: "unknown task state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := translateNotify(&swarmingv1.NotifyTasksRequest{SchedulerId: "p", Notifications: []*swarmingv1.NotifyTasksItem{item(tc.task)}}, clock, DefaultLimits)
			if err != nil {
				t.Fatalf("whole call rejected: %v", err)
			}
			if tc.want == nil {
				if len(in.Items) != 0 || len(in.TaskErrors) != 1 {
					t.Fatalf("got %d items, %d task errors; want one task error", len(in.Items), len(in.TaskErrors))
				}
				if te := in.TaskErrors[0]; te.Task != scheduler.RequestID(tc.task.Id) || !strings.Contains(te.Msg, tc.wantErr) {
					t.Errorf("task error %+v, want task %s with %q", te, tc.task.Id, tc.wantErr)
				}
				return
			}
			if len(in.TaskErrors) != 0 {
				t.Fatalf("unexpected task errors %v", in.TaskErrors)
			}
			if diff := cmp.Diff([]scheduler.Notification{*tc.want}, in.Items); diff != "" {
				t.Errorf("notification (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTranslateRejectsMalformedItems: an item without time, task or task id,
// or with a time more than the skew allowed ahead of the server's clock,
// makes the whole call InvalidArgument, naming the field.
func TestTranslateRejectsMalformedItems(t *testing.T) {
	good := item(pending("ok", nil, slice("a")))
	for _, tc := range []struct {
		name  string
		item  *swarmingv1.NotifyTasksItem
		field string
	}{
		{"no time", &swarmingv1.NotifyTasksItem{Task: pending("x", nil, slice("a"))}, "notifications[1].time"},
		{"no task", &swarmingv1.NotifyTasksItem{Time: ts0}, "notifications[1].task"},
		{"no task id", &swarmingv1.NotifyTasksItem{Time: ts0, Task: &swarmingv1.TaskSpec{State: swarmingv1.TaskSpec_PENDING}}, "notifications[1].task.id"},
		{"invalid time", &swarmingv1.NotifyTasksItem{Time: &timestamppb.Timestamp{Nanos: -1}, Task: pending("x", nil, slice("a"))}, "notifications[1].time"},
		{"time too far ahead", &swarmingv1.NotifyTasksItem{Time: timestamppb.New(clock.now.Add(clock.skew + time.Second)), Task: pending("x", nil, slice("a"))}, "notifications[1].time: 2026-01-01T00:10:01Z is 10m1s ahead of the server's clock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := translateNotify(&swarmingv1.NotifyTasksRequest{Notifications: []*swarmingv1.NotifyTasksItem{good, tc.item}}, clock, DefaultLimits)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
}

// TestTranslateKeepsGoodItems: a task error does not stop the other items.
func TestTranslateKeepsGoodItems(t *testing.T) {
	in, err := translateNotify(&swarmingv1.NotifyTasksRequest{IsCallback: true, Notifications: []*swarmingv1.NotifyTasksItem{
		item(pending("bad", nil)),
		item(pending("good", nil, slice("a"))),
	}}, clock, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := state.NotifyInput{
		IsCallback: true,
		Items:      []scheduler.Notification{{Kind: scheduler.NotifyWaiting, Time: t0, Task: scheduler.Task{ID: "good", EnqueueTime: enq.AsTime(), BaseLabels: []string{"a"}}}},
		TaskErrors: []state.TaskError{{Task: "bad", Msg: "task has 0 slices; only 1-slice or 2-slice tasks are supported"}},
	}
	if diff := cmp.Diff(want, in); diff != "" {
		t.Errorf("input (-want +got):\n%s", diff)
	}
}

// TestLimits: in NotifyTasks, more items than allowed make the whole call
// InvalidArgument, while a waiting task's tags or slices beyond the limits
// are that task's error; running and absent reports ignore both. In
// AssignTasks every violation makes the call InvalidArgument. Each message
// names the field, the limit and its flag.
func TestLimits(t *testing.T) {
	lim := Limits{SliceDimensions: 2, DimensionBytes: 8, TagBytes: 8, TaskTags: 2, NotifyItems: 3, BotDimensions: 3, AssignBots: 2}.orDefault()
	long := "123456789"
	for _, tc := range []struct {
		name    string
		task    *swarmingv1.TaskSpec
		wantErr string // "" when the item applies
	}{
		{"within every limit", pending("a", []string{"12345678", "x"}, slice("12345678", "b"), slice("b")), ""},
		{"too many dimensions in slice 0", pending("b", nil, slice("a", "b", "c")), "slices[0].dimensions: 3 values, at most 2 allowed (--max-slice-dimensions)"},
		{"a dimension too long in slice 1", pending("c", nil, slice("a", "b"), slice(long)), "slices[1].dimensions[0]: 9 bytes, at most 8 allowed (--max-dimension-bytes)"},
		{"too many tags", pending("d", []string{"a", "b", "c"}, slice("a")), "tags: 3 values, at most 2 allowed (--max-task-tags)"},
		{"a tag too long", pending("e", []string{"a", long}, slice("a")), "tags[1]: 9 bytes, at most 8 allowed (--max-tag-bytes)"},
		{"3 slices: the slice count is checked first", pending("f", nil, slice("a", "b", "c"), slice("a"), slice("a")), "task has 3 slices; only 1-slice or 2-slice tasks are supported"},
		{"running: tags and slices ignored", &swarmingv1.TaskSpec{Id: "g", State: swarmingv1.TaskSpec_RUNNING, BotId: "bot", Tags: []string{long, long, long}, Slices: []*swarmingv1.SliceSpec{slice(long, long, long)}}, ""},
		{"absent: tags and slices ignored", &swarmingv1.TaskSpec{Id: "h", State: swarmingv1.TaskSpec_COMPLETED, Tags: []string{long, long, long}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := translateNotify(&swarmingv1.NotifyTasksRequest{Notifications: []*swarmingv1.NotifyTasksItem{item(tc.task)}}, clock, lim)
			if err != nil {
				t.Fatalf("whole call rejected: %v", err)
			}
			if tc.wantErr == "" {
				if len(in.Items) != 1 || len(in.TaskErrors) != 0 {
					t.Errorf("%d items, task errors %v; want the item applied", len(in.Items), in.TaskErrors)
				}
				return
			}
			if len(in.Items) != 0 || len(in.TaskErrors) != 1 || in.TaskErrors[0].Msg != tc.wantErr {
				t.Errorf("%d items, task errors %v; want the task error %q", len(in.Items), in.TaskErrors, tc.wantErr)
			}
		})
	}

	items := []*swarmingv1.NotifyTasksItem{item(pending("1", nil, slice("a"))), item(pending("2", nil, slice("a"))), item(pending("3", nil, slice("a")))}
	if _, err := translateNotify(&swarmingv1.NotifyTasksRequest{Notifications: items}, clock, lim); err != nil {
		t.Errorf("3 items, 3 allowed: %v", err)
	}
	items = append(items, item(pending("4", nil, slice("a"))))
	_, err := translateNotify(&swarmingv1.NotifyTasksRequest{Notifications: items}, clock, lim)
	if want := "notifications: 4 items, at most 3 allowed (--max-notify-items)"; status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
		t.Errorf("4 items: %v, want InvalidArgument %q", err, want)
	}

	bot := func(dims ...string) *swarmingv1.IdleBot { return &swarmingv1.IdleBot{BotId: "b", Dimensions: dims} }
	for _, tc := range []struct {
		bots []*swarmingv1.IdleBot
		want string
	}{
		{[]*swarmingv1.IdleBot{bot("a", "b", "12345678"), bot()}, ""},
		{[]*swarmingv1.IdleBot{bot(), bot(), bot()}, "idle_bots: 3 bots, at most 2 allowed (--max-assign-bots)"},
		{[]*swarmingv1.IdleBot{bot(), bot("a", "b", "c", "d")}, "idle_bots[1].dimensions: 4 values, at most 3 allowed (--max-bot-dimensions)"},
		{[]*swarmingv1.IdleBot{bot("a", long)}, "idle_bots[0].dimensions[1]: 9 bytes, at most 8 allowed (--max-dimension-bytes)"},
	} {
		if got := lim.botsError(tc.bots); got != tc.want {
			t.Errorf("bots %v: %q, want %q", tc.bots, got, tc.want)
		}
	}
	if got := (Limits{}).orDefault(); got != DefaultLimits {
		t.Errorf("zero limits %+v, want the defaults %+v", got, DefaultLimits)
	}
}

// TestTaskErrorsQuoteABoundedPrefix: a task error quotes at most 128 bytes
// of what the client sent, cut at a character boundary, and says how long
// it was, so that GetCancellations stays small whatever tasks carry.
func TestTaskErrorsQuoteABoundedPrefix(t *testing.T) {
	huge := strings.Repeat("é", 1<<19) // 1 MiB, two bytes a character
	lim := Limits{DimensionBytes: 2 << 20}.orDefault()
	in, err := translateNotify(&swarmingv1.NotifyTasksRequest{Notifications: []*swarmingv1.NotifyTasksItem{
		item(pending("t", nil, slice("a"), slice("a", "x"+huge))),
	}}, clock, lim)
	if err != nil || len(in.TaskErrors) != 1 {
		t.Fatalf("err %v, task errors %v", err, in.TaskErrors)
	}
	msg := in.TaskErrors[0].Msg
	if len(msg) > 300 || !strings.Contains(msg, "… (1048577 bytes)") || !strings.Contains(msg, "not in slice 0") || strings.Contains(msg, `\x`) {
		t.Errorf("task error of %d bytes: %s", len(msg), msg)
	}
	if got := quoteBounded("short"); got != `"short"` {
		t.Errorf("quoteBounded(short) = %s", got)
	}
}
