package nodestore

import (
	"cmp"
	"slices"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// Shadow is a pool state held as maps by id, so that applying a delta costs
// in proportion to the delta. Stores use it to rebuild a state from a
// snapshot and log entries and to write new snapshots; applying needs no
// scheduler code, so replicas of different versions agree on the result.
type Shadow struct {
	config   *statev1.PoolConfig
	clock    *int64
	balances map[string]*statev1.AccountBalance
	waiting  map[string]*statev1.Request
	workers  map[string]*statev1.Worker
	tombs    map[string]*statev1.Tombstone
	pending  map[string]*statev1.PendingAssignment
	errs     map[string]*statev1.TaskError
}

// NewShadow returns a shadow of st (nil: an empty state). The shadow keeps
// the messages of st; st must not be modified afterwards.
func NewShadow(st *statev1.PoolState) *Shadow {
	sh := &Shadow{}
	sh.reset()
	if st == nil {
		return sh
	}
	sh.config = st.Config
	if st.LastUpdateUnixNanos != nil {
		sh.clock = proto.Int64(*st.LastUpdateUnixNanos)
	}
	for _, b := range st.Balances {
		sh.balances[b.AccountId] = b
	}
	for _, r := range st.Waiting {
		sh.waiting[r.Id] = r
	}
	for _, w := range st.Workers {
		sh.workers[w.Id] = w
	}
	for _, t := range st.Tombstones {
		sh.tombs[t.RequestId] = t
	}
	for _, e := range st.Pending {
		sh.pending[e.WorkerId] = e
	}
	for _, e := range st.TaskErrors {
		sh.errs[e.TaskId] = e
	}
	return sh
}

func (sh *Shadow) reset() {
	sh.clock = nil
	sh.balances = map[string]*statev1.AccountBalance{}
	sh.waiting = map[string]*statev1.Request{}
	sh.workers = map[string]*statev1.Worker{}
	sh.tombs = map[string]*statev1.Tombstone{}
	sh.pending = map[string]*statev1.PendingAssignment{}
	sh.errs = map[string]*statev1.TaskError{}
}

// Apply applies d. The shadow keeps d's messages; d must not be modified
// afterwards.
func (sh *Shadow) Apply(d *statev1.PoolDelta) {
	if d.Wipe {
		sh.reset()
	}
	if d.Config != nil {
		sh.config = d.Config
	}
	if d.LastUpdateUnixNanos != nil {
		sh.clock = proto.Int64(*d.LastUpdateUnixNanos)
	}
	merge(sh.balances, d.DeletedBalances, d.Balances, (*statev1.AccountBalance).GetAccountId)
	merge(sh.waiting, d.DeletedWaiting, d.Waiting, (*statev1.Request).GetId)
	merge(sh.workers, d.DeletedWorkers, d.Workers, (*statev1.Worker).GetId)
	merge(sh.tombs, d.DeletedTombstones, d.Tombstones, (*statev1.Tombstone).GetRequestId)
	merge(sh.pending, d.DeletedPending, d.Pending, (*statev1.PendingAssignment).GetWorkerId)
	merge(sh.errs, d.DeletedTaskErrors, d.TaskErrors, (*statev1.TaskError).GetTaskId)
}

// merge applies one kind of a delta: deletions by id, then upserts.
func merge[T any](m map[string]T, deleted []string, set []T, id func(T) string) {
	for _, k := range deleted {
		delete(m, k)
	}
	for _, x := range set {
		m[id(x)] = x
	}
}

// State returns the state as a message with every list sorted by id. The
// message shares the shadow's messages: treat it as read-only.
func (sh *Shadow) State() *statev1.PoolState {
	st := &statev1.PoolState{Config: sh.config}
	if sh.clock != nil {
		st.LastUpdateUnixNanos = proto.Int64(*sh.clock)
	}
	st.Balances = sortedValues(sh.balances, func(b *statev1.AccountBalance) string { return b.AccountId })
	st.Waiting = sortedValues(sh.waiting, func(r *statev1.Request) string { return r.Id })
	st.Workers = sortedValues(sh.workers, func(w *statev1.Worker) string { return w.Id })
	st.Tombstones = sortedValues(sh.tombs, func(t *statev1.Tombstone) string { return t.RequestId })
	st.Pending = sortedValues(sh.pending, func(e *statev1.PendingAssignment) string { return e.WorkerId })
	st.TaskErrors = sortedValues(sh.errs, func(e *statev1.TaskError) string { return e.TaskId })
	return st
}

func sortedValues[V any](m map[string]V, id func(V) string) []V {
	if len(m) == 0 {
		return nil
	}
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b V) int { return cmp.Compare(id(a), id(b)) })
	return out
}

// ApplyDelta returns st with d applied (st is not modified; the result
// shares messages with both).
func ApplyDelta(st *statev1.PoolState, d *statev1.PoolDelta) *statev1.PoolState {
	sh := NewShadow(st)
	sh.Apply(d)
	return sh.State()
}

// DeltaRecords is how many records d upserts or deletes: what applying it
// touches.
func DeltaRecords(d *statev1.PoolDelta) int {
	return len(d.Balances) + len(d.DeletedBalances) + len(d.Waiting) + len(d.DeletedWaiting) +
		len(d.Workers) + len(d.DeletedWorkers) + len(d.Tombstones) + len(d.DeletedTombstones) +
		len(d.Pending) + len(d.DeletedPending) + len(d.TaskErrors) + len(d.DeletedTaskErrors)
}
