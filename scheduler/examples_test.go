package scheduler

// The worked examples, required outcomes and reference tests of
// docs/algorithm.md, one named test each. The expectations are written by
// hand from those rules and are never regenerated.

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

var epoch0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns the time sec seconds after epoch0.
func at(sec float64) time.Time { return epoch0.Add(time.Duration(sec * float64(time.Second))) }

func ns(sec float64) int64 { return at(sec).UnixNano() }

func vec(v ...float64) Vector {
	var out Vector
	copy(out[:], v)
	return out
}

func vec64(v ...float64) []float64 {
	out := make([]float64, NumPaidLevels)
	copy(out, v)
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func acctCfg(window float32, rates ...float32) *statev1.AccountConfig {
	return &statev1.AccountConfig{ChargeRate: rates, MaxChargeSeconds: window}
}

func load(t *testing.T, st *statev1.PoolState) *Scheduler {
	t.Helper()
	s, err := FromProto(st)
	if err != nil {
		t.Fatalf("FromProto: %v", err)
	}
	return s
}

func runningTask(id, acct string, level int32, cost []float64, since int64) *statev1.RunningTask {
	return &statev1.RunningTask{
		Request:  &statev1.Request{Id: id, AccountId: acct, EnqueueTimeUnixNanos: since, ConfirmedTimeUnixNanos: since},
		Priority: level, Cost: cost, LevelSinceUnixNanos: since,
	}
}

func balanceOf(t *testing.T, s *Scheduler, id AccountID) Vector {
	t.Helper()
	b, ok := s.Balance(id)
	if !ok {
		t.Fatalf("account %s has no balance", id)
	}
	return b
}

// algorithm.md §2.1: rates {1,2,3}, window 2 s, balance zero at t=0.
func TestUpdateTimeRecharges(t *testing.T) {
	for _, tc := range []struct {
		name string
		to   float64
		want Vector
	}{
		{"one second recharges by the rates", 1, vec(1, 2, 3)},
		{"eleven seconds stop at the caps", 11, vec(2, 4, 6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(nil)
			must(t, err)
			must(t, s.AddAccount("a1", acctCfg(2, 1, 2, 3), nil))
			must(t, s.UpdateTime(at(0)))
			must(t, s.UpdateTime(at(tc.to)))
			if diff := cmp.Diff(tc.want, balanceOf(t, s, "a1")); diff != "" {
				t.Errorf("balance (-want +got):\n%s", diff)
			}
		})
	}
}

// algorithm.md §2.1: two tasks running at P0 from t=0 to t=1, balance zero →
// {−1,2,3}.
func TestUpdateTimeChargesRunningTasks(t *testing.T) {
	s := load(t, &statev1.PoolState{
		Config:              &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{"a1": acctCfg(2, 1, 2, 3)}},
		LastUpdateUnixNanos: proto.Int64(ns(0)),
		Balances:            []*statev1.AccountBalance{{AccountId: "a1", Value: vec64()}},
		Workers: []*statev1.Worker{
			{Id: "w1", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("r1", "a1", 0, vec64(), ns(0))},
			{Id: "w2", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("r2", "a1", 0, vec64(), ns(0))},
		},
	})
	must(t, s.UpdateTime(at(1)))
	if diff := cmp.Diff(vec(-1, 2, 3), balanceOf(t, s, "a1")); diff != "" {
		t.Errorf("balance (-want +got):\n%s", diff)
	}
	// And the tasks accrued one second each at P0.
	for _, w := range s.ToProto().Workers {
		if got := s.workers[WorkerID(w.Id)].costAt(s.now); got != vec(1) {
			t.Errorf("%s cost = %v, want {1}", w.Id, got)
		}
	}
}

// algorithm.md §2.1: rates {1,1,1}, window 10, balance {9.5,12,10.5}, 1 s
// with one task at each of P1, P2, P3 → {10,11,10,−1}: above the cap only
// decays.
func TestUpdateTimeAboveCapOnlyDecays(t *testing.T) {
	s := load(t, &statev1.PoolState{
		Config:              &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{"a1": acctCfg(10, 1, 1, 1)}},
		LastUpdateUnixNanos: proto.Int64(ns(0)),
		Balances:            []*statev1.AccountBalance{{AccountId: "a1", Value: vec64(9.5, 12, 10.5)}},
		Workers: []*statev1.Worker{
			{Id: "w1", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("r1", "a1", 1, vec64(), ns(0))},
			{Id: "w2", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("r2", "a1", 2, vec64(), ns(0))},
			{Id: "w3", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("r3", "a1", 3, vec64(), ns(0))},
		},
	})
	must(t, s.UpdateTime(at(1)))
	if diff := cmp.Diff(vec(10, 11, 10, -1), balanceOf(t, s, "a1")); diff != "" {
		t.Errorf("balance (-want +got):\n%s", diff)
	}
}

// algorithm.md §1.6: the first time-carrying input sets the clock and accrues
// nothing; a time before the clock does nothing.
func TestUpdateTimeUnsetClockAndBackwards(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	must(t, s.AddAccount("a1", acctCfg(100, 1), nil))
	must(t, s.UpdateTime(at(50)))
	if got := balanceOf(t, s, "a1"); got != (Vector{}) {
		t.Errorf("first UpdateTime accrued %v, want nothing", got)
	}
	must(t, s.UpdateTime(at(60)))
	must(t, s.UpdateTime(at(55)))
	if got := balanceOf(t, s, "a1"); got != vec(10) {
		t.Errorf("balance = %v, want {10} (backwards time ignored)", got)
	}
	if got := *s.ToProto().LastUpdateUnixNanos; got != ns(60) {
		t.Errorf("clock = %v, want t=60", Time(got))
	}
}

// checkPass runs one pass and compares its decisions with want.
func checkPass(t *testing.T, s *Scheduler, want []assignment) {
	t.Helper()
	if diff := cmp.Diff(want, decisions(s.runOnce())); diff != "" {
		t.Errorf("pass (-want +got):\n%s", diff)
	}
}

// algorithm.md §2.4: w1 {} and w2 {label1}; r1 wants provisionable {label1},
// r2 {label2}; the account has balance {2}. One pass: r1→w2 then r2→w1, both
// at P0; a second pass assigns nothing.
func TestRunOnceProvisionMatchFirst(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	must(t, s.AddAccount("a1", acctCfg(10, 1), []float32{2}))
	must(t, s.MarkIdle("w1", nil, at(0), false))
	must(t, s.MarkIdle("w2", []string{"label1"}, at(0), false))
	must(t, s.AddRequest(Task{ID: "r1", Account: "a1", EnqueueTime: at(0), ProvisionableLabels: []string{"label1"}}, at(0), false))
	must(t, s.AddRequest(Task{ID: "r2", Account: "a1", EnqueueTime: at(0), ProvisionableLabels: []string{"label2"}}, at(0), false))
	checkPass(t, s, []assignment{{Worker: "w2", Request: "r1", Priority: 0}, {Worker: "w1", Request: "r2", Priority: 0}})
	if got := s.runOnce(); len(got) != 0 {
		t.Errorf("second pass assigned %v, want nothing", got)
	}
}

// algorithm.md §2.4: 500 requests want provisionable {a}, one wants {b}; the
// only worker has {b, c}: the {b} request is assigned.
func TestRunOnceProvisionMatchAmongMany(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	must(t, s.AddAccount("a1", acctCfg(10, 1), []float32{2}))
	for i := range 500 {
		must(t, s.AddRequest(Task{ID: RequestID("a" + strconv.Itoa(1000+i)), Account: "a1", EnqueueTime: at(0), ProvisionableLabels: []string{"a"}}, at(0), false))
	}
	must(t, s.AddRequest(Task{ID: "b", Account: "a1", EnqueueTime: at(1), ProvisionableLabels: []string{"b"}}, at(1), false))
	must(t, s.MarkIdle("w", []string{"b", "c"}, at(1), false))
	checkPass(t, s, []assignment{{Worker: "w", Request: "b", Priority: 0}})
}

// algorithm.md §2.4: 10 workers {Common} + 1 worker {Common, Rare}; 10
// requests {Common} + 1 request {Common, Rare} → 11 assignments, the rare
// request on the rare worker, whatever the worker ids' order.
func TestRunOnceRareLabel(t *testing.T) {
	for _, rareID := range []WorkerID{"a-rare", "z-rare"} {
		t.Run(string(rareID), func(t *testing.T) {
			s, err := New(nil)
			must(t, err)
			must(t, s.AddAccount("a1", acctCfg(10, 1), []float32{2}))
			for i := range 10 {
				must(t, s.MarkIdle(WorkerID("m-common"+strconv.Itoa(i)), []string{"Common"}, at(0), false))
				must(t, s.AddRequest(Task{ID: RequestID("common" + strconv.Itoa(i)), Account: "a1", EnqueueTime: at(0), BaseLabels: []string{"Common"}}, at(0), false))
			}
			must(t, s.MarkIdle(rareID, []string{"Common", "Rare"}, at(0), false))
			must(t, s.AddRequest(Task{ID: "rare", Account: "a1", EnqueueTime: at(1), BaseLabels: []string{"Common", "Rare"}}, at(1), false))
			got := s.runOnce()
			if len(got) != 11 {
				t.Fatalf("%d assignments, want 11: %v", len(got), got)
			}
			for _, a := range got {
				if a.Request == "rare" && a.Worker != rareID {
					t.Errorf("rare request ran on %s, want %s", a.Worker, rareID)
				}
			}
		})
	}
}

// algorithm.md §2.4: an accountless request and an idle worker → assigned at
// FreeBucket.
func TestRunOnceAccountlessAtFreeBucket(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	must(t, s.MarkIdle("w1", nil, at(0), false))
	must(t, s.AddRequest(Task{ID: "r1", EnqueueTime: at(0)}, at(0), false))
	checkPass(t, s, []assignment{{Worker: "w1", Request: "r1", Priority: FreeBucket}})
}

// algorithm.md §2.4: a request whose base label no worker has → nothing.
func TestRunOnceUnservableRequest(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	must(t, s.MarkIdle("w1", []string{"a"}, at(0), false))
	must(t, s.AddRequest(Task{ID: "r1", EnqueueTime: at(0), BaseLabels: []string{"b"}}, at(0), false))
	if got := s.runOnce(); len(got) != 0 {
		t.Errorf("assigned %v, want nothing", got)
	}
}

// reprioExample builds algorithm.md §2.5's example: rates {1.1, 0.9}, balance
// {−1200, +1200, +1200}, two tasks at level with costs 0 and {1,0,0}.
func reprioExample(t *testing.T, level int32) *Scheduler {
	return load(t, &statev1.PoolState{
		Config:              &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{"a1": acctCfg(10000, 1.1, 0.9)}},
		LastUpdateUnixNanos: proto.Int64(ns(0)),
		Balances:            []*statev1.AccountBalance{{AccountId: "a1", Value: vec64(-1200, 1200, 1200)}},
		Workers: []*statev1.Worker{
			{Id: "w1", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("cheap", "a1", level, vec64(), ns(0))},
			{Id: "w2", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("dear", "a1", level, vec64(1), ns(0))},
		},
	})
}

func levels(s *Scheduler) map[RequestID]Priority {
	out := map[RequestID]Priority{}
	for _, w := range s.workers {
		if w.req != nil {
			out[w.req.id] = w.level
		}
	}
	return out
}

// algorithm.md §2.5: both at P0 → the cheaper moves to P1, the other stays.
func TestReprioritizeDemotesCheapest(t *testing.T) {
	s := reprioExample(t, 0)
	s.runOnce()
	want := map[RequestID]Priority{"cheap": 1, "dear": 0}
	if diff := cmp.Diff(want, levels(s)); diff != "" {
		t.Errorf("levels (-want +got):\n%s", diff)
	}
}

// algorithm.md §2.5: both at P2 → the more expensive moves up to P1, the
// other stays.
func TestReprioritizePromotesMostExpensive(t *testing.T) {
	s := reprioExample(t, 2)
	s.runOnce()
	want := map[RequestID]Priority{"cheap": 2, "dear": 1}
	if diff := cmp.Diff(want, levels(s)); diff != "" {
		t.Errorf("levels (-want +got):\n%s", diff)
	}
	var got []Event
	for _, e := range s.TakeEvents() {
		if e.Type == EventReprioritized {
			got = append(got, Event{Type: e.Type, Task: e.Task, Level: e.Level, OldLevel: e.OldLevel})
		}
	}
	// [ours] the event carries the correct new level.
	wantEv := []Event{{Type: EventReprioritized, Task: "dear", Level: 1, OldLevel: 2}}
	if diff := cmp.Diff(wantEv, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// preemptReference builds algorithm.md §2.6's reference test: a1 rates
// {1,1,1}, balance {300, 1}, r1 on w1 (cost {0,1,0}) and r2 on w2 (cost 0)
// both at P1; r3 waits for account r3Acct; a2 has balance a2Balance. The
// clock is then advanced to t=1.
func preemptReference(t *testing.T, r3Acct string, a2Balance []float64) *Scheduler {
	s := load(t, &statev1.PoolState{
		Config: &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{
			"a1": acctCfg(1000, 1, 1, 1),
			"a2": acctCfg(1000),
		}},
		LastUpdateUnixNanos: proto.Int64(ns(0)),
		Balances: []*statev1.AccountBalance{
			{AccountId: "a1", Value: vec64(300, 1)},
			{AccountId: "a2", Value: vec64(a2Balance...)},
		},
		Workers: []*statev1.Worker{
			{Id: "w1", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("r1", "a1", 1, vec64(0, 1, 0), ns(0))},
			{Id: "w2", ConfirmedTimeUnixNanos: ns(0), Running: runningTask("r2", "a1", 1, vec64(), ns(0))},
		},
		Waiting: []*statev1.Request{{Id: "r3", AccountId: r3Acct, EnqueueTimeUnixNanos: ns(0), ConfirmedTimeUnixNanos: ns(0)}},
	})
	must(t, s.UpdateTime(at(1)))
	return s
}

// algorithm.md §2.6 reference test: exactly one PREEMPT at P0: w2, r3,
// aborting r2 (the cheaper victim).
func TestPreemptionReference(t *testing.T) {
	s := preemptReference(t, "a2", []float64{1})
	checkPass(t, s, []assignment{{Worker: "w2", Request: "r3", Priority: 0, Preempted: "r2"}})
	// r2's cost {0,1,0} was refunded to a1 and charged to a2.
	if got, want := balanceOf(t, s, "a2"), vec(1, -1); got != want {
		t.Errorf("a2 balance = %v, want %v", got, want)
	}
	if got, want := balanceOf(t, s, "a1"), vec(301, 1, 1); got != want {
		t.Errorf("a1 balance = %v, want %v", got, want)
	}
}

// algorithm.md §2.6: if a2 has zero balance → nothing.
func TestPreemptionNeedsBalance(t *testing.T) {
	s := preemptReference(t, "a2", nil)
	if got := s.runOnce(); len(got) != 0 {
		t.Errorf("pass = %v, want nothing", got)
	}
}

// algorithm.md §2.6: if r3 belongs to a1 (banned: it runs tasks at P1) →
// nothing.
func TestPreemptionBannedAccount(t *testing.T) {
	s := preemptReference(t, "a1", []float64{1})
	if got := s.runOnce(); len(got) != 0 {
		t.Errorf("pass = %v, want nothing", got)
	}
}

// preemptPool is the pool of the algorithm.md §2.6 loop tests: accounts a, b
// and c, the balances of a and b given, the workers busy and the requests
// waiting.
func preemptPool(t *testing.T, balA, balB float64, busy []*statev1.Worker, waiting ...*statev1.Request) *Scheduler {
	t.Helper()
	return load(t, &statev1.PoolState{
		Config: &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{
			"a": acctCfg(1000), "b": acctCfg(1000), "c": acctCfg(1000),
		}},
		LastUpdateUnixNanos: proto.Int64(ns(0)),
		Balances: []*statev1.AccountBalance{
			{AccountId: "a", Value: vec64(balA)},
			{AccountId: "b", Value: vec64(balB)},
		},
		Workers: busy,
		Waiting: waiting,
	})
}

// busyWorker is worker id running task of acct at level with a P0 cost.
func busyWorker(id, task, acct string, level Priority, cost float64, labels ...string) *statev1.Worker {
	return &statev1.Worker{Id: id, Labels: labels, ConfirmedTimeUnixNanos: ns(0), Running: runningTask(task, acct, int32(level), vec64(cost), ns(0))}
}

// waitingReq is request id of acct enqueued enq ns after t0.
func waitingReq(id, acct string, enq int64, prov ...string) *statev1.Request {
	return &statev1.Request{Id: id, AccountId: acct, EnqueueTimeUnixNanos: ns(0) + enq, ConfirmedTimeUnixNanos: ns(0), ProvisionableLabels: prov}
}

// algorithm.md §2.6, bullets "Bans" and "Effect": every preemption refunds
// the victim's account and bans are re-evaluated after it, so a refund can
// lift a ban and make a victim affordable that no account could afford when
// the step began. a (balance {1}) preempts b's task vb (cost {0.2}); b, no
// longer banned and refunded to {1.1}, preempts vc (cost {1.05}), more than
// any balance at the start of the step.
func TestPreemptionAfterRefundLiftsBan(t *testing.T) {
	s := preemptPool(t, 1, 0.9, []*statev1.Worker{
		busyWorker("wb", "vb", "b", 1, 0.2),
		busyWorker("wc", "vc", "c", FreeBucket, 1.05),
	}, waitingReq("ra", "a", 0), waitingReq("rb", "b", 1))
	checkPass(t, s, []assignment{
		{Worker: "wb", Request: "ra", Priority: 0, Preempted: "vb"},
		{Worker: "wc", Request: "rb", Priority: 0, Preempted: "vc"},
	})
}

// algorithm.md §2.6, bullet "Loop": the waiting requests of L[p] are visited
// once, in list order. When a preemption lifts b's ban, b's requests after
// the preemptor take part in FIFO order across b's classes, and the one
// before it (passed over while b was banned) does not. b's classes: image:x
// {rb0 at t0, rb2 at t2} and image:y {rb1 at t3}; a's ra (t1) preempts b's
// vb, the cheapest victim.
func TestPreemptionWokenAccountKeepsListOrder(t *testing.T) {
	s := preemptPool(t, 10, 10, []*statev1.Worker{
		busyWorker("wb", "vb", "b", 1, 0.1),
		busyWorker("w1", "v1", "c", FreeBucket, 0.2),
		busyWorker("w2", "v2", "c", FreeBucket, 0.3),
	},
		waitingReq("rb0", "b", 0, "image:x"),
		waitingReq("ra", "a", 1),
		waitingReq("rb2", "b", 2, "image:x"),
		waitingReq("rb1", "b", 3, "image:y"),
	)
	checkPass(t, s, []assignment{
		{Worker: "wb", Request: "ra", Priority: 0, Preempted: "vb"},
		{Worker: "w1", Request: "rb2", Priority: 0, Preempted: "v1"},
		{Worker: "w2", Request: "rb1", Priority: 0, Preempted: "v2"},
	})
}

// algorithm.md §2.6, bullet "Loop": a request takes the first provision match
// in victim order, else the first candidate. A provision match one account
// cannot afford is still the match for the next, richer account with the same
// labels. a (balance {0.3}) cannot afford w2 (image:x, cost {0.5}) and takes
// the cheapest, w1; b then takes w2, not the cheaper w3.
func TestPreemptionProvisionMatchForRicherAccount(t *testing.T) {
	s := preemptPool(t, 0.3, 10, []*statev1.Worker{
		busyWorker("w1", "v1", "c", FreeBucket, 0.1),
		busyWorker("w2", "v2", "c", FreeBucket, 0.5, "image:x"),
		busyWorker("w3", "v3", "c", FreeBucket, 0.2),
	}, waitingReq("ra", "a", 0, "image:x"), waitingReq("rb", "b", 1, "image:x"))
	checkPass(t, s, []assignment{
		{Worker: "w1", Request: "ra", Priority: 0, Preempted: "v1"},
		{Worker: "w2", Request: "rb", Priority: 0, Preempted: "v2"},
	})
}
