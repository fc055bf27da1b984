package scheduler

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"
)

// reconciler holds, per worker, the assignment handed out and not yet
// confirmed (its pending entry), and per task an error to report
// (algorithm.md §3).
//
// Entries are found by worker (entries), kept in a heap by (time, worker)
// so that AssignTasks's step 1 pops only expired entries (O(log E) each),
// and indexed from the task they abort to the entries aborting it
// (byAbort, usually one; abortX holds the rare others), so that an absent
// notification of a preemption victim touches only those. Every
// assignment of a pass becomes its worker's entry after the pass
// (recordEntries, one allocation for all), replacing an older one.
// Cancellations and ToProto list entries and errors by sorting their ids,
// O(E log E).
type reconciler struct {
	entries map[WorkerID]*pendingEntry
	byTime  heap.Heap[*pendingEntry] // by (time, worker)
	byAbort map[RequestID]WorkerID   // the entry aborting a task
	abortX  map[RequestID][]WorkerID // further entries aborting the same task (rare)
	errors  map[RequestID]string     // task errors, reported until the task is absent
}

// pendingEntry is the reconciler's {time, task_to_assign, task_to_abort}
// of one worker.
type pendingEntry struct {
	worker WorkerID
	time   int64     // when the assignment was made
	assign RequestID // the task the worker is to run
	abort  RequestID // the task it must abort first ("" when none)
	idx    int       // in reconciler.byTime
}

// init makes r empty.
func (r *reconciler) init() {
	r.entries = make(map[WorkerID]*pendingEntry)
	r.byAbort = make(map[RequestID]WorkerID)
	r.abortX = make(map[RequestID][]WorkerID)
	r.errors = make(map[RequestID]string)
	r.byTime = heap.Heap[*pendingEntry]{
		Less: func(a, b *pendingEntry) bool {
			if a.time != b.time {
				return a.time < b.time
			}
			return a.worker < b.worker
		},
		SetIndex: func(e *pendingEntry, i int) { e.idx = i },
	}
}

// setEntry records e, replacing its worker's entry.
func (s *Scheduler) setEntry(e *pendingEntry) {
	r := &s.reconciler
	s.touchPending(e.worker)
	if old := r.entries[e.worker]; old != nil {
		s.dropEntry(old)
	}
	r.entries[e.worker] = e
	r.byTime.Push(e)
	if e.abort != "" {
		s.indexAbort(e)
	}
}

// indexAbort records that e aborts e.abort.
func (s *Scheduler) indexAbort(e *pendingEntry) {
	r := &s.reconciler
	if _, ok := r.byAbort[e.abort]; !ok {
		r.byAbort[e.abort] = e.worker
		return
	}
	r.abortX[e.abort] = append(r.abortX[e.abort], e.worker)
}

// unindexAbort forgets that e aborts e.abort.
func (s *Scheduler) unindexAbort(e *pendingEntry) {
	r := &s.reconciler
	extra := r.abortX[e.abort]
	if r.byAbort[e.abort] == e.worker {
		if len(extra) == 0 {
			delete(r.byAbort, e.abort)
			return
		}
		r.byAbort[e.abort] = extra[0]
		extra = extra[1:]
	} else if i := slices.Index(extra, e.worker); i >= 0 {
		extra = slices.Delete(slices.Clone(extra), i, i+1)
	}
	if len(extra) == 0 {
		delete(r.abortX, e.abort)
	} else {
		r.abortX[e.abort] = extra
	}
}

// aborting returns the workers whose entries abort task id, by worker id.
func (s *Scheduler) aborting(id RequestID) []WorkerID {
	w, ok := s.reconciler.byAbort[id]
	if !ok {
		return nil
	}
	out := append([]WorkerID{w}, s.reconciler.abortX[id]...)
	slices.Sort(out)
	return out
}

// dropEntry forgets e if it is still its worker's entry.
func (s *Scheduler) dropEntry(e *pendingEntry) {
	r := &s.reconciler
	if r.entries[e.worker] != e {
		return
	}
	s.touchPending(e.worker)
	delete(r.entries, e.worker)
	r.byTime.Remove(e.idx)
	if e.abort != "" {
		s.unindexAbort(e)
	}
}

// entryLive reports whether e's task still runs on e's worker.
func (s *Scheduler) entryLive(e *pendingEntry) (*request, *worker, bool) {
	w := s.workers[e.worker]
	if w == nil || w.req == nil || w.req.id != e.assign {
		return nil, nil, false
	}
	return w.req, w, true
}

// IdleWorker is a worker polling for a task.
type IdleWorker struct {
	ID     WorkerID
	Labels []string
}

// TaskAssignment tells a polling worker which task to run.
type TaskAssignment struct {
	Worker            WorkerID
	Task              RequestID
	ProvisionRequired bool
}

// AssignTasks is the reconciler's answer to idle workers polling at t
// (algorithm.md §3): expired pending assignments are taken back, the clock
// advances, the workers without a live pending assignment are marked idle, a
// pass runs, and every polling worker with a pending assignment gets it.
// The result has one element per polling worker that has a task, in the
// order of workers (a worker listed twice is answered twice).
func (s *Scheduler) AssignTasks(t time.Time, workers []IdleWorker) ([]TaskAssignment, error) {
	ns, err := nanos("time", t)
	if err != nil {
		return nil, err
	}
	for i, w := range workers {
		if ValidateID("", string(w.ID)) != nil { // the field named only on error
			return nil, ValidateID("idle_bots["+strconv.Itoa(i)+"].bot_id", string(w.ID))
		}
	}
	return s.assignTasks(ns, workers), nil
}

// assignTasks is AssignTasks after validation, steps (1) to (5).
func (s *Scheduler) assignTasks(t int64, workers []IdleWorker) []TaskAssignment {
	// (1) Pending assignments not confirmed in time are taken back.
	for s.reconciler.byTime.Len() > 0 {
		e := s.reconciler.byTime.Top()
		if t-e.time < s.cfg.workerQueueTimeout {
			break
		}
		if r, w, ok := s.entryLive(e); ok {
			s.unassign(r, w)
		}
		s.dropEntry(e)
	}
	// (2)
	s.updateTime(t)
	// (3)
	for _, iw := range workers {
		e := s.reconciler.entries[iw.ID]
		if e != nil {
			if _, _, ok := s.entryLive(e); ok {
				continue
			}
			s.dropEntry(e)
		}
		s.markIdle(iw.ID, iw.Labels, t, false)
	}
	// (4)
	s.recordEntries(s.runOnce())
	// (5)
	var out []TaskAssignment
	for _, iw := range workers {
		e := s.reconciler.entries[iw.ID]
		if e == nil {
			continue
		}
		r, _, ok := s.entryLive(e)
		if !ok {
			continue
		}
		// The poll's labels are the bot's current dimensions (a worker with a
		// live entry keeps its recorded labels until it is marked idle).
		out = append(out, TaskAssignment{Worker: iw.ID, Task: e.assign, ProvisionRequired: lacksAny(iw.Labels, r.prov.names)})
	}
	return out
}

// Notification is one task state reported by Swarming.
type Notification struct {
	Time time.Time
	// Kind says which fields are used.
	Kind NotificationKind
	// Task: the task (all fields for NotifyWaiting; ID otherwise).
	Task Task
	// Worker: the bot running the task (NotifyRunning).
	Worker WorkerID
}

// NotificationKind is the state category of a Notification.
type NotificationKind int

// Notification kinds.
const (
	NotifyWaiting NotificationKind = iota + 1
	NotifyRunning
	NotifyAbsent
)

// Notify applies one Swarming notification through the reconciler
// (algorithm.md §3). After validating it, Notify advances the clock to the
// notification's time as UpdateTime does, so that running tasks, the one
// the notification ends included, are charged up to that time; then it
// applies the notification, which may still be ignored as stale. A time
// before the clock does not move it (reports out of order never move the
// clock back), and without a clock the time only sets it. A rejected
// notification changes nothing.
func (s *Scheduler) Notify(n Notification, fromCallback bool) error {
	ns, err := nanos("time", n.Time)
	if err != nil {
		return err
	}
	if err := ValidateID("task id", string(n.Task.ID)); err != nil {
		return err
	}
	var enq int64
	switch n.Kind {
	case NotifyWaiting:
		if enq, err = nanos("enqueue_time", n.Task.EnqueueTime); err != nil {
			return err
		}
		if n.Task.Account != "" {
			if err := ValidateID("account id", string(n.Task.Account)); err != nil {
				return err
			}
		}
	case NotifyRunning:
		if err := ValidateID("bot id", string(n.Worker)); err != nil {
			return err
		}
	case NotifyAbsent:
	default:
		return invalidf("notification kind %d unknown", n.Kind)
	}
	// Every second a task runs is charged, also when no bot polls.
	s.updateTime(ns)
	switch n.Kind {
	case NotifyWaiting:
		s.addRequest(n.Task, enq, ns, fromCallback)
	case NotifyRunning:
		if e := s.reconciler.entries[n.Worker]; e != nil && e.abort == n.Task.ID {
			// [ours] The victim of a preemption still runs on its bot until
			// Swarming cancels it; reports of that are expected and must not
			// complete the preemptor waiting for the bot.
			break
		}
		s.notifyRunning(n.Task.ID, n.Worker, ns, fromCallback)
		if e := s.reconciler.entries[n.Worker]; e != nil && e.assign == n.Task.ID && ns >= e.time {
			s.dropEntry(e)
		}
	case NotifyAbsent:
		s.notifyAbsent(n.Task.ID, ns, fromCallback)
		for _, wid := range s.aborting(n.Task.ID) {
			e := s.reconciler.entries[wid]
			s.touchPending(wid)
			s.unindexAbort(e)
			e.abort = ""
		}
		if _, ok := s.reconciler.errors[n.Task.ID]; ok {
			s.touchTaskError(n.Task.ID)
			delete(s.reconciler.errors, n.Task.ID)
		}
	}
	s.gc()
	return nil
}

// SetTaskError records a problem with a task, reported through
// Cancellations with reason ERROR until Swarming reports the task absent.
// A text new or changed for the task is a TASK_ERROR event at the clock
// (0 before it is set), with the task's account, labels and worker when the
// scheduler knows the task; the same text again records nothing.
func (s *Scheduler) SetTaskError(id RequestID, msg string) error {
	if err := ValidateID("task id", string(id)); err != nil {
		return err
	}
	if s.reconciler.errors[id] != msg {
		s.touchTaskError(id)
		s.reconciler.errors[id] = msg
		var t int64
		if s.hasClock {
			t = s.now
		}
		var w *worker
		r := s.requests.Get(id)
		if r != nil {
			w = r.w
		}
		e := s.event(EventTaskError, t, r, w, false)
		e.Task, e.Error = id, msg
	}
	return nil
}

// CancellationReason says why a task must be cancelled.
type CancellationReason int

// Cancellation reasons (the wire values of Swarming's enum).
const (
	CancelPreempted CancellationReason = 1
	CancelError     CancellationReason = 2
)

// Cancellation asks Swarming to stop a task.
type Cancellation struct {
	Worker    WorkerID // "" for errors
	Task      RequestID
	Reason    CancellationReason
	ExtraInfo string
}

// Cancellations returns the preempted tasks to abort (by worker id) and the
// tasks with errors (by task id). They repeat until acknowledged.
func (s *Scheduler) Cancellations() []Cancellation {
	var out []Cancellation
	for _, wid := range slices.Sorted(maps.Keys(s.reconciler.entries)) {
		if e := s.reconciler.entries[wid]; e.abort != "" {
			out = append(out, Cancellation{Worker: wid, Task: e.abort, Reason: CancelPreempted})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.reconciler.errors)) {
		out = append(out, Cancellation{Task: id, Reason: CancelError, ExtraInfo: s.reconciler.errors[id]})
	}
	return out
}

// Callbacks returns the tasks Swarming should re-confirm: the
// max(1, ceil(1% of n)) waiting and max(1, ceil(5% of m)) running tasks
// confirmed longest ago (ties by id), waiting ones first. It reads them off
// the orders by confirmed time, settled first (SettleOrders): O(log n + k)
// for k tasks once settled.
func (s *Scheduler) Callbacks() []RequestID {
	s.SettleOrders()
	nw := callbackCount(s.byConf.waiting.Len(), 0.01)
	nr := callbackCount(s.byConf.running.Len(), 0.05)
	if nw+nr == 0 {
		return nil
	}
	out := make([]RequestID, 0, nw+nr)
	s.byConf.waiting.Ascend(func(_ viewKey, r *request) bool {
		out = append(out, r.id)
		return len(out) < nw
	})
	s.byConf.running.Ascend(func(_ viewKey, w *worker) bool {
		out = append(out, w.req.id)
		return len(out) < nw+nr
	})
	return out
}

// callbackCount is how many of n tasks Callbacks lists: max(1, ceil(frac
// of n)), none of none.
func callbackCount(n int, frac float64) int {
	if n == 0 {
		return 0
	}
	return max(1, int(math.Ceil(frac*float64(n))))
}

// lacksAny reports whether some label of want is not in have.
func lacksAny(have, want []string) bool {
	for _, l := range want {
		if !slices.Contains(have, l) {
			return true
		}
	}
	return false
}

// recordEntries makes the pending entries of as, allocated together.
func (s *Scheduler) recordEntries(as []assignment) {
	if len(as) == 0 {
		return
	}
	slab := make([]pendingEntry, len(as))
	for i, a := range as {
		slab[i] = pendingEntry{worker: a.Worker, time: s.now, assign: a.Request, abort: a.Preempted}
		s.setEntry(&slab[i])
	}
}
