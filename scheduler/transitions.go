package scheduler

import (
	"fmt"
	"math"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// AddAccount adds or replaces an account's config and resets its balance to
// balance (nil: zero). Its waiting and running requests keep their places.
func (s *Scheduler) AddAccount(id AccountID, cfg *statev1.AccountConfig, balance []float32) error {
	if err := ValidateID("account_id", string(id)); err != nil {
		return err
	}
	if err := ValidateAccountConfig("config", cfg); err != nil {
		return err
	}
	bal, err := VectorFromFloat32("balance", balance)
	if err != nil {
		return err
	}
	a := s.account(id)
	s.setAccountConfig(a, proto.CloneOf(cfg))
	a.balance, a.hasBalance = bal, true
	s.dirty.balance(id)
	s.dirty.config = true
	return nil
}

func (s *Scheduler) setAccountConfig(a *account, cfg *statev1.AccountConfig) {
	a.cfg = cfg
	a.rate, _ = VectorFromFloat32("", cfg.ChargeRate)
	for p := range a.cap {
		a.cap[p] = float64(a.rate[p] * float64(cfg.MaxChargeSeconds))
	}
	old := a.limits
	oldFanout := a.maxFanout
	a.maxFanout = cfg.MaxFanout
	a.disableFree = cfg.DisableFreeTasks
	a.limits = cfg.PerLabelTaskLimits
	if !sameKeys(old, a.limits) || (oldFanout > 0) != (a.maxFanout > 0) {
		s.recount(a)
	}
}

func sameKeys(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// UpdateAccount replaces a configured account's config and keeps its
// balance (ModAccount without reset_balance).
func (s *Scheduler) UpdateAccount(id AccountID, cfg *statev1.AccountConfig) error {
	a := s.accounts[id]
	if a == nil || a.cfg == nil {
		return fmt.Errorf("%w: account %q", ErrNotFound, id)
	}
	if err := ValidateAccountConfig("config", cfg); err != nil {
		return err
	}
	s.setAccountConfig(a, proto.CloneOf(cfg))
	s.dirty.config = true
	return nil
}

// DeleteAccount removes an account's config and balance. Its waiting
// requests become FreeBucket requests; its running tasks move to FreeBucket
// at the next pass.
func (s *Scheduler) DeleteAccount(id AccountID) error {
	a := s.accounts[id]
	if a == nil || a.cfg == nil {
		return fmt.Errorf("%w: account %q", ErrNotFound, id)
	}
	hadLimits := a.limited()
	a.cfg, a.rate, a.cap, a.maxFanout, a.disableFree, a.limits = nil, Vector{}, Vector{}, 0, false, nil
	a.balance, a.hasBalance = Vector{}, false
	if hadLimits {
		s.recount(a)
	}
	s.dirty.balance(id)
	s.dirty.config = true
	s.maybeDropAccount(a)
	return nil
}

// AccountConfig returns a copy of an account's config, or nil.
func (s *Scheduler) AccountConfig(id AccountID) *statev1.AccountConfig {
	if a := s.accounts[id]; a != nil && a.cfg != nil {
		return proto.CloneOf(a.cfg)
	}
	return nil
}

// AccountConfigs returns copies of all account configs.
func (s *Scheduler) AccountConfigs() map[string]*statev1.AccountConfig {
	out := make(map[string]*statev1.AccountConfig)
	for _, a := range s.accounts {
		if a.cfg != nil {
			out[string(a.id)] = proto.CloneOf(a.cfg)
		}
	}
	return out
}

// Balance returns an account's balance and whether it has one.
func (s *Scheduler) Balance(id AccountID) (Vector, bool) {
	if a := s.accounts[id]; a != nil && a.hasBalance {
		return a.balance, true
	}
	return Vector{}, false
}

// UpdateTime advances the clock to t (SCHEDULER.md §2.1): balances recharge
// and pay for running tasks, idle workers not confirmed within
// bot_expiration and old tombstones are forgotten. A t before the clock does
// nothing; the first time ever only sets the clock.
func (s *Scheduler) UpdateTime(t time.Time) error {
	ns, err := nanos("time", t)
	if err != nil {
		return err
	}
	s.updateTime(ns)
	s.gc()
	return nil
}

func (s *Scheduler) updateTime(t int64) {
	if !s.hasClock {
		s.setClock(t)
		return
	}
	if t < s.now {
		return
	}
	e := seconds(s.now, t)
	for _, a := range s.accounts {
		if a.cfg == nil {
			if a.hasBalance {
				a.balance, a.hasBalance = Vector{}, false
				s.dirty.balance(a.id)
				s.gcAccts = append(s.gcAccts, a)
			}
			continue
		}
		if e == 0 {
			continue
		}
		for p := range NumPaidLevels {
			v := float64(a.balance[p] - float64(e*float64(len(a.running[p]))))
			if c := a.cap[p]; v < c {
				v = math.Min(float64(v+float64(e*a.rate[p])), c)
			}
			a.balance[p] = v
		}
		a.hasBalance = true
		s.dirty.balance(a.id)
	}
	s.now = t
	s.dirty.clock = true
	for s.idle.Len() > 0 {
		w := s.idle.Top()
		if s.now-w.confirmed <= s.cfg.botExpiration {
			break
		}
		s.forgetWorker(w)
	}
	s.expireTombstones()
	s.enforceMaxTombstones()
}

// Clock returns the scheduler clock and whether it is set.
func (s *Scheduler) Clock() (time.Time, bool) {
	if !s.hasClock {
		return time.Time{}, false
	}
	return Time(s.now), true
}

// Task describes a request as Swarming reports it.
type Task struct {
	ID                  RequestID
	Account             AccountID
	EnqueueTime         time.Time
	BaseLabels          []string
	ProvisionableLabels []string
	Tags                []string
}

// AddRequest reports a waiting request at time t (SCHEDULER.md §2.3). It
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
		if s.tombs.live(task.ID, t) {
			return
		}
		s.unbury(task.ID)
	case r.cls != nil: // waiting: confirm only
		if t > r.confirmed {
			r.confirmed = t
			s.dirty.request(r.id)
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
	if r := w.req; r != nil {
		s.event(EventCompleted, t, r, w, fromCallback).Reason = ReasonBotIdle
		s.stopTask(w)
		s.dropRequest(r)
		s.bury(r.id, t)
	}
	s.setWorkerLabels(w, labels)
	w.confirmed = t
	s.idle.Fix(w.idleIdx)
	s.dirty.worker(w.id)
}

// notifyRunning applies a report that request rid was running on worker
// wid at t (SCHEDULER.md §2.3). It sets the clock to t when there is none
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
		if s.tombs.live(rid, t) {
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

func (s *Scheduler) confirm(r *request, w *worker, t int64) {
	if t > r.confirmed {
		r.confirmed = t
		s.dirty.worker(w.id)
	}
	if t > w.confirmed {
		w.confirmed = t
		s.dirty.worker(w.id)
	}
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

// unassign takes back r from w, which never started it (§2.3 Unassign): w is
// forgotten, r's cost refunded and r re-enqueued unless it is too old.
func (s *Scheduler) unassign(r *request, w *worker) {
	cost := w.costAt(s.now)
	if a := r.acct; a.cfg != nil {
		a.balance = a.balance.Add(cost)
		s.dirty.balance(a.id)
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
