package frontend

// Fuzz targets of the translation of Swarming's requests
// (docs/algorithm.md §4, docs/operations.md "Limits"):
//
//   - FuzzTranslateNotify: translateNotify on any NotifyTasks request, with
//     small limits: it never panics; the call is InvalidArgument naming a
//     notifications field exactly when its size or an item's time, task or
//     task id is unusable; otherwise every item becomes exactly one applied
//     notification or one task error, as it would alone; task errors are
//     short valid UTF-8 texts; applied notifications respect the limits and
//     the scheduler accepts every one of them.
//   - FuzzSwarmingHandlers: AssignTasks and NotifyTasks on a real pipeline
//     (memory store): only OK, InvalidArgument naming a field, or NotFound
//     for another pool; a rejected call changes nothing; an accepted one
//     never moves the pool's clock past the server's clock plus the skew.
//
//	go test -run '^$' -fuzz FuzzTranslateNotify -fuzztime 60s ./frontend
//	go test -run '^$' -fuzz FuzzSwarmingHandlers -fuzztime 60s ./frontend

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fuzzMaxErrorBytes bounds a task error's text: it quotes at most 128 bytes
// of a client's value (at most 4 bytes of quoted text each) and a sentence.
const fuzzMaxErrorBytes = 1024

// fuzzLimits derives small limits from the fuzzer's bytes, so that every
// limit is reached; 0 means the default.
func fuzzLimits(b [7]uint8) Limits {
	return Limits{
		BotDimensions:   int(b[0] % 8),
		SliceDimensions: int(b[1] % 8),
		DimensionBytes:  int(b[2] % 64),
		TagBytes:        int(b[3] % 64),
		TaskTags:        int(b[4] % 8),
		AssignBots:      int(b[5] % 8),
		NotifyItems:     int(b[6] % 8),
	}.orDefault()
}

// fuzzNotifySeeds are NotifyTasks requests touching every rule.
func fuzzNotifySeeds() []*swarmingv1.NotifyTasksRequest {
	long := strings.Repeat("é", 200)
	return []*swarmingv1.NotifyTasksRequest{
		{SchedulerId: "p", Notifications: []*swarmingv1.NotifyTasksItem{
			item(pending("t1", []string{"pool:lab", "qs_account:acct1"}, slice("pool:lab", "os:linux"))),
			item(pending("t2", nil, slice("pool:lab", "os:linux", "image:i1"), slice("pool:lab", "os:linux"))),
			item(&swarmingv1.TaskSpec{Id: "t3", State: swarmingv1.TaskSpec_RUNNING, BotId: "bot1"}),
			item(&swarmingv1.TaskSpec{Id: "t4", State: swarmingv1.TaskSpec_COMPLETED}),
		}},
		{IsCallback: true, Notifications: []*swarmingv1.NotifyTasksItem{
			item(pending("t5", []string{"qs_account:a", "qs_account:b"}, slice("a"))),
			item(pending("t6", []string{"qs_account:"}, slice("a"))),
			item(pending("t7", nil, slice("a"), slice("a"), slice("a"))),
			item(pending("t8", nil, slice("a"), slice("a", long))),
			item(&swarmingv1.TaskSpec{Id: "t9", State: swarmingv1.TaskSpec_PENDING_DEDUPING, Slices: []*swarmingv1.SliceSpec{slice("a")}}),
			item(&swarmingv1.TaskSpec{Id: "t10", State: swarmingv1.TaskSpec_RUNNING}),
			item(&swarmingv1.TaskSpec{Id: "t11", State: 0x60}),
			item(&swarmingv1.TaskSpec{Id: "t12", State: swarmingv1.TaskSpec_PENDING, Slices: []*swarmingv1.SliceSpec{slice("a")},
				EnqueuedTime: &timestamppb.Timestamp{Seconds: 1 << 40}}),
			item(&swarmingv1.TaskSpec{Id: "t13", State: swarmingv1.TaskSpec_RUNNING, BotId: strings.Repeat("b", 1025)}),
			item(pending("t14", []string{"qs_account:" + strings.Repeat("a", 1025)}, slice("a"))),
		}},
		{Notifications: []*swarmingv1.NotifyTasksItem{
			item(pending("ok", nil, slice("a"))),
			{Time: timestamppb.New(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)), Task: pending("future", nil, slice("a"))},
		}},
		{Notifications: []*swarmingv1.NotifyTasksItem{{Time: &timestamppb.Timestamp{Nanos: -1}, Task: pending("x", nil)}}},
		{Notifications: []*swarmingv1.NotifyTasksItem{{Time: ts0}}},
		{Notifications: []*swarmingv1.NotifyTasksItem{{Time: ts0, Task: &swarmingv1.TaskSpec{}}}},
		{Notifications: []*swarmingv1.NotifyTasksItem{{Time: ts0, Task: &swarmingv1.TaskSpec{Id: strings.Repeat("x", 1025)}}}},
		{Notifications: []*swarmingv1.NotifyTasksItem{{Time: &timestamppb.Timestamp{Seconds: -5e9}, Task: fuzzCompleted("old")}}},
	}
}

func fuzzCompleted(id string) *swarmingv1.TaskSpec {
	return &swarmingv1.TaskSpec{Id: id, State: swarmingv1.TaskSpec_COMPLETED}
}

// fuzzWholeCallInvalid says, independently of translateNotify, whether the call
// must fail as a whole, and which field it must name.
func fuzzWholeCallInvalid(req *swarmingv1.NotifyTasksRequest, clock clockBound, lim Limits) (bool, string) {
	if len(req.Notifications) > lim.NotifyItems {
		return true, "notifications:"
	}
	for i, it := range req.Notifications {
		field := fmt.Sprintf("notifications[%d]", i)
		ts := it.GetTime()
		if ts == nil || ts.CheckValid() != nil || scheduler.ValidateTime("", ts.AsTime()) != nil || ts.AsTime().Sub(clock.now) > clock.skew {
			return true, field + ".time"
		}
		if it.GetTask() == nil {
			return true, field + ".task"
		}
		if scheduler.ValidateID("", it.GetTask().GetId()) != nil {
			return true, field + ".task.id"
		}
	}
	return false, ""
}

func FuzzTranslateNotify(f *testing.F) {
	for i, req := range fuzzNotifySeeds() {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, int64(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0))
		f.Add(b, int64(i*60-600), uint8(3), uint8(2), uint8(9), uint8(9), uint8(2), uint8(1), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, nowOffset int64, l0, l1, l2, l3, l4, l5, l6 uint8) {
		req := &swarmingv1.NotifyTasksRequest{}
		if proto.Unmarshal(data, req) != nil {
			return // the transport answers InvalidArgument; FuzzServeRequest in prpc covers it
		}
		lim := fuzzLimits([7]uint8{l0, l1, l2, l3, l4, l5, l6})
		clock := clockBound{now: t0.Add(time.Duration(nowOffset%(1<<20)) * time.Second), skew: 10 * time.Minute}

		in, err := translateNotify(req, clock, lim)
		bad, field := fuzzWholeCallInvalid(req, clock, lim)
		if err != nil {
			msg := status.Convert(err).Message()
			switch {
			case status.Code(err) != codes.InvalidArgument:
				t.Fatalf("whole call %v, want InvalidArgument: %v", status.Code(err), err)
			case !bad:
				t.Fatalf("a call whose size, times, tasks and ids are usable was refused: %v", err)
			case !strings.Contains(msg, field):
				t.Fatalf("error %q does not name %s", msg, field)
			case len(msg) > fuzzMaxErrorBytes || !utf8.ValidString(msg):
				t.Fatalf("error of %d bytes: %q", len(msg), msg)
			}
			return
		}
		if bad {
			t.Fatalf("accepted, but %s is unusable", field)
		}
		if in.IsCallback != req.IsCallback {
			t.Fatalf("IsCallback %v, want %v", in.IsCallback, req.IsCallback)
		}
		if n := len(in.Items) + len(in.TaskErrors); n != len(req.Notifications) {
			t.Fatalf("%d items became %d applied and %d task errors", len(req.Notifications), len(in.Items), len(in.TaskErrors))
		}

		s, err := scheduler.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		var items []scheduler.Notification
		var taskErrors []state.TaskError
		for i, it := range req.Notifications {
			// Each item alone: exactly one outcome, the same as in the call.
			one, err := translateNotify(&swarmingv1.NotifyTasksRequest{IsCallback: req.IsCallback, Notifications: []*swarmingv1.NotifyTasksItem{it}}, clock, lim)
			if err != nil {
				t.Fatalf("item %d alone: %v", i, err)
			}
			id := scheduler.RequestID(it.Task.Id)
			switch {
			case len(one.Items) == 1 && len(one.TaskErrors) == 0:
				fuzzCheckApplied(t, it, one.Items[0], lim)
				items = append(items, one.Items[0])
			case len(one.Items) == 0 && len(one.TaskErrors) == 1:
				te := one.TaskErrors[0]
				if te.Task != id || te.Msg == "" || len(te.Msg) > fuzzMaxErrorBytes || !utf8.ValidString(te.Msg) {
					t.Fatalf("item %d: task error %q of %d bytes for task %q", i, te.Msg, len(te.Msg), te.Task)
				}
				taskErrors = append(taskErrors, te)
			default:
				t.Fatalf("item %d alone became %d applied and %d task errors", i, len(one.Items), len(one.TaskErrors))
			}
		}
		if !slices.EqualFunc(items, in.Items, fuzzNotificationEqual) || !slices.Equal(taskErrors, in.TaskErrors) {
			t.Fatalf("the items of the call are not the items alone:\ncall %+v\nalone %+v %+v", in, items, taskErrors)
		}

		// The frontend validated every applied item: the scheduler takes
		// them all, and the state they make round-trips through the store's
		// encoding.
		for _, n := range in.Items {
			if err := s.Notify(n, in.IsCallback); err != nil {
				t.Fatalf("the scheduler rejects a translated notification %+v: %v", n, err)
			}
		}
		for _, te := range in.TaskErrors {
			if err := s.SetTaskError(te.Task, te.Msg); err != nil {
				t.Fatalf("SetTaskError(%q): %v", te.Task, err)
			}
		}
		fuzzCheckRoundTrip(t, s)
		resp := &swarmingv1.GetCancellationsResponse{}
		for _, c := range s.Cancellations() {
			resp.Cancellations = append(resp.Cancellations, &swarmingv1.GetCancellationsResponse_Cancellation{TaskId: string(c.Task), BotId: string(c.Worker), ExtraInfo: c.ExtraInfo})
		}
		if _, err := proto.Marshal(resp); err != nil {
			t.Fatalf("GetCancellations cannot be encoded: %v", err)
		}
	})
}

func fuzzNotificationEqual(a, b scheduler.Notification) bool {
	return a.Time.Equal(b.Time) && a.Kind == b.Kind && a.Worker == b.Worker && a.Task.ID == b.Task.ID &&
		a.Task.Account == b.Task.Account && a.Task.EnqueueTime.Equal(b.Task.EnqueueTime) &&
		slices.Equal(a.Task.BaseLabels, b.Task.BaseLabels) && slices.Equal(a.Task.ProvisionableLabels, b.Task.ProvisionableLabels) &&
		slices.Equal(a.Task.Tags, b.Task.Tags)
}

// fuzzCheckApplied checks an applied notification against its item and the
// limits.
func fuzzCheckApplied(t *testing.T, it *swarmingv1.NotifyTasksItem, n scheduler.Notification, lim Limits) {
	t.Helper()
	task := it.Task
	if n.Task.ID != scheduler.RequestID(task.Id) || !n.Time.Equal(it.Time.AsTime()) {
		t.Fatalf("applied %+v for item %v", n, it)
	}
	switch category := int32(task.State) &^ 0x0F; {
	case category == 0x10 && n.Kind == scheduler.NotifyWaiting:
	case category == 0x20 && n.Kind == scheduler.NotifyRunning:
		if n.Worker != scheduler.WorkerID(task.BotId) {
			t.Fatalf("running on %q, the item says %q", n.Worker, task.BotId)
		}
		return
	case (category == 0x30 || category == 0x40 || category == 0x50) && n.Kind == scheduler.NotifyAbsent:
		return
	default:
		t.Fatalf("state %v (0x%x) applied as kind %d", task.State, int32(task.State), n.Kind)
	}
	if len(n.Task.Tags) > lim.TaskTags {
		t.Fatalf("%d tags applied, at most %d allowed", len(n.Task.Tags), lim.TaskTags)
	}
	for _, tag := range n.Task.Tags {
		if len(tag) > lim.TagBytes {
			t.Fatalf("a tag of %d bytes applied, at most %d allowed", len(tag), lim.TagBytes)
		}
	}
	base, prov := n.Task.BaseLabels, n.Task.ProvisionableLabels
	if len(base)+len(prov) > lim.SliceDimensions {
		t.Fatalf("%d+%d labels applied, at most %d dimensions allowed", len(base), len(prov), lim.SliceDimensions)
	}
	for _, l := range append(slices.Clone(base), prov...) {
		if len(l) > lim.DimensionBytes {
			t.Fatalf("a label of %d bytes applied, at most %d allowed", len(l), lim.DimensionBytes)
		}
	}
	if !slices.IsSorted(base) || !slices.IsSorted(prov) || len(slices.Compact(slices.Clone(base))) != len(base) || len(slices.Compact(slices.Clone(prov))) != len(prov) {
		t.Fatalf("labels not sorted and unique: %q %q", base, prov)
	}
	for _, p := range prov {
		if _, ok := slices.BinarySearch(base, p); ok {
			t.Fatalf("label %q both base and provisionable", p)
		}
	}
	var accounts []string
	for _, tag := range task.Tags {
		if k, v, _ := strings.Cut(tag, ":"); k == accountTag {
			accounts = append(accounts, v)
		}
	}
	if want := strings.Join(accounts, ""); len(accounts) > 1 || string(n.Task.Account) != want {
		t.Fatalf("account %q from the tags %q", n.Task.Account, task.Tags)
	}
	if !n.Task.EnqueueTime.Equal(task.EnqueuedTime.AsTime()) {
		t.Fatalf("enqueue time %v, the task says %v", n.Task.EnqueueTime, task.EnqueuedTime.AsTime())
	}
}

// fuzzCheckRoundTrip: the state encodes, decodes and loads back to itself.
func fuzzCheckRoundTrip(t *testing.T, s *scheduler.Scheduler) {
	t.Helper()
	st := s.ToProto()
	b, err := proto.Marshal(st)
	if err != nil {
		t.Fatalf("the state cannot be encoded: %v", err)
	}
	var back = st.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b, back); err != nil {
		t.Fatalf("the state's encoding does not decode: %v", err)
	}
	if !proto.Equal(st, back) {
		t.Fatal("the state's encoding loses data")
	}
}

// fuzzEnv is one pipeline with one pool, kept for the whole fuzz run.
type fuzzEnv struct {
	p   *state.Pipeline
	h   *Swarming
	ctx context.Context
}

const fuzzPool = "fuzz"

func newFuzzEnv(tb testing.TB) *fuzzEnv {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	p := state.New(memory.New(memory.Options{}), nil, state.Options{Logger: quiet})
	if err := p.Load(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	if err := p.CreatePool(ctx, fuzzPool); err != nil {
		tb.Fatal(err)
	}
	h := &Swarming{P: p, Now: func() time.Time { return t0 }, MaxClockSkew: 10 * time.Minute, Log: quiet}
	return &fuzzEnv{p: p, h: h, ctx: ctx}
}

// reset wipes the pool and gives it a waiting task, a running one and an
// idle bot, at t0.
func (e *fuzzEnv) reset(t *testing.T) {
	t.Helper()
	if err := e.p.Mutate(e.ctx, fuzzPool, func(s *scheduler.Scheduler) error { s.Wipe(); return nil }); err != nil {
		t.Fatal(err)
	}
	_, err := e.h.NotifyTasks(e.ctx, &swarmingv1.NotifyTasksRequest{SchedulerId: fuzzPool, Notifications: []*swarmingv1.NotifyTasksItem{
		item(pending("waiting", []string{"qs_account:a"}, slice("pool:lab", "os:linux"))),
		item(&swarmingv1.TaskSpec{Id: "running", State: swarmingv1.TaskSpec_RUNNING, BotId: "busy"}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.h.AssignTasks(e.ctx, &swarmingv1.AssignTasksRequest{SchedulerId: fuzzPool, Time: ts0,
		IdleBots: []*swarmingv1.IdleBot{{BotId: "idle", Dimensions: []string{"pool:other"}}}}); err != nil {
		t.Fatal(err)
	}
}

func (e *fuzzEnv) state(t *testing.T) proto.Message {
	t.Helper()
	var st proto.Message
	if err := e.p.Read(e.ctx, fuzzPool, func(s *scheduler.Scheduler) error { st = s.ToProto(); return nil }); err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *fuzzEnv) clock(t *testing.T) (time.Time, bool) {
	t.Helper()
	var c time.Time
	var ok bool
	if err := e.p.Read(e.ctx, fuzzPool, func(s *scheduler.Scheduler) error { c, ok = s.Clock(); return nil }); err != nil {
		t.Fatal(err)
	}
	return c, ok
}

func FuzzSwarmingHandlers(f *testing.F) {
	for _, req := range fuzzNotifySeeds() {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(false, false, b, uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0))
	}
	for _, req := range []*swarmingv1.AssignTasksRequest{
		{Time: ts0, IdleBots: []*swarmingv1.IdleBot{{BotId: "b1", Dimensions: []string{"pool:lab", "os:linux"}}, {BotId: "idle"}}},
		{Time: ts0, IdleBots: []*swarmingv1.IdleBot{{BotId: "b1", Dimensions: []string{"pool:lab", "os:linux", "x"}}, {BotId: ""}}},
		{Time: timestamppb.New(t0.Add(9 * time.Minute)), IdleBots: []*swarmingv1.IdleBot{{BotId: "busy", Dimensions: []string{"pool:lab", "os:linux"}}}},
		{Time: timestamppb.New(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)), IdleBots: []*swarmingv1.IdleBot{{BotId: "b"}}},
		{Time: &timestamppb.Timestamp{Seconds: -1 << 40}, IdleBots: []*swarmingv1.IdleBot{{BotId: "b"}}},
		{Time: &timestamppb.Timestamp{Seconds: -5e9}, IdleBots: []*swarmingv1.IdleBot{{BotId: "b"}}},
		{Time: ts0, IdleBots: []*swarmingv1.IdleBot{{BotId: strings.Repeat("b", 1025)}}},
		{Time: ts0, IdleBots: []*swarmingv1.IdleBot{{BotId: "a"}, {BotId: "b"}, {BotId: "a", Dimensions: []string{"pool:lab", "os:linux", "123456789"}}}},
		{SchedulerId: "other", Time: ts0},
		{SchedulerId: "\x00/", Time: ts0},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(true, req.SchedulerId != "", b, uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0))
		f.Add(true, req.SchedulerId != "", b, uint8(2), uint8(2), uint8(8), uint8(8), uint8(2), uint8(2), uint8(2))
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, assign, keepPoolID bool, data []byte, l0, l1, l2, l3, l4, l5, l6 uint8) {
		e.h.Limits = Limits{}
		e.reset(t)
		e.h.Limits = fuzzLimits([7]uint8{l0, l1, l2, l3, l4, l5, l6})
		before := e.state(t)

		var err error
		var bots map[string]bool
		var out *swarmingv1.AssignTasksResponse
		if assign {
			req := &swarmingv1.AssignTasksRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			if !keepPoolID {
				req.SchedulerId = fuzzPool
			}
			bots = map[string]bool{}
			for _, b := range req.IdleBots {
				bots[b.BotId] = true
			}
			out, err = e.h.AssignTasks(e.ctx, req)
		} else {
			req := &swarmingv1.NotifyTasksRequest{}
			if proto.Unmarshal(data, req) != nil {
				return
			}
			if !keepPoolID {
				req.SchedulerId = fuzzPool
			}
			_, err = e.h.NotifyTasks(e.ctx, req)
		}

		switch code := status.Code(err); code {
		case codes.OK:
			if c, ok := e.clock(t); !ok || c.Sub(t0) > e.h.MaxClockSkew {
				t.Fatalf("accepted: the pool's clock is %v (set: %v), the server's %v", c, ok, t0)
			}
			for _, a := range out.GetAssignments() {
				if !bots[a.BotId] || a.TaskId == "" || (a.SliceNumber != 0 && a.SliceNumber != 1) {
					t.Fatalf("assignment %v for the bots %v", a, bots)
				}
			}
			st := e.state(t)
			if _, err := proto.Marshal(st); err != nil {
				t.Fatalf("the pool's state cannot be encoded: %v", err)
			}
			return
		case codes.InvalidArgument:
			msg := status.Convert(err).Message()
			if !strings.Contains(msg, "scheduler_id") && !strings.Contains(msg, "time") && !strings.Contains(msg, "idle_bots") &&
				!strings.Contains(msg, "notifications") {
				t.Fatalf("InvalidArgument names no field: %q", msg)
			}
			if len(msg) > fuzzMaxErrorBytes || !utf8.ValidString(msg) {
				t.Fatalf("error of %d bytes: %q", len(msg), msg)
			}
		case codes.NotFound:
			if !keepPoolID {
				t.Fatalf("NotFound for the pool: %v", err)
			}
		default:
			t.Fatalf("answer %v: %v", code, err)
		}
		if after := e.state(t); !proto.Equal(before, after) {
			t.Fatalf("a rejected call (%v) changed the pool", err)
		}
	})
}
