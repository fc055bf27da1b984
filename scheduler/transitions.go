package scheduler

import (
	"time"
)

// Task describes a request as Swarming reports it.
type Task struct {
	ID                  RequestID
	Account             AccountID
	EnqueueTime         time.Time
	BaseLabels          []string
	ProvisionableLabels []string
	Tags                []string
}

// AddRequest reports a waiting request at time t (algorithm.md §2.3). It
// sets the clock to t when there is none and never moves a clock that is set
// (Notify does).
func (s *Scheduler) AddRequest(task Task, t time.Time, fromCallback bool) error {
	ns, err := nanos("time", t)
	if err != nil {
		return err
	}
	enq, err := nanos("enqueue_time", task.EnqueueTime)
	if err != nil {
		return err
	}
	if err := ValidateID("task id", string(task.ID)); err != nil {
		return err
	}
	if task.Account != "" {
		if err := ValidateID("account id", string(task.Account)); err != nil {
			return err
		}
	}
	s.addRequest(task, enq, ns, fromCallback)
	s.gc()
	return nil
}

func (s *Scheduler) addRequest(task Task, enq, t int64, fromCallback bool) {
	s.setClock(t)
	r := s.requests.Get(task.ID)
	switch {
	case r == nil:
		if s.tombstones.live(task.ID, t) {
			return
		}
		s.unbury(task.ID)
	case r.cls != nil: // waiting: confirm only
		if t > r.confirmed {
			s.touchRequest(r.id)
			r.confirmed = t
			s.byConf.markRequest(r)
		}
		return
	default: // running on r.w
		w := r.w
		if t < r.confirmed || t < w.confirmed {
			return
		}
		enq = r.enqueue // keeps its FIFO place
		s.forgetWorker(w)
	}
	r = s.newRequest(task.ID, task.Account, enq, t, task.BaseLabels, task.ProvisionableLabels)
	s.enqueue(r)
	s.event(EventEnqueued, t, r, nil, fromCallback).Tags = task.Tags
}

// MarkIdle reports that worker id, with the given labels, was idle at t. It
// sets the clock to t when there is none and never moves a clock that is set
// (AssignTasks does).
func (s *Scheduler) MarkIdle(id WorkerID, labels []string, t time.Time, fromCallback bool) error {
	ns, err := nanos("time", t)
	if err != nil {
		return err
	}
	if err := ValidateID("bot id", string(id)); err != nil {
		return err
	}
	s.markIdle(id, labels, ns, fromCallback)
	s.gc()
	return nil
}

func (s *Scheduler) markIdle(id WorkerID, labels []string, t int64, fromCallback bool) {
	s.setClock(t)
	w := s.workers[id]
	if w == nil {
		s.newWorker(id, labels, t)
		return
	}
	if t < w.latestConfirmed() {
		return
	}
	s.touchWorker(w.id)
	if r := w.req; r != nil {
		s.event(EventCompleted, t, r, w, fromCallback).Reason = ReasonBotIdle
		s.stopTask(w)
		s.dropRequest(r)
		s.bury(r.id, t)
	}
	s.setWorkerLabels(w, labels)
	if t != w.confirmed {
		w.confirmed = t // its idle key catches up at expiry (expireIdle)
		s.byConf.markWorker(w)
	}
}

// notifyRunning applies a report that request rid was running on worker
// wid at t (algorithm.md §2.3). It sets the clock to t when there is none
// and never moves a clock that is set (Notify does); a task it starts
// starts at the clock.
func (s *Scheduler) notifyRunning(rid RequestID, wid WorkerID, t int64, fromCallback bool) {
	s.setClock(t)
	r := s.requests.Get(rid)
	w := s.workers[wid]
	if r != nil && r.w == w && w != nil { // r on w
		if t >= r.confirmed {
			s.confirm(r, w, t)
		}
		return
	}
	if r != nil && t < r.confirmed {
		return // stale for the request
	}
	if w != nil && t < w.latestConfirmed() {
		return // stale for the worker: it was seen later doing something else
	}
	if r == nil {
		if s.tombstones.live(rid, t) {
			return // r finished at or after t: the report is stale
		}
		if w != nil {
			s.workerRule(w, rid, t, fromCallback)
			s.forgetWorker(w)
		}
		return
	}
	level, cost := r.acct.priority(), Vector{}
	if old := r.w; old != nil { // r on another worker
		level, cost = old.level, old.costAt(s.now)
		e := s.event(EventCompleted, t, r, old, fromCallback)
		e.Reason, e.OtherWorker = ReasonInconsistentBotForTask, wid
		s.stopTask(old)
		s.forgetWorker(old)
	} else {
		s.dequeue(r)
	}
	if w != nil {
		s.workerRule(w, rid, t, fromCallback)
	} else {
		w = s.newWorker(wid, nil, t)
	}
	s.startTask(w, r, level, cost)
	s.confirm(r, w, t)
}

// workerRule: w was reported running request rid at t >= latestConfirmed(w);
// whatever else it runs completes.
func (s *Scheduler) workerRule(w *worker, rid RequestID, t int64, fromCallback bool) {
	if r2 := w.req; r2 != nil {
		e := s.event(EventCompleted, t, r2, w, fromCallback)
		e.Reason, e.OtherTask = ReasonInconsistentTaskForBot, rid
		s.stopTask(w)
		s.dropRequest(r2)
		s.bury(r2.id, t)
	}
}

// confirm records that r was running on w at t: each confirmed time moves
// up to t.
func (s *Scheduler) confirm(r *request, w *worker, t int64) {
	if t <= r.confirmed && t <= w.confirmed {
		return
	}
	s.touchWorker(w.id)
	r.confirmed = max(r.confirmed, t)
	w.confirmed = max(w.confirmed, t)
	s.byConf.markWorker(w) // the task may move in the running order
}

// notifyAbsent applies a report that request rid was no longer waiting or
// running at t (it finished, was cancelled or never existed). It sets the
// clock to t when there is none and never moves a clock that is set (Notify
// does), so a task it ends has been charged up to the clock.
func (s *Scheduler) notifyAbsent(rid RequestID, t int64, fromCallback bool) {
	s.setClock(t)
	r := s.requests.Get(rid)
	switch {
	case r == nil:
	case r.cls != nil:
		if t < r.confirmed {
			return
		}
		s.event(EventCompleted, t, r, nil, fromCallback).Reason = ReasonIdleTaskAbsent
		s.dequeue(r)
		s.dropRequest(r)
	default:
		w := r.w
		if t < r.confirmed || t < w.confirmed {
			return
		}
		s.event(EventCompleted, t, r, w, fromCallback).Reason = ReasonRunningTaskAbsent
		s.forgetWorker(w)
	}
	s.bury(rid, t)
}

// unassign takes back r from w, which never started it (algorithm.md §2.3
// Unassign): w is forgotten, r's cost refunded and r re-enqueued unless it is
// too old.
func (s *Scheduler) unassign(r *request, w *worker) {
	cost := w.costAt(s.now)
	if a := r.acct; a.cfg != nil {
		s.touchBalance(a.id)
		a.balance = a.balance.Add(cost)
	}
	s.event(EventUnassigned, s.now, r, w, false)
	s.stopTask(w)
	s.forgetWorker(w)
	if s.now-r.enqueue > s.cfg.maxQueueingAge {
		s.dropRequest(r)
		return
	}
	s.enqueue(r)
}
