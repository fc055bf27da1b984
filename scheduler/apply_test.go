package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"
)

// drawBatch draws the operations of one batch (drawOp) and reports
// whether one of them wipes the pool.
func drawBatch(t *rapid.T, clock *float64, name string) (ops []invOp, wipes bool) {
	for range rapid.IntRange(1, 5).Draw(t, name) {
		op := drawOp(t, clock)
		ops = append(ops, op)
		wipes = wipes || op.name == "wipe"
	}
	return ops, wipes
}

// newTracked returns an empty pool that tracks its changes, with a random
// layout of eligibility rows (drawRowMode).
func newTracked(t *rapid.T) *Scheduler {
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s.TrackChanges()
	s.elig.mode = drawRowMode(t, "rows")
	return s
}

// runBatch runs ops on s and on a copy rebuilt from the state s would
// have after base (FromProto of base; s's own state when base is nil), and
// fails unless both give the same results, errors, events and state: s
// behaves as the state it holds. It returns s's delta.
func runBatch(t *rapid.T, what string, s *Scheduler, base *statev1.PoolState, ops []invOp) *statev1.PoolDelta {
	if base == nil {
		base = s.ToProto()
	}
	twin, err := FromProto(base)
	if err != nil {
		t.Fatalf("%s: FromProto: %v", what, err)
	}
	twin.elig.mode = drawRowMode(t, "twinRows")
	s.DiscardEvents()
	for i, op := range ops {
		res, err := op.do(s)
		twinRes, twinErr := op.do(twin)
		if (err == nil) != (twinErr == nil) {
			t.Fatalf("%s, op %d %s: error %v, on a rebuilt copy %v", what, i, op.name, err, twinErr)
		}
		if diff := cmp.Diff(twinRes, res); diff != "" {
			t.Fatalf("%s, op %d %s: results differ from a rebuilt copy's (-copy +live):\n%s", what, i, op.name, diff)
		}
	}
	if diff := cmp.Diff(twin.TakeEvents(), s.TakeEvents()); diff != "" {
		t.Fatalf("%s: events differ from a rebuilt copy's (-copy +live):\n%s", what, diff)
	}
	if diff := cmp.Diff(twin.ToProto(), s.ToProto(), protocmp.Transform()); diff != "" {
		t.Fatalf("%s: state differs from a rebuilt copy's (-copy +live):\n%s", what, diff)
	}
	return s.TakeDelta()
}

// TestApplyDeltaFollowsAnotherWriter: two schedulers share one pool, as two
// replicas do; random batches (drawOp) run on either, and the other
// catches up, sometimes several deltas at once, with ApplyDelta on its live
// state (each delta a copy, as a store decodes it). After each delta the
// live state equals the delta applied to the state before it
// (nodestore.ApplyDelta) and its indexes are exact; the batches each one
// runs behave as on a copy rebuilt from its state.
func TestApplyDeltaFollowsAnotherWriter(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var reps [2]*Scheduler
		var behind [2][]*statev1.PoolDelta // deltas each has yet to apply
		for i := range reps {
			reps[i] = newTracked(t)
		}
		clock := 0.0
		for batch := range rapid.IntRange(1, 12).Draw(t, "batches") {
			w := rapid.IntRange(0, 1).Draw(t, "writer")
			for _, s := range []int{w, 1 - w} {
				if s == w || rapid.Bool().Draw(t, "catchUp") {
					for i, d := range behind[s] {
						before := reps[s].ToProto()
						if err := reps[s].ApplyDelta(proto.CloneOf(d)); err != nil {
							t.Fatalf("batch %d: replica %d, delta %d of %d: %v", batch, s, i+1, len(behind[s]), err)
						}
						want := nodestore.ApplyDelta(before, d)
						if diff := cmp.Diff(want, reps[s].ToProto(), protocmp.Transform()); diff != "" {
							t.Fatalf("batch %d: replica %d after delta %d: (-rebuilt +live)\n%s", batch, s, i+1, diff)
						}
						if err := reps[s].checkIndexesSettling(rapid.IntRange(0, 3).Draw(t, "settle") == 0); err != nil {
							t.Fatalf("batch %d: replica %d after delta %d: %v", batch, s, i+1, err)
						}
					}
					behind[s] = nil
				}
			}
			ops, _ := drawBatch(t, &clock, "ops")
			d := runBatch(t, fmt.Sprintf("batch %d on replica %d", batch, w), reps[w], nil, ops)
			behind[1-w] = append(behind[1-w], d)
		}
		for i, s := range reps {
			if err := s.checkIndexes(); err != nil {
				t.Fatalf("replica %d at the end: %v", i, err)
			}
		}
	})
}

// TestUndoDeltaRestoresTheStateBefore: after a random batch (drawOp) and
// its TakeDelta, UndoDelta gives back the state before the batch with
// exact indexes, unless the batch wiped the pool (then it refuses and
// changes nothing). What the pipeline does on a conflict follows: another
// writer's delta is applied, sometimes none, and the batch replayed
// behaves as on a copy rebuilt from the stored state.
func TestUndoDeltaRestoresTheStateBefore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := newTracked(t)
		clock := 0.0
		for batch := range rapid.IntRange(1, 10).Draw(t, "batches") {
			before := s.ToProto()
			var other *statev1.PoolDelta
			if rapid.IntRange(0, 2).Draw(t, "other") == 0 {
				o, err := FromProto(before)
				if err != nil {
					t.Fatal(err)
				}
				o.TrackChanges()
				otherOps, _ := drawBatch(t, &clock, "otherOps")
				other = runBatch(t, fmt.Sprintf("batch %d, the other writer", batch), o, nil, otherOps)
			}
			ops, wipes := drawBatch(t, &clock, "ops")
			what := fmt.Sprintf("batch %d", batch)
			d := runBatch(t, what, s, nil, ops)
			if !rapid.Bool().Draw(t, "undo") && other == nil {
				continue
			}
			after := s.ToProto()
			err := s.UndoDelta()
			if wipes {
				if !errors.Is(err, ErrCannotUndo) {
					t.Fatalf("%s wipes: UndoDelta = %v, want ErrCannotUndo", what, err)
				}
				if !proto.Equal(after, s.ToProto()) {
					t.Fatalf("%s: a refused UndoDelta changed the state", what)
				}
				if other != nil { // as the pipeline does: reload what is stored
					if s, err = FromProto(nodestore.ApplyDelta(before, other)); err != nil {
						t.Fatal(err)
					}
					s.TrackChanges()
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: UndoDelta: %v", what, err)
			}
			if diff := cmp.Diff(before, s.ToProto(), protocmp.Transform()); diff != "" {
				t.Fatalf("%s undone: (-before +undone)\n%s", what, diff)
			}
			if err := s.checkIndexesSettling(rapid.IntRange(0, 3).Draw(t, "settle") == 0); err != nil {
				t.Fatalf("%s undone: %v", what, err)
			}
			if err := s.UndoDelta(); !errors.Is(err, ErrCannotUndo) {
				t.Fatalf("%s: a second UndoDelta = %v, want ErrCannotUndo", what, err)
			}
			stored := before
			if other != nil {
				if err := s.ApplyDelta(other); err != nil {
					t.Fatalf("%s: the other writer's delta: %v", what, err)
				}
				stored = nodestore.ApplyDelta(before, other)
			}
			replayed := runBatch(t, what+" replayed", s, stored, ops)
			if other == nil && !proto.Equal(d, replayed) {
				t.Fatalf("%s: the replay's delta differs from the first:\n%v\n%v", what, d, replayed)
			}
			if err := s.checkIndexes(); err != nil {
				t.Fatalf("%s replayed: %v", what, err)
			}
		}
	})
}

// UndoDelta refuses, changing nothing, when it has nothing to take back.
func TestUndoDeltaRefuses(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	s.TrackChanges()
	refused := func(when string) {
		t.Helper()
		before := s.ToProto()
		if err := s.UndoDelta(); !errors.Is(err, ErrCannotUndo) {
			t.Errorf("%s: UndoDelta = %v, want ErrCannotUndo", when, err)
		}
		if !proto.Equal(before, s.ToProto()) {
			t.Errorf("%s: a refused UndoDelta changed the state", when)
		}
	}
	refused("before any delta")
	must(t, s.AddRequest(Task{ID: "r1", EnqueueTime: at(1)}, at(1), false))
	refused("with changes not taken")
	s.TakeDelta()
	must(t, s.AddRequest(Task{ID: "r2", EnqueueTime: at(1)}, at(2), false))
	refused("with changes since the delta")
	s.TakeDelta()
	must(t, s.UndoDelta())
	if got := s.View(10).NumWaiting; got != 1 {
		t.Fatalf("after undoing r2: %d waiting, want 1", got)
	}
	refused("after an undo")
	s.Wipe()
	s.TakeDelta()
	refused("after a wipe")
	s.TakeDelta()
	must(t, s.ApplyDelta(&statev1.PoolDelta{LastUpdateUnixNanos: proto.Int64(at(5).UnixNano())}))
	refused("after ApplyDelta")
}

// TestApplyDeltaChecksFirst: random deltas of small records, valid or
// not, on a state after random operations (drawOp). ApplyDelta either
// refuses and changes nothing, or gives the state FromProto rebuilds from
// the delta applied to the state before it, with exact indexes; it never
// accepts a delta whose result FromProto rejects.
func TestApplyDeltaChecksFirst(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, err := New(nil)
		if err != nil {
			t.Fatal(err)
		}
		clock := 0.0
		for range rapid.IntRange(0, 15).Draw(t, "steps") {
			_, _ = drawOp(t, &clock).do(s)
		}
		s.TrackChanges()
		before := s.ToProto()
		d := drawDelta(t, clock)
		err = s.ApplyDelta(proto.CloneOf(d))
		want, wantErr := FromProto(nodestore.ApplyDelta(before, d))
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ApplyDelta: %v, not an ErrInvalidArgument", err)
			}
			if diff := cmp.Diff(before, s.ToProto(), protocmp.Transform()); diff != "" {
				t.Fatalf("a refused delta (%v) changed the state:\n%s", err, diff)
			}
		} else {
			if wantErr != nil {
				t.Fatalf("ApplyDelta accepted a delta whose result FromProto rejects: %v", wantErr)
			}
			if diff := cmp.Diff(want.ToProto(), s.ToProto(), protocmp.Transform()); diff != "" {
				t.Fatalf("applied: (-rebuilt +live)\n%s", diff)
			}
		}
		if err := s.checkIndexes(); err != nil {
			t.Fatal(err)
		}
	})
}

// drawDelta draws a delta of records with ids among few, mostly valid,
// that may contradict the state or each other.
func drawDelta(t *rapid.T, clock float64) *statev1.PoolDelta {
	d := &statev1.PoolDelta{}
	bad := func(name string) bool { return rapid.IntRange(0, 15).Draw(t, name) == 0 }
	rid := func() string { return fmt.Sprintf("r%d", rapid.IntRange(0, 9).Draw(t, "rid")) }
	wid := func() string { return fmt.Sprintf("w%d", rapid.IntRange(0, 4).Draw(t, "wid")) }
	ns := func(name string) int64 {
		if bad(name + "Range") {
			return -1 << 62
		}
		return at(clock - float64(rapid.IntRange(-2, 8).Draw(t, name))).UnixNano()
	}
	labels := func(name string) []string {
		return rapid.SliceOfN(rapid.SampledFrom(invLabels), 0, 2).Draw(t, name)
	}
	request := func() *statev1.Request {
		r := &statev1.Request{Id: rid(), AccountId: rapid.SampledFrom([]string{"", "a0", "a1"}).Draw(t, "acct"),
			EnqueueTimeUnixNanos: ns("enq"), ConfirmedTimeUnixNanos: ns("conf"), BaseLabels: labels("base"), ProvisionableLabels: labels("prov")}
		if bad("emptyID") {
			r.Id = ""
		}
		return r
	}
	if rapid.IntRange(0, 3).Draw(t, "clock") == 0 {
		d.LastUpdateUnixNanos = proto.Int64(ns("clockAt"))
	}
	if rapid.IntRange(0, 5).Draw(t, "config") == 0 {
		d.Config = &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{
			"a1": {ChargeRate: []float32{1}, MaxChargeSeconds: 10, MaxFanout: int32(rapid.IntRange(0, 1).Draw(t, "fanout")),
				PerLabelTaskLimits: map[string]int32{"a": 1}},
		}, MaxTombstones: proto.Int32(int32(rapid.IntRange(1, 5).Draw(t, "maxTombs")))}
	}
	for range rapid.IntRange(0, 2).Draw(t, "balances") {
		v := []float64{float64(rapid.IntRange(-3, 3).Draw(t, "bal"))}
		if bad("badBalance") {
			v = append(v, 1, 2, 3, 4, 5)
		}
		d.Balances = append(d.Balances, &statev1.AccountBalance{AccountId: rapid.SampledFrom([]string{"a0", "a1", "a2"}).Draw(t, "balAcct"), Value: v})
	}
	d.DeletedBalances = rapid.SliceOfN(rapid.SampledFrom([]string{"a0", "a1", "a2"}), 0, 1).Draw(t, "delBalances")
	for range rapid.IntRange(0, 3).Draw(t, "waiting") {
		d.Waiting = append(d.Waiting, request())
	}
	for range rapid.IntRange(0, 3).Draw(t, "delWaiting") {
		d.DeletedWaiting = append(d.DeletedWaiting, rid())
	}
	for range rapid.IntRange(0, 3).Draw(t, "workers") {
		w := &statev1.Worker{Id: wid(), Labels: labels("wl"), ConfirmedTimeUnixNanos: ns("wconf")}
		if rapid.Bool().Draw(t, "running") {
			w.Running = &statev1.RunningTask{Request: request(), Priority: int32(rapid.IntRange(0, 5).Draw(t, "prio")),
				Cost: []float64{float64(rapid.IntRange(0, 3).Draw(t, "cost"))}, LevelSinceUnixNanos: ns("since")}
			if bad("badPrio") {
				w.Running.Priority = 6
			}
		}
		d.Workers = append(d.Workers, w)
	}
	for range rapid.IntRange(0, 2).Draw(t, "delWorkers") {
		d.DeletedWorkers = append(d.DeletedWorkers, wid())
	}
	for range rapid.IntRange(0, 2).Draw(t, "tombs") {
		d.Tombstones = append(d.Tombstones, &statev1.Tombstone{RequestId: rid(), FinishTimeUnixNanos: ns("finish")})
	}
	for range rapid.IntRange(0, 2).Draw(t, "delTombs") {
		d.DeletedTombstones = append(d.DeletedTombstones, rid())
	}
	for range rapid.IntRange(0, 2).Draw(t, "pending") {
		e := &statev1.PendingAssignment{WorkerId: wid(), TimeUnixNanos: ns("ptime"), TaskToAssign: rid()}
		if rapid.Bool().Draw(t, "abort") {
			e.TaskToAbort = rid()
		}
		d.Pending = append(d.Pending, e)
	}
	d.DeletedPending = rapid.SliceOfN(rapid.Just("w1"), 0, 1).Draw(t, "delPending")
	for range rapid.IntRange(0, 2).Draw(t, "errors") {
		d.TaskErrors = append(d.TaskErrors, &statev1.TaskError{TaskId: rid(), Error: "e"})
	}
	d.DeletedTaskErrors = rapid.SliceOfN(rapid.Just("r1"), 0, 1).Draw(t, "delErrors")
	return d
}

// ApplyDelta refuses, changing nothing, a state with changes not taken
// and the deltas whose result no state can be; each error names the
// record.
func TestApplyDeltaRefuses(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	s.TrackChanges()
	must(t, s.AddRequest(Task{ID: "waits", EnqueueTime: at(1)}, at(1), false))
	must(t, s.Notify(Notification{Kind: NotifyRunning, Time: at(2), Task: Task{ID: "runs"}, Worker: "w"}, false))
	must(t, s.AddRequest(Task{ID: "runs", EnqueueTime: at(1)}, at(1), false))
	must(t, s.Notify(Notification{Kind: NotifyRunning, Time: at(3), Task: Task{ID: "runs"}, Worker: "w"}, false))
	must(t, s.Notify(Notification{Kind: NotifyAbsent, Time: at(3), Task: Task{ID: "gone"}}, false))
	if err := s.ApplyDelta(&statev1.PoolDelta{}); err == nil || !strings.Contains(err.Error(), "not yet taken") {
		t.Errorf("with changes not taken: ApplyDelta = %v", err)
	}
	s.TakeDelta()
	req := func(id string) *statev1.Request {
		return &statev1.Request{Id: id, EnqueueTimeUnixNanos: 1, ConfirmedTimeUnixNanos: 1}
	}
	running := func(wid, rid string) *statev1.Worker {
		return &statev1.Worker{Id: wid, Running: &statev1.RunningTask{Request: req(rid), LevelSinceUnixNanos: 1}}
	}
	for _, c := range []struct {
		name, want string
		d          *statev1.PoolDelta
	}{
		{"nil", "missing", nil},
		{"clock back", "before the clock", &statev1.PoolDelta{LastUpdateUnixNanos: proto.Int64(1)}},
		{"waiting twice", "appears twice", &statev1.PoolDelta{Waiting: []*statev1.Request{req("new"), req("new")}}},
		{"waiting and running", "already in the state", &statev1.PoolDelta{Workers: []*statev1.Worker{running("w2", "waits")}}},
		{"running twice", "already in the state", &statev1.PoolDelta{Waiting: []*statev1.Request{req("runs")}}},
		{"tombstoned", "has a tombstone", &statev1.PoolDelta{Waiting: []*statev1.Request{req("gone")}}},
		{"tombstone of a request", "still known", &statev1.PoolDelta{Tombstones: []*statev1.Tombstone{{RequestId: "waits", FinishTimeUnixNanos: 1}}}},
		{"worker twice", "appears twice", &statev1.PoolDelta{Workers: []*statev1.Worker{{Id: "x"}, {Id: "x"}}}},
		{"bad id", "workers[0].id", &statev1.PoolDelta{Workers: []*statev1.Worker{{Id: ""}}}},
		{"bad config", "max_fanout", &statev1.PoolDelta{Config: &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{"a": {MaxFanout: -1}}}}},
		{"pending twice", "appears twice", &statev1.PoolDelta{Pending: []*statev1.PendingAssignment{{WorkerId: "w", TaskToAssign: "t"}, {WorkerId: "w", TaskToAssign: "t"}}}},
	} {
		before := s.ToProto()
		err := s.ApplyDelta(c.d)
		if err == nil || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: ApplyDelta = %v, want an invalid argument naming %q", c.name, err, c.want)
		}
		if !proto.Equal(before, s.ToProto()) {
			t.Errorf("%s: a refused delta changed the state", c.name)
		}
	}
	// Moving a request from waiting to running in one delta is a change,
	// not a contradiction.
	must(t, s.ApplyDelta(&statev1.PoolDelta{DeletedWaiting: []string{"waits"}, Workers: []*statev1.Worker{running("w2", "waits")}}))
	if err := s.checkIndexes(); err != nil {
		t.Fatal(err)
	}
}
