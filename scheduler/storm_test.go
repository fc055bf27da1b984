package scheduler

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

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

// stormResult is what one AssignTasks of a storm gives.
type stormResult struct {
	out    []TaskAssignment
	events []Event
	state  *statev1.PoolState
	delta  *statev1.PoolDelta
}

// runStorm is one AssignTasks at t=1 on a copy of st with change tracking
// on (as the service runs it), polled by idle.
func runStorm(t *testing.T, st *statev1.PoolState, idle []IdleWorker) stormResult {
	t.Helper()
	s, err := FromProto(st)
	must(t, err)
	s.TrackChanges()
	out, err := s.AssignTasks(at(1), idle)
	must(t, err)
	if err := s.checkIndexes(); err != nil {
		t.Fatal(err)
	}
	return stormResult{out, s.TakeEvents(), s.ToProto(), s.TakeDelta()}
}

// A preemption storm (700 preemptions and 60 idle workers in one pass)
// records one pending entry per assignment, at the pass's time, replacing
// the older entries of the same workers; every entry is in the change
// delta; and a second run on another copy of the state gives the same
// answer, events, state and delta.
func TestStormRecordsEveryEntry(t *testing.T) {
	const n, m = 700, 60
	st := stormState(n, m)
	// Only the idle workers poll (a busy worker that polls has finished).
	var idle []IdleWorker
	for i := range m {
		idle = append(idle, IdleWorker{ID: WorkerID(fmt.Sprintf("x%04d", i))})
	}
	got := runStorm(t, st, idle)
	if len(got.out) != m {
		t.Fatalf("%d polling workers answered, want %d", len(got.out), m)
	}
	want := map[string]*statev1.PendingAssignment{}
	preempted := 0
	for _, e := range got.events {
		if e.Type != EventAssigned {
			continue
		}
		if e.Preempting {
			preempted++
		}
		want[string(e.Worker)] = &statev1.PendingAssignment{
			WorkerId: string(e.Worker), TimeUnixNanos: ns(1), TaskToAssign: string(e.Task), TaskToAbort: string(e.PreemptedTask),
		}
	}
	if preempted != n || len(got.state.Pending) != n+m {
		t.Fatalf("%d preemptions and %d pending entries, want %d and %d", preempted, len(got.state.Pending), n, n+m)
	}
	for _, e := range got.state.Pending {
		if !proto.Equal(e, want[e.WorkerId]) {
			t.Fatalf("entry %v, want %v (from the ASSIGNED event)", e, want[e.WorkerId])
		}
	}
	if !cmp.Equal(got.delta.Pending, got.state.Pending, protocmp.Transform()) || len(got.delta.DeletedPending) != 0 {
		t.Fatalf("delta's entries differ from the state's:\n%s", cmp.Diff(got.state.Pending, got.delta.Pending, protocmp.Transform()))
	}
	again := runStorm(t, st, idle)
	switch {
	case !reflect.DeepEqual(got.out, again.out):
		t.Fatalf("answer differs between two runs (-first +second):\n%s", cmp.Diff(got.out, again.out))
	case !reflect.DeepEqual(got.events, again.events):
		t.Fatalf("events differ between two runs (-first +second):\n%s", cmp.Diff(got.events, again.events))
	case !proto.Equal(got.state, again.state):
		t.Fatalf("state differs between two runs (-first +second):\n%s", cmp.Diff(got.state, again.state, protocmp.Transform()))
	case !proto.Equal(got.delta, again.delta):
		t.Fatalf("delta differs between two runs (-first +second):\n%s", cmp.Diff(got.delta, again.delta, protocmp.Transform()))
	}
}
