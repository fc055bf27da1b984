package scheduler

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
)

// stormState is a pool whose next pass preempts n tasks and assigns m idle
// workers: a holds n tasks at P1, half of them still pending (so that the
// storm replaces their entries), and b, rich at P0, waits with n+m
// requests.
func stormState(n, m int) *statev1.PoolState {
	st := &statev1.PoolState{
		Config: &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{
			"a": acctCfg(1000), "b": acctCfg(1000),
		}},
		LastUpdateUnixNanos: proto.Int64(ns(0)),
		Balances: []*statev1.AccountBalance{
			{AccountId: "a", Value: vec64(-1)},
			{AccountId: "b", Value: vec64(float64(n + m))},
		},
	}
	for i := range n {
		w, task := fmt.Sprintf("w%04d", i), fmt.Sprintf("va%04d", i)
		st.Workers = append(st.Workers, busyWorker(w, task, "a", 1, 0.5))
		if i%2 == 0 {
			st.Pending = append(st.Pending, &statev1.PendingAssignment{WorkerId: w, TimeUnixNanos: ns(0), TaskToAssign: task})
		}
	}
	for i := range m {
		st.Workers = append(st.Workers, &statev1.Worker{Id: fmt.Sprintf("x%04d", i), ConfirmedTimeUnixNanos: ns(0)})
	}
	for i := range n + m {
		st.Waiting = append(st.Waiting, waitingReq(fmt.Sprintf("rb%04d", i), "b", int64(i)))
	}
	return st
}

// handOverRun is one AssignTasks at when, polled by idle, on a copy of st
// with change tracking on (as the service runs it) and the given hand-over
// knobs (see tuned).
func handOverRun(t fataler, st *statev1.PoolState, chunk, handAfter int, when time.Time, idle []IdleWorker) handOverResult {
	s, err := FromProto(st)
	if err != nil {
		t.Fatalf("FromProto: %v", err)
	}
	s.TrackChanges()
	s.feedChunk, s.preemptHandAfter = chunk, handAfter
	out, err := s.AssignTasks(when, idle)
	if err != nil {
		t.Fatalf("AssignTasks: %v", err)
	}
	if err := s.checkIndexes(); err != nil {
		t.Fatalf("%v", err)
	}
	return handOverResult{out, s.TakeEvents(), s.ToProto(), s.TakeDelta(), s.handOvers}
}

type fataler interface {
	Fatalf(format string, args ...any)
}

type handOverResult struct {
	out       []TaskAssignment
	events    []Event
	state     *statev1.PoolState
	delta     *statev1.PoolDelta
	handOvers int
}

// sameAsInline fails unless got's answer, events, state and change delta are
// want's, the run that did everything in order on one goroutine. (The
// diffs are computed only on a difference: a storm has thousands of events.)
func sameAsInline(t fataler, want, got handOverResult) {
	switch {
	case !reflect.DeepEqual(want.out, got.out):
		t.Fatalf("answer differs from inline (-inline +handed over):\n%s", cmp.Diff(want.out, got.out))
	case !reflect.DeepEqual(want.events, got.events):
		t.Fatalf("events differ from inline (-inline +handed over):\n%s", cmp.Diff(want.events, got.events))
	case !proto.Equal(want.state, got.state):
		t.Fatalf("state differs from inline (-inline +handed over):\n%s", cmp.Diff(want.state, got.state, protocmp.Transform()))
	case !proto.Equal(want.delta, got.delta):
		t.Fatalf("delta differs from inline (-inline +handed over):\n%s", cmp.Diff(want.delta, got.delta, protocmp.Transform()))
	}
}

// A storm's pending entries, and its preemptions' bookkeeping, are done on
// another goroutine while the pass goes on (entryFeed, step). Whatever the
// hand-over sizes, the answer, the events, the resulting state and the
// change delta must be those of doing everything in the pass's order on one
// goroutine, including entries that replace older ones for the same worker.
// (test.sh runs this under the race detector.)
func TestEntryFeedMatchesSequentialRecording(t *testing.T) {
	const n, m = 700, 60
	st := stormState(n, m)
	// Only the idle workers poll (a busy worker that polls has finished).
	var idle []IdleWorker
	for i := range m {
		idle = append(idle, IdleWorker{ID: WorkerID(fmt.Sprintf("x%04d", i))})
	}
	want := handOverRun(t, st, -1, -1, at(1), idle)
	preempted := 0
	for _, e := range want.events {
		if e.Type == EventPreempted {
			preempted++
		}
	}
	// The pass must be a storm: several hand-overs at the default size.
	if preempted != n || len(want.state.Pending) != n+m || want.handOvers != 0 {
		t.Fatalf("inline: %d preemptions, %d pending entries and %d hand-overs, want %d, %d and 0", preempted, len(want.state.Pending), want.handOvers, n, n+m)
	}
	for _, e := range want.state.Pending {
		if e.TimeUnixNanos != ns(1) {
			t.Fatalf("inline: entry of %s from %d, want the pass's time %d", e.WorkerId, e.TimeUnixNanos, ns(1))
		}
	}
	for _, c := range []struct{ chunk, handAfter, handOvers int }{
		{0, 0, 1}, {1, 0, 1}, {255, 0, 1}, {n + m - 1, 0, 1}, // preemptions handed over from the 64th
		{0, -1, 0}, {0, 1, 1}, {1, 1, 1}, {0, n, 1}, // never, from the first, only the last
	} {
		t.Run(fmt.Sprintf("chunk%d_after%d", c.chunk, c.handAfter), func(t *testing.T) {
			got := handOverRun(t, st, c.chunk, c.handAfter, at(1), idle)
			if got.handOvers != c.handOvers {
				t.Errorf("%d steps handed their bookkeeping over, want %d", got.handOvers, c.handOvers)
			}
			sameAsInline(t, want, got)
		})
	}
}

// The same on random small states (those of the reference tests, which
// preempt often): every preemption and every entry handed over, against
// none. Few random states preempt without limits (about 4 %); at least 2 %
// must hand a step over, or the test would compare the inline path with
// itself.
func TestHandOverMatchesInlineOnRandomStates(t *testing.T) {
	var states, handed int
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		// Limits keep a step's bookkeeping in the step: mostly none here.
		if rapid.IntRange(0, 3).Draw(t, "keepLimits") > 0 {
			for _, ac := range st.Config.AccountConfigs {
				ac.MaxFanout, ac.PerLabelTaskLimits = 0, nil
			}
		}
		var idle []IdleWorker
		for _, w := range st.Workers {
			if w.Running == nil && rapid.Bool().Draw(t, "polls") {
				idle = append(idle, IdleWorker{ID: WorkerID(w.Id), Labels: w.Labels})
			}
		}
		when := time.Unix(0, propT).Add(time.Duration(rapid.IntRange(0, 3).Draw(t, "after")) * time.Second)
		want := handOverRun(t, st, -1, -1, when, idle)
		got := handOverRun(t, st, 1, 1, when, idle)
		states++
		if got.handOvers > 0 {
			handed++
		}
		sameAsInline(t, want, got)
	})
	t.Logf("%d of %d states handed a step over", handed, states)
	if handed*50 < states {
		t.Errorf("only %d of %d states handed a step's bookkeeping over", handed, states)
	}
}

// A panic in the feed's goroutine (a bug, simulated here by corrupting a
// victim's place in its running list) reaches the caller of AssignTasks, as
// a panic in the pass itself would, instead of crashing the process; and
// AssignTasks does not hang.
func TestFeedPanicReachesCaller(t *testing.T) {
	s, err := FromProto(stormState(700, 60))
	must(t, err)
	w := s.workers["w0100"] // preempted after the step hands over (its 101st), before any swap moves it
	if w == nil || w.req == nil {
		t.Fatal("w0100 is not running in the storm state")
	}
	w.levelIdx = 1 << 30
	got := func() (p any) {
		defer func() { p = recover() }()
		_, _ = s.AssignTasks(at(1), nil)
		return nil
	}()
	if got == nil {
		t.Fatal("AssignTasks returned; want the goroutine's panic")
	}
	if msg := fmt.Sprint(got); !strings.Contains(msg, "entry feed's goroutine") || !strings.Contains(msg, "index out of range") {
		t.Errorf("panic %q, want the goroutine's index-out-of-range panic", msg)
	}
}
