package scheduler

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"
)

// TestBadInputIsRejected: every entry point rejects bad client input with
// ErrInvalidArgument and a message naming the field, and changes nothing.
func TestBadInputIsRejected(t *testing.T) {
	long := strings.Repeat("x", MaxIDLength+1)
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name, field string
		do          func(s *Scheduler) error
	}{
		{"empty account id", "account_id", func(s *Scheduler) error { return s.AddAccount("", acctCfg(1, 1), nil) }},
		{"long account id", "account_id", func(s *Scheduler) error { return s.AddAccount(AccountID(long), acctCfg(1, 1), nil) }},
		{"invalid UTF-8 account id", "account_id", func(s *Scheduler) error { return s.AddAccount("\xff", acctCfg(1, 1), nil) }},
		{"missing config", "config", func(s *Scheduler) error { return s.AddAccount("a", nil, nil) }},
		{"six charge rates", "charge_rate", func(s *Scheduler) error { return s.AddAccount("a", acctCfg(1, 1, 1, 1, 1, 1, 1), nil) }},
		{"negative charge rate", "charge_rate[1]", func(s *Scheduler) error { return s.AddAccount("a", acctCfg(1, 1, -1), nil) }},
		{"NaN charge rate", "charge_rate[0]", func(s *Scheduler) error { return s.AddAccount("a", acctCfg(1, nan), nil) }},
		{"infinite window", "max_charge_seconds", func(s *Scheduler) error {
			return s.AddAccount("a", acctCfg(float32(math.Inf(1)), 1), nil)
		}},
		{"negative fanout", "max_fanout", func(s *Scheduler) error {
			c := acctCfg(1, 1)
			c.MaxFanout = -1
			return s.AddAccount("a", c, nil)
		}},
		{"negative label limit", "per_label_task_limits", func(s *Scheduler) error {
			c := acctCfg(1, 1)
			c.PerLabelTaskLimits = map[string]int32{"model": -1}
			return s.AddAccount("a", c, nil)
		}},
		{"negative balance", "balance[0]", func(s *Scheduler) error { return s.AddAccount("a", acctCfg(1, 1), []float32{-1}) }},
		{"zero time", "time", func(s *Scheduler) error { return s.UpdateTime(time.Time{}) }},
		{"time out of range", "time", func(s *Scheduler) error { return s.UpdateTime(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)) }},
		{"empty task id", "task id", func(s *Scheduler) error { return s.AddRequest(Task{EnqueueTime: at(0)}, at(0), false) }},
		{"no enqueue time", "enqueue_time", func(s *Scheduler) error { return s.AddRequest(Task{ID: "r"}, at(0), false) }},
		{"empty bot id", "bot id", func(s *Scheduler) error { return s.MarkIdle("", nil, at(0), false) }},
		{"empty bot in AssignTasks", "idle_bots[1].bot_id", func(s *Scheduler) error {
			_, err := s.AssignTasks(at(0), []IdleWorker{{ID: "w"}, {}})
			return err
		}},
		{"running without bot", "bot id", func(s *Scheduler) error {
			return s.Notify(Notification{Kind: NotifyRunning, Time: at(0), Task: Task{ID: "r"}}, false)
		}},
		{"waiting without enqueue time", "enqueue_time", func(s *Scheduler) error {
			return s.Notify(Notification{Kind: NotifyWaiting, Time: at(0), Task: Task{ID: "r"}}, false)
		}},
		{"unknown notification kind", "kind", func(s *Scheduler) error {
			return s.Notify(Notification{Kind: 42, Time: at(0), Task: Task{ID: "r"}}, false)
		}},
		{"negative tombstone limit", "max_tombstones", func(s *Scheduler) error {
			return s.SetTunables(&statev1.PoolConfig{MaxTombstones: proto.Int32(-1)})
		}},
		{"NaN threshold", "promote_threshold", func(s *Scheduler) error {
			return s.SetTunables(&statev1.PoolConfig{PromoteThreshold: proto.Float32(nan)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(nil)
			must(t, err)
			before := s.ToProto()
			err = tc.do(s)
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("error = %v, want ErrInvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name the field %q", err, tc.field)
			}
			if !proto.Equal(before, s.ToProto()) {
				t.Errorf("rejected input changed the state")
			}
		})
	}
	s, err := New(nil)
	must(t, err)
	if err := s.DeleteAccount("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteAccount of an unknown account: %v, want ErrNotFound", err)
	}
}

// TestFromProtoRejectsMissingElements: nil messages inside the lists (which
// a decoder never produces, but a caller might) are errors, not panics.
func TestFromProtoRejectsMissingElements(t *testing.T) {
	for name, st := range map[string]*statev1.PoolState{
		"nil state":                    nil,
		"nil balance":                  {Balances: []*statev1.AccountBalance{nil}},
		"nil worker":                   {Workers: []*statev1.Worker{nil}},
		"nil request":                  {Waiting: []*statev1.Request{nil}},
		"nil tombstone":                {Tombstones: []*statev1.Tombstone{nil}},
		"nil pending":                  {Pending: []*statev1.PendingAssignment{nil}},
		"nil task error":               {TaskErrors: []*statev1.TaskError{nil}},
		"running request missing":      {LastUpdateUnixNanos: proto.Int64(1), Workers: []*statev1.Worker{{Id: "w", Running: &statev1.RunningTask{}}}},
		"level change after the clock": {LastUpdateUnixNanos: proto.Int64(1), Workers: []*statev1.Worker{{Id: "w", Running: &statev1.RunningTask{Request: &statev1.Request{Id: "r"}, LevelSinceUnixNanos: 2}}}},
		"tombstone of a known request": {Waiting: []*statev1.Request{{Id: "r"}}, Tombstones: []*statev1.Tombstone{{RequestId: "r"}}},
	} {
		if _, err := FromProto(st); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: error %v, want ErrInvalidArgument", name, err)
		}
	}
}

// TestFromProtoNeverPanics feeds FromProto arbitrary, mostly invalid states:
// it returns an error or a state whose round trip is lossless and whose
// indexes are consistent.
func TestFromProtoNeverPanics(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		id := rapid.SampledFrom([]string{"", "a", "b", "\xff", strings.Repeat("y", 300)})
		num := rapid.SampledFrom([]float64{0, 1, -1, math.NaN(), math.Inf(1), 1e300})
		ts := rapid.SampledFrom([]int64{0, 1e18, -1e18, math.MaxInt64, math.MinInt64})
		labels := rapid.SliceOfN(rapid.SampledFrom([]string{"a", "b", "a", ""}), 0, 3)
		req := func(name string) *statev1.Request {
			if rapid.IntRange(0, 5).Draw(t, name+"nil") == 0 {
				return nil
			}
			return &statev1.Request{
				Id: id.Draw(t, name+"id"), AccountId: id.Draw(t, name+"acct"),
				EnqueueTimeUnixNanos: ts.Draw(t, name+"enq"), ConfirmedTimeUnixNanos: ts.Draw(t, name+"conf"),
				BaseLabels: labels.Draw(t, name+"base"), ProvisionableLabels: labels.Draw(t, name+"prov"),
			}
		}
		st := &statev1.PoolState{Config: &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{}}}
		if rapid.Bool().Draw(t, "clock") {
			st.LastUpdateUnixNanos = proto.Int64(ts.Draw(t, "now"))
		}
		for range rapid.IntRange(0, 2).Draw(t, "accts") {
			st.Config.AccountConfigs[id.Draw(t, "cfgid")] = &statev1.AccountConfig{ChargeRate: []float32{float32(num.Draw(t, "rate"))}, MaxFanout: int32(rapid.IntRange(-1, 2).Draw(t, "fan"))}
		}
		for range rapid.IntRange(0, 3).Draw(t, "bals") {
			st.Balances = append(st.Balances, &statev1.AccountBalance{AccountId: id.Draw(t, "balid"), Value: rapid.SliceOfN(num, 0, 6).Draw(t, "bal")})
		}
		for range rapid.IntRange(0, 3).Draw(t, "workers") {
			w := &statev1.Worker{Id: id.Draw(t, "wid"), Labels: labels.Draw(t, "wl"), ConfirmedTimeUnixNanos: ts.Draw(t, "wc")}
			if rapid.Bool().Draw(t, "running") {
				w.Running = &statev1.RunningTask{Request: req("rt"), Priority: int32(rapid.IntRange(-1, 6).Draw(t, "prio")), Cost: rapid.SliceOfN(num, 0, 6).Draw(t, "cost"), LevelSinceUnixNanos: ts.Draw(t, "since")}
			}
			st.Workers = append(st.Workers, w)
		}
		for range rapid.IntRange(0, 3).Draw(t, "waiting") {
			st.Waiting = append(st.Waiting, req("w"))
		}
		for range rapid.IntRange(0, 2).Draw(t, "pending") {
			st.Pending = append(st.Pending, &statev1.PendingAssignment{WorkerId: id.Draw(t, "pw"), TaskToAssign: id.Draw(t, "pa"), TaskToAbort: id.Draw(t, "pab"), TimeUnixNanos: ts.Draw(t, "pt")})
		}
		for range rapid.IntRange(0, 2).Draw(t, "tombs") {
			st.Tombstones = append(st.Tombstones, &statev1.Tombstone{RequestId: id.Draw(t, "tid"), FinishTimeUnixNanos: ts.Draw(t, "tf")})
		}
		s, err := FromProto(st)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("FromProto error %v is not ErrInvalidArgument", err)
			}
			return
		}
		if err := s.checkIndexes(); err != nil {
			t.Fatal(err)
		}
		out := s.ToProto()
		again, err := FromProto(out)
		if err != nil {
			t.Fatalf("FromProto(ToProto()) failed: %v", err)
		}
		if !proto.Equal(out, again.ToProto()) {
			t.Fatal("round trip of an accepted state is not lossless")
		}
		s.runOnce()
		if err := s.checkIndexes(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestReuseEvents: events recorded into handed-back memory are the events
// of the later changes, whole, and the buffer never mixes batches.
func TestReuseEvents(t *testing.T) {
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddAccount("a", &statev1.AccountConfig{ChargeRate: []float32{1}, MaxChargeSeconds: 10}, nil); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	add := func(ids ...string) {
		for _, id := range ids {
			if err := s.AddRequest(Task{ID: RequestID(id), Account: "a", EnqueueTime: t0}, t0, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	ids := func(evs []Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Type.String()+":"+string(e.Task))
		}
		return out
	}
	add("r1", "r2", "r3")
	first := s.TakeEvents()
	if got := ids(first); !slices.Equal(got, []string{"ENQUEUED:r1", "ENQUEUED:r2", "ENQUEUED:r3"}) {
		t.Fatalf("first batch: %v", got)
	}
	s.ReuseEvents(first)
	add("r4")
	s.DiscardEvents()
	add("r5", "r6")
	second := s.TakeEvents()
	if got := ids(second); !slices.Equal(got, []string{"ENQUEUED:r5", "ENQUEUED:r6"}) {
		t.Fatalf("after reuse and discard: %v", got)
	}
	// More events than the reused memory holds: chunks, still in order.
	s.ReuseEvents(second)
	var want []string
	for i := range 600 {
		id := fmt.Sprintf("x%03d", i)
		add(id)
		want = append(want, "ENQUEUED:"+id)
	}
	if got := ids(s.TakeEvents()); !slices.Equal(got, want) {
		t.Fatalf("600 events after reuse: got %d, first %v", len(got), got[:3])
	}
	if evs := s.TakeEvents(); evs != nil {
		t.Fatalf("nothing recorded, got %v", ids(evs))
	}
}
