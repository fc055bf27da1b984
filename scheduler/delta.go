package scheduler

import (
	"maps"
	"slices"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// TrackChanges starts recording which entities change, and what they were
// before, for TakeDelta and UndoDelta. A commit then writes in proportion
// to what a batch changed.
func (s *Scheduler) TrackChanges() {
	s.dirty = dirtySet{on: true}
	s.taken = nil
}

// TakeDelta returns the changes since TrackChanges or the last TakeDelta as
// a delta that, applied to the state before them (nodestore.Shadow.Apply),
// gives the current state; it forgets them, keeping what they replaced
// until the next TakeDelta so that UndoDelta can take them back. Costs are
// derived from (cost, level, since), so advancing the clock changes no
// task record.
func (s *Scheduler) TakeDelta() *statev1.PoolDelta {
	d := &statev1.PoolDelta{}
	dirty := s.dirty
	s.dirty = dirtySet{on: dirty.on}
	if dirty.on {
		s.taken = &dirty
	}
	if dirty.reset {
		st := s.ToProto()
		d.Wipe = true
		d.Config = st.Config
		d.LastUpdateUnixNanos = st.LastUpdateUnixNanos
		d.Balances, d.Waiting, d.Workers = st.Balances, st.Waiting, st.Workers
		d.Tombstones, d.Pending, d.TaskErrors = st.Tombstones, st.Pending, st.TaskErrors
		return d
	}
	if dirty.config {
		d.Config = s.configProto()
	}
	if dirty.clock && s.hasClock {
		d.LastUpdateUnixNanos = proto.Int64(s.now)
	}
	for _, id := range slices.Sorted(maps.Keys(dirty.balances)) {
		if a := s.accounts[id]; a != nil && a.hasBalance {
			d.Balances = append(d.Balances, &statev1.AccountBalance{AccountId: string(id), Value: slices.Clone(a.balance[:])})
		} else {
			d.DeletedBalances = append(d.DeletedBalances, string(id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(dirty.requests)) {
		if r := s.requests.Get(id); r != nil && r.cls != nil {
			d.Waiting = append(d.Waiting, r.toProto())
		} else {
			d.DeletedWaiting = append(d.DeletedWaiting, string(id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(dirty.workers)) {
		if w := s.workers[id]; w != nil {
			d.Workers = append(d.Workers, w.toProto())
		} else {
			d.DeletedWorkers = append(d.DeletedWorkers, string(id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(dirty.tombstones)) {
		if t := s.tombstones.byID[id]; t != nil {
			d.Tombstones = append(d.Tombstones, &statev1.Tombstone{RequestId: string(id), FinishTimeUnixNanos: t.finish})
		} else {
			d.DeletedTombstones = append(d.DeletedTombstones, string(id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(dirty.pendings)) {
		if e := s.reconciler.entries[id]; e != nil {
			d.Pending = append(d.Pending, e.toProto())
		} else {
			d.DeletedPending = append(d.DeletedPending, string(id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(dirty.errors)) {
		if msg, ok := s.reconciler.errors[id]; ok {
			d.TaskErrors = append(d.TaskErrors, &statev1.TaskError{TaskId: string(id), Error: msg})
		} else {
			d.DeletedTaskErrors = append(d.DeletedTaskErrors, string(id))
		}
	}
	return d
}

// DeltaEmpty reports whether d changes nothing.
func DeltaEmpty(d *statev1.PoolDelta) bool {
	return !d.Wipe && d.Config == nil && d.LastUpdateUnixNanos == nil &&
		len(d.Balances)+len(d.DeletedBalances)+len(d.Waiting)+len(d.DeletedWaiting)+
			len(d.Workers)+len(d.DeletedWorkers)+len(d.Tombstones)+len(d.DeletedTombstones)+
			len(d.Pending)+len(d.DeletedPending)+len(d.TaskErrors)+len(d.DeletedTaskErrors) == 0
}

// Wipe clears tasks, workers, balances (configured accounts restart at
// zero), tombstones, the reconciler and the clock, keeping the pool's config.
func (s *Scheduler) Wipe() {
	cfg := s.configProto()
	on := s.dirty.on
	fresh, err := FromProto(&statev1.PoolState{Config: cfg})
	if err != nil {
		panic("scheduler: wiping a valid config failed: " + err.Error())
	}
	s.become(fresh)
	s.dirty = dirtySet{on: on, reset: true}
}

// become makes s the state fresh holds; fresh is not used afterwards.
func (s *Scheduler) become(fresh *Scheduler) {
	*s = *fresh
	// The trie's root is held by value: what points to it is moved along.
	for _, k := range s.trie.kids {
		k.parent = &s.trie
	}
	if bi := s.trie.bi; bi != nil {
		bi.node = &s.trie
	}
}
