package scheduler

import (
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"
)

// tombstones remember requests that completed or were reported absent, so
// that stale notifications about them are recognised (algorithm.md §2.3):
// a report about a request whose tombstone is at or after the report's
// time is ignored. They are found by id (byID) and kept in a heap by
// (finish, id), so that the TTL (expireTombstones, at every clock advance)
// and the cap (enforceMaxTombstones) pop only what goes, O(log n) each.
// A request that is enqueued again loses its tombstone (unbury).
type tombstones struct {
	byID     map[RequestID]*tombstone
	byFinish heap.Heap[*tombstone] // by (finish, id)
}

// tombstone is a request's id and the time it finished.
type tombstone struct {
	id     RequestID
	finish int64
	idx    int // in byFinish
}

// init makes t empty.
func (t *tombstones) init() {
	t.byID = make(map[RequestID]*tombstone)
	t.byFinish = heap.Heap[*tombstone]{
		Less: func(a, b *tombstone) bool {
			if a.finish != b.finish {
				return a.finish < b.finish
			}
			return a.id < b.id
		},
		SetIndex: func(x *tombstone, i int) { x.idx = i },
	}
}

// live reports whether id has a tombstone with finish time >= t.
func (t *tombstones) live(id RequestID, at int64) bool {
	x := t.byID[id]
	return x != nil && x.finish >= at
}

// bury records (or moves forward) id's tombstone.
func (s *Scheduler) bury(id RequestID, finish int64) {
	x := s.tombstones.byID[id]
	if x != nil && finish <= x.finish {
		return
	}
	s.touchTombstone(id)
	s.putTombstone(id, finish)
	if x == nil {
		s.enforceMaxTombstones()
	}
}

// putTombstone sets id's tombstone to finish, whatever it was, and leaves
// the cap to the next UpdateTime, SetTunables or new tombstone.
func (s *Scheduler) putTombstone(id RequestID, finish int64) {
	t := &s.tombstones
	if x := t.byID[id]; x != nil {
		x.finish = finish
		t.byFinish.Fix(x.idx)
		return
	}
	x := &tombstone{id: id, finish: finish}
	t.byID[id] = x
	t.byFinish.Push(x)
}

// unbury forgets id's tombstone, if any.
func (s *Scheduler) unbury(id RequestID) {
	t := &s.tombstones
	if x := t.byID[id]; x != nil {
		s.touchTombstone(id)
		t.byFinish.Remove(x.idx)
		delete(t.byID, id)
	}
}

// enforceMaxTombstones forgets the oldest tombstones beyond max_tombstones.
func (s *Scheduler) enforceMaxTombstones() {
	t := &s.tombstones
	for t.byFinish.Len() > s.cfg.maxTombstones {
		s.unbury(t.byFinish.Top().id)
	}
}

// expireTombstones drops tombstones older than the TTL at the clock.
func (s *Scheduler) expireTombstones() {
	t := &s.tombstones
	for t.byFinish.Len() > 0 {
		x := t.byFinish.Top()
		if s.now-x.finish <= s.cfg.tombstoneTTL {
			break
		}
		s.unbury(x.id)
	}
}
