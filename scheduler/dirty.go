package scheduler

import (
	"slices"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
)

// dirtySet records which entities changed, so that a commit can write in
// proportion to what changed (docs/service.md §4), and what each of them
// was before its first change, so that the changes can be undone in
// proportion to their number (UndoDelta). The marks are kept only after
// TrackChanges (on); TakeDelta turns them into a PoolDelta.
//
// Every function that changes a persisted record marks it (the touch
// methods below) before changing it: the first mark of a record since the
// last TakeDelta keeps its pre-image, the record as ToProto would write it
// then (nil: absent). A waiting request's record is its own; a running
// request's is part of its worker's, so a change to a running request (its
// confirmed time) marks the worker.
type dirtySet struct {
	on    bool
	reset bool // Wipe: the pre-images are not kept

	config       bool
	configBefore *statev1.PoolConfig // tunables and account configs
	clock        bool
	hadClock     bool
	clockBefore  int64

	requests   map[RequestID]*statev1.Request // the waiting record
	workers    map[WorkerID]*statev1.Worker
	tombstones map[RequestID]*statev1.Tombstone
	pendings   map[WorkerID]*statev1.PendingAssignment
	errors     map[RequestID]*statev1.TaskError
	balances   map[AccountID]*statev1.AccountBalance
}

// marked reports whether anything is marked.
func (d *dirtySet) marked() bool {
	return d.reset || d.config || d.clock || len(d.requests)+len(d.workers)+len(d.tombstones)+
		len(d.pendings)+len(d.errors)+len(d.balances) > 0
}

// first marks k in m and reports whether it was not marked yet (its
// pre-image is then to be stored in m[k]).
func first[K comparable, V any](on bool, m *map[K]V, k K) bool {
	if !on {
		return false
	}
	if *m == nil {
		*m = make(map[K]V)
	}
	if _, ok := (*m)[k]; ok {
		return false
	}
	var none V
	(*m)[k] = none
	return true
}

func (s *Scheduler) touchRequest(id RequestID) {
	if first(s.dirty.on, &s.dirty.requests, id) {
		if r := s.requests.Get(id); r != nil && r.cls != nil {
			s.dirty.requests[id] = r.toProto()
		}
	}
}

func (s *Scheduler) touchWorker(id WorkerID) {
	if first(s.dirty.on, &s.dirty.workers, id) {
		if w := s.workers[id]; w != nil {
			s.dirty.workers[id] = w.toProto()
		}
	}
}

func (s *Scheduler) touchTombstone(id RequestID) {
	if first(s.dirty.on, &s.dirty.tombstones, id) {
		if x := s.tombstones.byID[id]; x != nil {
			s.dirty.tombstones[id] = &statev1.Tombstone{RequestId: string(id), FinishTimeUnixNanos: x.finish}
		}
	}
}

func (s *Scheduler) touchPending(id WorkerID) {
	if first(s.dirty.on, &s.dirty.pendings, id) {
		if e := s.reconciler.entries[id]; e != nil {
			s.dirty.pendings[id] = e.toProto()
		}
	}
}

func (s *Scheduler) touchTaskError(id RequestID) {
	if first(s.dirty.on, &s.dirty.errors, id) {
		if msg, ok := s.reconciler.errors[id]; ok {
			s.dirty.errors[id] = &statev1.TaskError{TaskId: string(id), Error: msg}
		}
	}
}

func (s *Scheduler) touchBalance(id AccountID) {
	if first(s.dirty.on, &s.dirty.balances, id) {
		if a := s.accounts[id]; a != nil && a.hasBalance {
			s.dirty.balances[id] = &statev1.AccountBalance{AccountId: string(id), Value: slices.Clone(a.balance[:])}
		}
	}
}

// touchConfig marks the configuration: tunables or an account's config.
func (s *Scheduler) touchConfig() {
	if d := &s.dirty; d.on && !d.config {
		d.config, d.configBefore = true, s.configProto()
	}
}

func (s *Scheduler) touchClock() {
	if d := &s.dirty; d.on && !d.clock {
		d.clock, d.hadClock, d.clockBefore = true, s.hasClock, s.now
	}
}
