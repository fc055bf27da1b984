package scheduler

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// ToProto returns the whole state as a message; every list is sorted by id,
// so equal states give equal messages. Label lists are shared with the state
// and must not be modified.
//
// The message holds the configuration as set (tunables left unset stay
// unset and take their defaults, with every account's configuration), the
// clock (unset until the first time-carrying input), the balances (five
// doubles, so that the float64 values survive), the waiting requests
// (account, enqueue and confirmed times, sorted label sets), the workers
// (labels, confirmed time and, for a running one, its request, level, cost
// at level_since and level_since), the tombstones, the pending entries and
// the task errors. A running cost is derived from (cost, level, since)
// (worker.costAt), so advancing the clock changes only the clock, the
// balances and what expires; no task record is rewritten. Nothing derived
// is stored: label ids, classes, indexes, counters, epochs and scratch are
// rebuilt by FromProto, in O(size · log size), and events are not state.
// ToProto(FromProto(x)) equals x for every canonical x, and
// FromProto(ToProto(s)) behaves exactly like s.
func (s *Scheduler) ToProto() *statev1.PoolState {
	st := &statev1.PoolState{Config: s.configProto()}
	if s.hasClock {
		st.LastUpdateUnixNanos = proto.Int64(s.now)
	}
	for _, a := range s.sortedAccounts() {
		if a.hasBalance {
			st.Balances = append(st.Balances, &statev1.AccountBalance{AccountId: string(a.id), Value: slices.Clone(a.balance[:])})
		}
	}
	st.Waiting = make([]*statev1.Request, 0, s.nWaiting)
	st.Workers = make([]*statev1.Worker, 0, len(s.workers))
	s.requests.All(func(r *request) {
		if r.cls != nil {
			st.Waiting = append(st.Waiting, r.toProto())
		}
	})
	slices.SortFunc(st.Waiting, func(a, b *statev1.Request) int { return strings.Compare(a.Id, b.Id) })
	for _, w := range s.workers {
		st.Workers = append(st.Workers, w.toProto())
	}
	slices.SortFunc(st.Workers, func(a, b *statev1.Worker) int { return strings.Compare(a.Id, b.Id) })
	for _, id := range slices.Sorted(maps.Keys(s.tombstones.byID)) {
		st.Tombstones = append(st.Tombstones, &statev1.Tombstone{RequestId: string(id), FinishTimeUnixNanos: s.tombstones.byID[id].finish})
	}
	for _, wid := range slices.Sorted(maps.Keys(s.reconciler.entries)) {
		st.Pending = append(st.Pending, s.reconciler.entries[wid].toProto())
	}
	for _, id := range slices.Sorted(maps.Keys(s.reconciler.errors)) {
		st.TaskErrors = append(st.TaskErrors, &statev1.TaskError{TaskId: string(id), Error: s.reconciler.errors[id]})
	}
	return st
}

func (s *Scheduler) configProto() *statev1.PoolConfig {
	c := proto.CloneOf(s.tunablesProto)
	for _, a := range s.accounts {
		if a.cfg != nil {
			if c.AccountConfigs == nil {
				c.AccountConfigs = make(map[string]*statev1.AccountConfig)
			}
			c.AccountConfigs[string(a.id)] = proto.CloneOf(a.cfg)
		}
	}
	return c
}

func (r *request) toProto() *statev1.Request {
	return &statev1.Request{
		Id:                     string(r.id),
		AccountId:              string(r.acct.id),
		EnqueueTimeUnixNanos:   r.enqueue,
		BaseLabels:             slices.Clip(r.base.names),
		ProvisionableLabels:    slices.Clip(r.prov.names),
		ConfirmedTimeUnixNanos: r.confirmed,
	}
}

func (w *worker) toProto() *statev1.Worker {
	pw := &statev1.Worker{Id: string(w.id), Labels: slices.Clip(w.names), ConfirmedTimeUnixNanos: w.confirmed}
	if w.req != nil {
		pw.Running = &statev1.RunningTask{
			Request:             w.req.toProto(),
			Priority:            int32(w.level),
			Cost:                slices.Clone(w.cost[:]),
			LevelSinceUnixNanos: w.since,
		}
	}
	return pw
}

func (e *pendingEntry) toProto() *statev1.PendingAssignment {
	return &statev1.PendingAssignment{WorkerId: string(e.worker), TimeUnixNanos: e.time, TaskToAssign: string(e.assign), TaskToAbort: string(e.abort)}
}

// FromProto rebuilds a state from a message, checking it: ids valid and
// unique, a request either waiting or running once and never also
// tombstoned, levels 0..5, vectors of at most 5 finite values (missing values
// are 0), times in range, no running task changed level after the clock. The
// message is not retained.
func FromProto(st *statev1.PoolState) (*Scheduler, error) {
	if st == nil {
		return nil, invalidf("state: missing")
	}
	if err := ValidatePoolConfig(st.GetConfig()); err != nil {
		return nil, err
	}
	s := newEmpty()
	cfg := proto.CloneOf(st.GetConfig())
	if cfg == nil {
		cfg = &statev1.PoolConfig{}
	}
	accts := cfg.AccountConfigs
	cfg.AccountConfigs = nil
	s.tunablesProto, s.cfg = cfg, tunablesOf(cfg)
	for _, id := range slices.Sorted(maps.Keys(accts)) {
		a := s.account(AccountID(id))
		s.setAccountConfig(a, accts[id])
		a.hasBalance = true
	}
	if st.LastUpdateUnixNanos != nil {
		t := *st.LastUpdateUnixNanos
		if err := checkTime("last_update", t); err != nil {
			return nil, err
		}
		s.hasClock, s.now = true, t
	}
	for i, b := range st.Balances {
		field := fmt.Sprintf("balances[%d]", i)
		v, err := checkBalance(fieldName{sub: field}, b)
		if err != nil {
			return nil, err
		}
		a := s.account(AccountID(b.AccountId))
		if a.balanceSeen {
			return nil, invalidf("%s: duplicate account %q", field, b.AccountId)
		}
		a.balanceSeen = true
		a.balance, a.hasBalance = v, true
	}
	for i, w := range st.Workers {
		if err := s.loadWorker(fmt.Sprintf("workers[%d]", i), w); err != nil {
			return nil, err
		}
	}
	for i, r := range st.Waiting {
		field := fmt.Sprintf("waiting[%d]", i)
		if err := checkRequest(fieldName{sub: field}, r); err != nil {
			return nil, err
		}
		if s.requests.Get(RequestID(r.Id)) != nil {
			return nil, invalidf("%s: request %q appears twice", field, r.Id)
		}
		s.enqueue(s.newRequestOf(r))
	}
	for i, t := range st.Tombstones {
		field := fmt.Sprintf("tombstones[%d]", i)
		if err := checkTombstone(fieldName{sub: field}, t); err != nil {
			return nil, err
		}
		if s.requests.Get(RequestID(t.RequestId)) != nil {
			return nil, invalidf("%s: request %q is still known", field, t.RequestId)
		}
		if s.tombstones.byID[RequestID(t.RequestId)] != nil {
			return nil, invalidf("%s: duplicate request %q", field, t.RequestId)
		}
		s.putTombstone(RequestID(t.RequestId), t.FinishTimeUnixNanos)
	}
	for i, e := range st.Pending {
		field := fmt.Sprintf("pending[%d]", i)
		if err := checkPending(fieldName{sub: field}, e); err != nil {
			return nil, err
		}
		if s.reconciler.entries[WorkerID(e.WorkerId)] != nil {
			return nil, invalidf("%s: duplicate worker %q", field, e.WorkerId)
		}
		s.setEntry(entryOf(e))
	}
	for i, e := range st.TaskErrors {
		field := fmt.Sprintf("task_errors[%d]", i)
		if err := checkTaskError(fieldName{sub: field}, e); err != nil {
			return nil, err
		}
		if _, dup := s.reconciler.errors[RequestID(e.TaskId)]; dup {
			return nil, invalidf("%s: duplicate task %q", field, e.TaskId)
		}
		s.reconciler.errors[RequestID(e.TaskId)] = e.Error
	}
	for _, a := range s.accounts {
		a.balanceSeen = false
	}
	s.gc()
	s.SettleOrders()
	return s, nil
}

// The checks of records name the record in errors by field, formatted
// only when an error is reported, so that checking a valid delta
// allocates nothing.

// fieldName names a record or its part in errors: list[i]sub, or sub
// alone when list is empty.
type fieldName struct {
	list string
	i    int
	sub  string
}

func (f fieldName) String() string {
	if f.list == "" {
		return f.sub
	}
	return fmt.Sprintf("%s[%d]%s", f.list, f.i, f.sub)
}

// checkRequest checks a request record.
func checkRequest(field fieldName, r *statev1.Request) error {
	switch {
	case r == nil:
		return invalidf("%s: missing", field)
	case ValidateID("", r.Id) != nil:
		return ValidateID(field.String()+".id", r.Id)
	case r.AccountId != "" && ValidateID("", r.AccountId) != nil:
		return ValidateID(field.String()+".account_id", r.AccountId)
	case checkTime("", r.EnqueueTimeUnixNanos) != nil:
		return checkTime(field.String()+".enqueue_time", r.EnqueueTimeUnixNanos)
	case checkTime("", r.ConfirmedTimeUnixNanos) != nil:
		return checkTime(field.String()+".confirmed_time", r.ConfirmedTimeUnixNanos)
	}
	return nil
}

// newRequestOf creates the request of a checked record (not yet waiting or
// running).
func (s *Scheduler) newRequestOf(r *statev1.Request) *request {
	return s.newRequest(RequestID(r.Id), AccountID(r.AccountId), r.EnqueueTimeUnixNanos, r.ConfirmedTimeUnixNanos, r.BaseLabels, r.ProvisionableLabels)
}

// checkWorker checks a worker record against a state whose clock is now
// (none unless hasClock), and returns its running task's cost.
func checkWorker(field fieldName, pw *statev1.Worker, hasClock bool, now int64) (Vector, error) {
	switch {
	case pw == nil:
		return Vector{}, invalidf("%s: missing", field)
	case ValidateID("", pw.Id) != nil:
		return Vector{}, ValidateID(field.String()+".id", pw.Id)
	case checkTime("", pw.ConfirmedTimeUnixNanos) != nil:
		return Vector{}, checkTime(field.String()+".confirmed_time", pw.ConfirmedTimeUnixNanos)
	}
	rt := pw.Running
	if rt == nil {
		return Vector{}, nil
	}
	switch {
	case rt.Priority < 0 || rt.Priority > int32(FreeBucket):
		return Vector{}, invalidf("%s.running.priority: %d not in 0..5", field, rt.Priority)
	case !hasClock:
		return Vector{}, invalidf("%s.running: a running task needs the clock to be set", field)
	case checkTime("", rt.LevelSinceUnixNanos) != nil:
		return Vector{}, checkTime(field.String()+".running.level_since", rt.LevelSinceUnixNanos)
	case rt.LevelSinceUnixNanos > now:
		return Vector{}, invalidf("%s.running.level_since: after the clock", field)
	}
	cost, err := vectorFromFloat64("", rt.Cost, false)
	if err != nil {
		_, err = vectorFromFloat64(field.String()+".running.cost", rt.Cost, false)
		return Vector{}, err
	}
	return cost, checkRequest(fieldName{field.list, field.i, field.sub + ".running.request"}, rt.Request)
}

func (s *Scheduler) loadWorker(field string, pw *statev1.Worker) error {
	cost, err := checkWorker(fieldName{sub: field}, pw, s.hasClock, s.now)
	if err != nil {
		return err
	}
	if s.workers[WorkerID(pw.Id)] != nil {
		return invalidf("%s: worker %q appears twice", field, pw.Id)
	}
	if rt := pw.Running; rt != nil && s.requests.Get(RequestID(rt.Request.Id)) != nil {
		return invalidf("%s.running.request: request %q appears twice", field, rt.Request.Id)
	}
	s.putWorker(pw, cost, s.newRequestOf)
	return nil
}

// putWorker makes the worker of a checked record. A worker of its id that
// runs a task runs the record's (sameTask; ApplyDelta keeps it): it takes
// the record's level, cost and confirmed times in place. Otherwise the
// worker is a new one, or the idle worker of its id given the record's
// labels and confirmed time, and the record's running task starts on it; request gives that request (not waiting or running).
func (s *Scheduler) putWorker(pw *statev1.Worker, cost Vector, request func(*statev1.Request) *request) {
	w := s.workers[WorkerID(pw.Id)]
	switch {
	case w == nil:
		w = s.newWorker(WorkerID(pw.Id), pw.Labels, pw.ConfirmedTimeUnixNanos)
	case w.req != nil:
		rt := pw.Running
		r := s.detach(w)
		r.confirmed, w.confirmed = rt.Request.ConfirmedTimeUnixNanos, pw.ConfirmedTimeUnixNanos
		s.attach(w, r, Priority(rt.Priority), cost)
		w.since = rt.LevelSinceUnixNanos
		return
	default:
		s.setWorkerLabels(w, pw.Labels)
		s.setIdleConfirmed(w, pw.ConfirmedTimeUnixNanos)
	}
	if rt := pw.Running; rt != nil {
		s.startTask(w, request(rt.Request), Priority(rt.Priority), cost)
		w.since = rt.LevelSinceUnixNanos
	}
}

// checkBalance checks a balance record and returns its value.
func checkBalance(field fieldName, b *statev1.AccountBalance) (Vector, error) {
	switch {
	case b == nil:
		return Vector{}, invalidf("%s: missing", field)
	case ValidateID("", b.AccountId) != nil:
		return Vector{}, ValidateID(field.String()+".account_id", b.AccountId)
	}
	v, err := vectorFromFloat64("", b.Value, true)
	if err != nil {
		_, err = vectorFromFloat64(field.String()+".value", b.Value, true)
	}
	return v, err
}

func checkTombstone(field fieldName, t *statev1.Tombstone) error {
	switch {
	case t == nil:
		return invalidf("%s: missing", field)
	case ValidateID("", t.RequestId) != nil:
		return ValidateID(field.String()+".request_id", t.RequestId)
	case checkTime("", t.FinishTimeUnixNanos) != nil:
		return checkTime(field.String()+".finish_time", t.FinishTimeUnixNanos)
	}
	return nil
}

func checkPending(field fieldName, e *statev1.PendingAssignment) error {
	switch {
	case e == nil:
		return invalidf("%s: missing", field)
	case ValidateID("", e.WorkerId) != nil:
		return ValidateID(field.String()+".worker_id", e.WorkerId)
	case ValidateID("", e.TaskToAssign) != nil:
		return ValidateID(field.String()+".task_to_assign", e.TaskToAssign)
	case e.TaskToAbort != "" && ValidateID("", e.TaskToAbort) != nil:
		return ValidateID(field.String()+".task_to_abort", e.TaskToAbort)
	case checkTime("", e.TimeUnixNanos) != nil:
		return checkTime(field.String()+".time", e.TimeUnixNanos)
	}
	return nil
}

// entryOf is the pending entry of a checked record.
func entryOf(e *statev1.PendingAssignment) *pendingEntry {
	return &pendingEntry{worker: WorkerID(e.WorkerId), time: e.TimeUnixNanos, assign: RequestID(e.TaskToAssign), abort: RequestID(e.TaskToAbort)}
}

func checkTaskError(field fieldName, e *statev1.TaskError) error {
	switch {
	case e == nil:
		return invalidf("%s: missing", field)
	case ValidateID("", e.TaskId) != nil:
		return ValidateID(field.String()+".task_id", e.TaskId)
	}
	return nil
}

func checkTime(field string, t int64) error {
	if t < minTime || t > maxTime {
		return invalidf("%s: %d out of range", field, t)
	}
	return nil
}

func vectorFromFloat64(field string, v []float64, allowNegative bool) (Vector, error) {
	var out Vector
	if len(v) > NumPaidLevels {
		return out, invalidf("%s: %d values, at most %d allowed", field, len(v), NumPaidLevels)
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) || (!allowNegative && x < 0) {
			return out, invalidf("%s[%d]: %v is not allowed", field, i, x)
		}
		out[i] = x
	}
	return out, nil
}
