package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// ApplyDelta applies a committed delta, typically another writer's, to the
// live state in time proportional to the delta (a delta with wipe set is a
// whole state, and rebuilds the pool as FromProto does). The result is the
// state FromProto would rebuild from nodestore.ApplyDelta(s.ToProto(), d),
// with every index kept exact; the orders by confirmed time are left to
// settle (SettleOrders).
//
// The delta is checked first and an invalid one changes nothing: records
// are checked as FromProto checks them, an entity may appear at most once
// among a kind's upserts, and the state the delta gives must be one
// FromProto accepts: no request both waiting and running or twice, no
// tombstone of a request in the state, no running task without a clock or
// that changed level after it. A delta that moves the clock back is
// rejected: a scheduler's clock only moves forward (except by Wipe).
//
// ApplyDelta is for a committed state: it fails while changes are marked
// and not taken (TakeDelta). It makes no marks of its own (the changes are
// committed already), and the last taken delta can no longer be undone.
func (s *Scheduler) ApplyDelta(d *statev1.PoolDelta) error {
	if d == nil {
		return invalidf("delta: missing")
	}
	if s.dirty.marked() {
		return invalidf("delta: the state holds changes not yet taken (TakeDelta)")
	}
	if d.Wipe {
		return s.rebuild(d)
	}
	if err := s.checkDelta(d); err != nil {
		return err
	}
	s.apply(d, false)
	return nil
}

// UndoDelta takes back the changes that the last TakeDelta returned, when
// nothing has changed since: the state is again the one before them (its
// ToProto equal, every index exact), in time proportional to the number of
// entities they touched. Events are not state: those the changes recorded
// stay with whoever took them. UndoDelta fails with ErrCannotUndo, changing
// nothing, when no delta was taken since TrackChanges, the last UndoDelta
// or the last ApplyDelta, when anything changed after it was taken, or when
// it holds a Wipe.
func (s *Scheduler) UndoDelta() error {
	u := s.taken
	switch {
	case u == nil:
		return fmt.Errorf("%w: no delta taken since changes were tracked, undone or applied", ErrCannotUndo)
	case s.dirty.marked():
		return fmt.Errorf("%w: the state changed after the delta was taken", ErrCannotUndo)
	case u.reset:
		return fmt.Errorf("%w: the delta wipes the pool", ErrCannotUndo)
	}
	d := &statev1.PoolDelta{}
	if u.config {
		d.Config = u.configBefore
	}
	clearClock := u.clock && !u.hadClock
	if u.clock && u.hadClock {
		d.LastUpdateUnixNanos = proto.Int64(u.clockBefore)
	}
	d.Balances, d.DeletedBalances = preImages(u.balances)
	d.Waiting, d.DeletedWaiting = preImages(u.requests)
	d.Workers, d.DeletedWorkers = preImages(u.workers)
	d.Tombstones, d.DeletedTombstones = preImages(u.tombstones)
	d.Pending, d.DeletedPending = preImages(u.pendings)
	d.TaskErrors, d.DeletedTaskErrors = preImages(u.errors)
	s.apply(d, clearClock)
	return nil
}

// preImages splits the pre-images of marked records, by id, into the
// records to put back and the ids of those to delete (nil pre-images).
func preImages[K ~string, V comparable](m map[K]V) (put []V, deleted []string) {
	var none V
	for _, id := range slices.Sorted(maps.Keys(m)) {
		if v := m[id]; v != none {
			put = append(put, v)
		} else {
			deleted = append(deleted, string(id))
		}
	}
	return put, deleted
}

// rebuild replaces the state with the one a wiping delta holds, keeping
// the events not taken and whether changes are tracked.
func (s *Scheduler) rebuild(d *statev1.PoolDelta) error {
	st := &statev1.PoolState{
		Config: d.Config, LastUpdateUnixNanos: d.LastUpdateUnixNanos, Balances: d.Balances,
		Waiting: d.Waiting, Workers: d.Workers, Tombstones: d.Tombstones, Pending: d.Pending, TaskErrors: d.TaskErrors,
	}
	if st.Config == nil { // a wipe keeps the configuration unless it sets one
		st.Config = s.configProto()
	}
	fresh, err := FromProto(st)
	if err != nil {
		return err
	}
	fresh.dirty = dirtySet{on: s.dirty.on}
	fresh.events = s.events
	s.become(fresh)
	return nil
}

// checkDelta checks d (without wipe) against s: see ApplyDelta. It costs
// O(size of d).
func (s *Scheduler) checkDelta(d *statev1.PoolDelta) error {
	if err := ValidatePoolConfig(d.Config); err != nil {
		return err
	}
	hasClock, now := s.hasClock, s.now
	if t := d.LastUpdateUnixNanos; t != nil {
		if err := checkTime("last_update", *t); err != nil {
			return err
		}
		if s.hasClock && *t < s.now {
			return invalidf("last_update: %d is before the clock, %d", *t, s.now)
		}
		hasClock, now = true, *t
	}
	err := checkList(d.Balances, "balances", func(field fieldName, b *statev1.AccountBalance) error {
		_, err := checkBalance(field, b)
		return err
	}, (*statev1.AccountBalance).GetAccountId)
	if err != nil {
		return err
	}
	if err := checkList(d.Pending, "pending", checkPending, (*statev1.PendingAssignment).GetWorkerId); err != nil {
		return err
	}
	if err := checkList(d.TaskErrors, "task_errors", checkTaskError, (*statev1.TaskError).GetTaskId); err != nil {
		return err
	}
	// What the delta replaces or deletes.
	goneWaiting := newIDSet(d.DeletedWaiting, d.Waiting, (*statev1.Request).GetId)
	goneWorkers := newIDSet(d.DeletedWorkers, d.Workers, (*statev1.Worker).GetId)
	goneTombs := newIDSet(d.DeletedTombstones, d.Tombstones, (*statev1.Tombstone).GetRequestId)
	// kept reports whether the state keeps request id after the delta.
	kept := func(id RequestID) bool {
		r := s.requests.Get(id)
		return r != nil && (r.cls != nil && !goneWaiting.has(string(id)) || r.w != nil && !goneWorkers.has(string(r.w.id)))
	}
	// The requests the delta puts in the state: those that run on its
	// workers, and those that wait.
	running := map[RequestID]bool{}
	waiting := newIDSet(nil, d.Waiting, (*statev1.Request).GetId)
	addRequest := func(field fieldName, r *statev1.Request) error {
		id := RequestID(r.Id)
		switch {
		case running[id]:
			return invalidf("%s: request %q appears twice", field, id)
		case kept(id):
			return invalidf("%s: request %q is already in the state", field, id)
		case s.tombstones.byID[id] != nil && !goneTombs.has(r.Id):
			return invalidf("%s: request %q has a tombstone", field, id)
		}
		return nil
	}
	err = checkList(d.Workers, "workers", func(field fieldName, w *statev1.Worker) error {
		if _, err := checkWorker(field, w, hasClock, now); err != nil || w.Running == nil {
			return err
		}
		if err := addRequest(fieldName{field.list, field.i, ".running.request"}, w.Running.Request); err != nil {
			return err
		}
		running[RequestID(w.Running.Request.Id)] = true
		return nil
	}, (*statev1.Worker).GetId)
	if err != nil {
		return err
	}
	err = checkList(d.Waiting, "waiting", func(field fieldName, r *statev1.Request) error {
		if err := checkRequest(field, r); err != nil {
			return err
		}
		return addRequest(field, r)
	}, (*statev1.Request).GetId)
	if err != nil {
		return err
	}
	return checkList(d.Tombstones, "tombstones", func(field fieldName, t *statev1.Tombstone) error {
		if err := checkTombstone(field, t); err != nil {
			return err
		}
		if id := RequestID(t.RequestId); running[id] || waiting.has(t.RequestId) || kept(id) {
			return invalidf("%s: request %q is still known", field, id)
		}
		return nil
	}, (*statev1.Tombstone).GetRequestId)
}

// checkList checks each record of a list and that no id repeats in it: by
// their order when the ids ascend, as they do in deltas, else by a map.
func checkList[T any](list []T, name string, check func(fieldName, T) error, id func(T) string) error {
	var seen map[string]bool
	for i, x := range list {
		field := fieldName{list: name, i: i}
		if err := check(field, x); err != nil {
			return err
		}
		k := id(x)
		if seen == nil {
			if i == 0 || id(list[i-1]) < k {
				continue
			}
			seen = make(map[string]bool, len(list))
			for _, y := range list[:i] {
				seen[id(y)] = true
			}
		}
		if seen[k] {
			return invalidf("%s: %q appears twice", field, k)
		}
		seen[k] = true
	}
	return nil
}

// idSet is the set of the ids one kind of a delta deletes or upserts,
// searched in the delta's lists when they are sorted by id, as deltas are,
// else in a map.
type idSet[T any] struct {
	deleted []string
	put     []T
	id      func(T) string
	m       map[string]bool
}

func newIDSet[T any](deleted []string, put []T, id func(T) string) *idSet[T] {
	set := &idSet[T]{deleted: deleted, put: put, id: id}
	byID := func(a, b T) int { return strings.Compare(id(a), id(b)) }
	if !slices.IsSorted(deleted) || !slices.IsSortedFunc(put, byID) {
		set.m = make(map[string]bool, len(deleted)+len(put))
		for _, k := range deleted {
			set.m[k] = true
		}
		for _, x := range put {
			set.m[id(x)] = true
		}
	}
	return set
}

func (set *idSet[T]) has(k string) bool {
	if set.m != nil {
		return set.m[k]
	}
	if _, ok := slices.BinarySearch(set.deleted, k); ok {
		return true
	}
	_, ok := slices.BinarySearchFunc(set.put, k, func(x T, k string) int { return strings.Compare(set.id(x), k) })
	return ok
}

// apply applies a checked delta without wipe (or an undo, which may also
// clear the clock), marking nothing. Requests and running tasks that the
// delta replaces or deletes leave first, so that a request may move
// between workers, or between waiting and running; then the new records
// are put in. A worker or waiting request that stays is changed in place
// (an idle worker keeps its kept eligibility while its labels stay), so
// that a delta of polls and confirmations rebuilds nothing.
func (s *Scheduler) apply(d *statev1.PoolDelta, clearClock bool) {
	on := s.dirty.on
	s.dirty.on = false
	if d.Config != nil {
		s.applyConfig(d.Config)
	}
	switch {
	case clearClock:
		s.hasClock, s.now = false, 0
	case d.LastUpdateUnixNanos != nil:
		s.hasClock, s.now = true, *d.LastUpdateUnixNanos
	}
	for _, id := range d.DeletedBalances {
		if a := s.accounts[AccountID(id)]; a != nil {
			// A configured account always has a balance (as FromProto gives).
			a.balance, a.hasBalance = Vector{}, a.cfg != nil
			s.gcAccts = append(s.gcAccts, a)
		}
	}
	for _, b := range d.Balances {
		a := s.account(AccountID(b.AccountId))
		a.balance, _ = vectorFromFloat64("", b.Value, true)
		a.hasBalance = true
	}

	var pk parking
	for _, id := range d.DeletedWaiting {
		if r := s.requests.Get(RequestID(id)); r != nil && r.cls != nil {
			s.dequeue(r)
			pk.park(r)
		}
	}
	for _, pr := range d.Waiting {
		if r := s.requests.Get(RequestID(pr.Id)); r != nil && r.cls != nil && !sameRequest(r, pr) {
			s.dequeue(r)
			pk.park(r)
		}
	}
	for _, id := range d.DeletedWorkers {
		if w := s.workers[WorkerID(id)]; w != nil {
			if w.req != nil {
				pk.park(s.stopTask(w))
			}
			s.forgetWorker(w)
		}
	}
	for _, pw := range d.Workers {
		if w := s.workers[WorkerID(pw.Id)]; w != nil && w.req != nil && !sameTask(w, pw) {
			pk.park(s.stopTask(w))
		}
	}
	request := func(pr *statev1.Request) *request { return pk.take(s, pr) }
	for _, pw := range d.Workers {
		var cost Vector
		if rt := pw.Running; rt != nil {
			cost, _ = vectorFromFloat64("", rt.Cost, false)
		}
		s.putWorker(pw, cost, request)
	}
	for _, pr := range d.Waiting {
		r := s.requests.Get(RequestID(pr.Id))
		if r == nil || r.cls == nil {
			s.enqueue(pk.take(s, pr))
		} else if r.confirmed != pr.ConfirmedTimeUnixNanos {
			r.confirmed = pr.ConfirmedTimeUnixNanos
			s.byConf.markRequest(r)
		}
	}
	pk.dropRest(s)

	for _, id := range d.DeletedTombstones {
		s.unbury(RequestID(id))
	}
	for _, t := range d.Tombstones {
		s.putTombstone(RequestID(t.RequestId), t.FinishTimeUnixNanos)
	}
	for _, id := range d.DeletedPending {
		if e := s.reconciler.entries[WorkerID(id)]; e != nil {
			s.dropEntry(e)
		}
	}
	for _, e := range d.Pending {
		s.setEntry(entryOf(e))
	}
	for _, id := range d.DeletedTaskErrors {
		delete(s.reconciler.errors, RequestID(id))
	}
	for _, e := range d.TaskErrors {
		s.reconciler.errors[RequestID(e.TaskId)] = e.Error
	}
	s.gc()
	s.dirty = dirtySet{on: on}
	s.taken = nil
}

// parking holds the requests a delta takes off their class or worker
// (neither waiting nor running, still in the request table), so that one
// the delta puts back, such as a waiting request that starts, keeps its
// object instead of being dropped and created again.
type parking struct {
	byID  map[RequestID]*request
	order []*request
}

func (pk *parking) park(r *request) {
	if pk.byID == nil {
		pk.byID = make(map[RequestID]*request)
	}
	pk.byID[r.id] = r
	pk.order = append(pk.order, r)
}

// take returns the request of the record pr, neither waiting nor running:
// the parked one when it has pr's fields but for the confirmed time, else
// a new one (a parked one of the same id is dropped first).
func (pk *parking) take(s *Scheduler, pr *statev1.Request) *request {
	id := RequestID(pr.Id)
	r := pk.byID[id]
	if r == nil {
		return s.newRequestOf(pr)
	}
	delete(pk.byID, id)
	if !sameTaskOf(r, pr) {
		s.dropRequest(r)
		return s.newRequestOf(pr)
	}
	if r.confirmed != pr.ConfirmedTimeUnixNanos {
		r.confirmed = pr.ConfirmedTimeUnixNanos
		s.byConf.markRequest(r)
	}
	return r
}

// dropRest drops the parked requests that nothing took, in the order they
// were parked.
func (pk *parking) dropRest(s *Scheduler) {
	for _, r := range pk.order {
		if pk.byID[r.id] == r {
			s.dropRequest(r)
		}
	}
}

// sameRequest reports whether the waiting request r has the record pr but
// for its confirmed time, so that it can stay where it waits.
func sameRequest(r *request, pr *statev1.Request) bool {
	return r.cls != nil && sameTaskOf(r, pr)
}

// sameTask reports whether the running worker w has the labels of the
// record pw and runs its task, but for confirmed times, level and cost, so
// that the task can stay on it.
func sameTask(w *worker, pw *statev1.Worker) bool {
	rt := pw.Running
	return rt != nil && string(w.req.id) == rt.Request.Id && sameTaskOf(w.req, rt.Request) && slices.Equal(w.names, pw.Labels)
}

func sameTaskOf(r *request, pr *statev1.Request) bool {
	return string(r.acct.id) == pr.AccountId && r.enqueue == pr.EnqueueTimeUnixNanos &&
		slices.Equal(r.base.names, pr.BaseLabels) && slices.Equal(r.prov.names, pr.ProvisionableLabels)
}

// applyConfig makes c (tunables and account configs) the configuration,
// as FromProto would: an account that gains a config without a balance
// gets a zero balance. Accounts whose config goes are left to gc.
func (s *Scheduler) applyConfig(c *statev1.PoolConfig) {
	tun := proto.CloneOf(c)
	accts := tun.AccountConfigs
	tun.AccountConfigs = nil
	s.tunablesProto, s.cfg = tun, tunablesOf(tun)
	for _, a := range s.sortedAccounts() {
		if a.cfg != nil && accts[string(a.id)] == nil {
			s.unconfigure(a)
			s.gcAccts = append(s.gcAccts, a)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(accts)) {
		a := s.account(AccountID(id))
		if a.cfg == nil || !proto.Equal(a.cfg, accts[id]) {
			s.setAccountConfig(a, accts[id])
		}
		if !a.hasBalance {
			a.balance, a.hasBalance = Vector{}, true
		}
	}
}
