package state

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
)

type opKind int

const (
	opNotify opKind = iota + 1
	opAssign
	opMutate
)

// op is one queued request.
type op struct {
	kind   opKind
	notify NotifyInput
	assign AssignInput
	mutate func(s *scheduler.Scheduler) error
	ctx    context.Context // the caller's: once it ends, the op is not applied
	size   int64           // counted against the queue's bounds
	where  uint8           // opQueued, opTaken or opGone, under the queue's lock

	res  []scheduler.TaskAssignment
	err  error
	done chan struct{}
}

// NotifyInput is one NotifyTasks call, translated.
type NotifyInput struct {
	Items []scheduler.Notification
	// TaskErrors are items that could not be applied; each is reported
	// through GetCancellations until Swarming reports the task absent.
	TaskErrors []TaskError
	IsCallback bool
	// Size is the request's encoded size (proto.Size of the decoded
	// request), which it counts against the bytes the process queues.
	Size int
}

// TaskError is a problem with one task of a NotifyTasks call.
type TaskError struct {
	Task scheduler.RequestID
	Msg  string
}

// AssignInput is one AssignTasks call.
type AssignInput struct {
	Time time.Time
	Bots []scheduler.IdleWorker
	// Size is the request's encoded size (proto.Size of the decoded
	// request), which it counts against the bytes its pool queues.
	Size int
}

// adminSize is what an admin change counts against the bytes the process
// queues: its requests are small and rare.
const adminSize = 1024

// Notify applies a NotifyTasks call; it returns when the batch holding it is
// committed.
func (p *Pipeline) Notify(ctx context.Context, poolID string, in NotifyInput) error {
	o := &op{kind: opNotify, notify: in, size: int64(in.Size)}
	_, err := p.submit(ctx, poolID, o)
	return err
}

// Assign answers an AssignTasks call after the batch holding it is committed.
func (p *Pipeline) Assign(ctx context.Context, poolID string, in AssignInput) ([]scheduler.TaskAssignment, error) {
	return p.submit(ctx, poolID, &op{kind: opAssign, assign: in, size: int64(in.Size)})
}

// Mutate applies an admin change f through the pool's batcher. f must leave
// the state unchanged when it returns an error.
func (p *Pipeline) Mutate(ctx context.Context, poolID string, f func(s *scheduler.Scheduler) error) error {
	_, err := p.submit(ctx, poolID, &op{kind: opMutate, mutate: f, size: adminSize})
	return err
}

// submit queues o and waits for its answer. A caller that leaves while o is
// still queued takes it out: it is never applied. One that leaves once o's
// batch has started gets its context's error while the batch goes on.
func (p *Pipeline) submit(ctx context.Context, poolID string, o *op) ([]scheduler.TaskAssignment, error) {
	pl, err := p.findPool(ctx, poolID)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		p.countExpired(pl, o)
		return nil, err
	}
	o.ctx = ctx
	o.done = make(chan struct{})
	if o.kind == opAssign {
		if err := p.polls.overShare(p, pl); err != nil {
			return nil, p.shed(pl, o, err)
		}
	}
	if err := pl.q.push(o); err != nil {
		if errors.Is(err, errQueueClosed) {
			return nil, fmt.Errorf("%w: %q", ErrPoolNotFound, poolID)
		}
		return nil, p.shed(pl, o, err)
	}
	if o.kind == opAssign {
		pl.pollsHeld.Add(1)
	}
	select {
	case <-o.done:
		return o.res, o.err
	case <-ctx.Done():
		if pl.q.abandon(o) {
			p.finished(pl, o)
			p.countExpired(pl, o)
		}
		return nil, ctx.Err()
	}
}

// finished notes that o, taken out of its pool's queue, was answered or
// dropped.
func (p *Pipeline) finished(pl *pool, o *op) {
	if o.kind == opAssign {
		pl.pollsHeld.Add(-1)
	}
}

// countExpired counts a request dropped unapplied because its caller had
// left.
func (p *Pipeline) countExpired(pl *pool, o *op) {
	switch o.kind {
	case opAssign:
		pl.counts.expiredPolls.Add(1)
	case opNotify:
		pl.counts.expiredNotifications.Add(1)
	default:
		pl.counts.expiredAdmin.Add(1)
	}
}

// shed answers a request its pool's queue has no room for, counts it and
// logs it (at most every ten seconds per pool, with the count since).
func (p *Pipeline) shed(pl *pool, o *op, full error) error {
	var err error
	switch o.kind {
	case opAssign:
		pl.counts.shedPolls.Add(1)
		err = fmt.Errorf("%w: pool %q: %v, the most it holds", ErrOverloaded, pl.id, full)
	case opNotify:
		pl.counts.shedNotifications.Add(1)
	default:
		pl.counts.shedAdmin.Add(1)
	}
	if o.kind != opAssign {
		err = fmt.Errorf("%w: pool %q: %v, the most it holds", ErrUnavailable, pl.id, full)
	}
	if n, ok := pl.shedLog.allow(time.Now()); ok {
		l := pl.q.state()
		p.opts.Logger.Warn("requests shed: the pool's queue is full", "pool", pl.id, "shed", n,
			"queued_polls", l.Polls, "queued_poll_bytes", l.PollBytes,
			"queued_notifications", l.Urgent, "queued_notification_bytes", l.UrgentBytes,
			"process_notification_bytes", p.notifyBytes.used(), "err", err)
	}
	return err
}

// run is a pool's batcher: it takes everything queued while the previous
// batch committed (up to MaxBatch) and runs it as one batch. While the pool
// is down it also retries restoring the committed state, with backoff.
func (p *Pipeline) run(pl *pool) {
	defer close(pl.done)
	for {
		var retry <-chan time.Time
		var timer *time.Timer
		if pl.outage != nil {
			timer = time.NewTimer(time.Until(pl.outage.retryAt))
			retry = timer.C
		}
		woken := pl.q.wait(retry, p.opts.Window, p.opts.MaxBatch)
		if timer != nil {
			timer.Stop()
		}
		if !woken {
			p.restore(pl)
			continue
		}
		batch, expired, done := pl.q.take(p.opts.MaxBatch)
		for _, o := range expired {
			// Its caller already left: applying it would be wasted work
			// (a notification comes again with Swarming's retry).
			o.err = o.ctx.Err()
			close(o.done)
			p.finished(pl, o)
			p.countExpired(pl, o)
		}
		if done {
			return
		}
		if len(batch) > 0 {
			p.runBatch(pl, batch)
		}
	}
}

func (p *Pipeline) runBatch(pl *pool, batch []*op) {
	stats := BatchStats{Pool: pl.id, Requests: len(batch)}
	if pl.outage != nil && !time.Now().Before(pl.outage.retryAt) {
		p.restore(pl)
	}
	var events []scheduler.Event
	if pl.outage != nil {
		stats.Err = pl.outage.err(pl.id)
	} else {
		events, stats.Err = p.commitBatch(pl, batch, &stats)
	}
	if pl.outage != nil && pl.outage.attempts == 0 {
		// This batch took the pool down: restore it before answering, so
		// that the retry Swarming's client makes at once finds it up.
		p.restore(pl)
	}
	for _, o := range batch {
		if stats.Err != nil {
			o.res, o.err = nil, stats.Err
		}
		close(o.done)
		p.finished(pl, o)
	}
	pl.q.done(batch)
	// Its callers have their answers: file the batch's changes in the
	// orders that reads use (scheduler.SettleOrders), before the next batch.
	pl.mu.Lock()
	if pl.s != nil {
		t0 := time.Now()
		pl.s.SettleOrders()
		stats.Settle = time.Since(t0)
	}
	pl.mu.Unlock()
	if stats.Err == nil && len(events) > 0 {
		p.logCancellations(pl.id, events)
		if p.sink != nil {
			p.emit(pl.id, events)
		}
	}
	pl.spareEvents = events
	stats.Events = len(events)
	if p.opts.OnBatch != nil {
		p.opts.OnBatch(stats)
	}
}

// commitBatch applies batch to the pool's state and commits the delta. On
// any failure, a panic included, the state that holds the uncommitted batch
// is dropped before pl.mu is released, so that nothing derived from it is
// ever answered, read or committed.
func (p *Pipeline) commitBatch(pl *pool, batch []*op, stats *BatchStats) (events []scheduler.Event, err error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			pl.counts.batchPanics.Add(1)
			err = fmt.Errorf("%w: a batch of pool %q panicked: %v", ErrInternal, pl.id, r)
			p.opts.Logger.Error("batch panicked; the pool goes back to its committed state", "pool", pl.id,
				"requests", len(batch), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			events = nil
			pl.markDown(err)
		}
	}()
	if pl.spareEvents != nil {
		pl.s.ReuseEvents(pl.spareEvents)
		pl.spareEvents = nil
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.BatchTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		stats.Assigns, stats.Passes = p.apply(pl.s, batch)
		delta := pl.s.TakeDelta()
		events = pl.s.TakeEvents()
		stats.Apply = time.Since(t0)
		if scheduler.DeltaEmpty(delta) {
			return events, nil
		}
		t1 := time.Now()
		cs, err := p.store.Commit(ctx, pl.id, pl.gen, delta)
		stats.Commit = time.Since(t1)
		p.writeDone(fmt.Sprintf("commit of pool %q", pl.id), err, nil)
		if err == nil {
			pl.gen, stats.LogBytes, stats.Generation = cs.Generation, cs.LogBytes, cs.Generation
			return events, nil
		}
		if errors.Is(err, nodestore.ErrConflict) {
			// Another process committed: take the batch back, catch up with
			// what the store holds now, under a context of its own, and
			// replay the batch on it. After CommitRetries replays the
			// callers get Unavailable (Swarming retries), but the pool,
			// caught up without the batch, stays up.
			rctx, rcancel := context.WithTimeout(p.ctx, p.opts.BatchTimeout)
			rerr := p.resolveConflict(rctx, pl)
			rcancel()
			if rerr == nil && attempt < p.opts.CommitRetries {
				continue
			}
			if rerr == nil {
				pl.counts.failedCommits.Add(1)
				p.opts.Logger.Warn("batch not committed: other processes committed first each time; its callers retry", "pool", pl.id,
					"requests", len(batch), "attempts", attempt+1)
				return nil, fmt.Errorf("%w: pool %q: other processes serving it committed first %d times in a row; retry", ErrUnavailable, pl.id, attempt+1)
			}
			err = fmt.Errorf("%v; then catching up: %v", err, rerr)
		}
		pl.counts.failedCommits.Add(1)
		p.opts.Logger.Error("batch not committed; the pool goes back to its committed state", "pool", pl.id, "requests", len(batch), "err", err)
		cause := fmt.Errorf("%w: committing a batch of pool %q: %v", ErrUnavailable, pl.id, err)
		pl.markDown(cause)
		return nil, cause
	}
}

// logCancellations logs what a committed batch makes Swarming cancel, since
// Swarming itself keeps neither our reason nor our text: each task error
// (at Warn, with its text) and the batch's preemptions (one line at Info
// with a few examples).
func (p *Pipeline) logCancellations(pool string, events []scheduler.Event) {
	var preempted int
	var examples []string
	for i := range events {
		e := &events[i]
		switch e.Type {
		case scheduler.EventTaskError:
			p.opts.Logger.Warn("task error: GetCancellations reports the task with reason ERROR until Swarming reports it absent",
				"pool", pool, "task", e.Task, "error", e.Error)
		case scheduler.EventPreempted:
			preempted++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s on %s for %s at %v", e.Task, e.Worker, e.PreemptorTask, e.Level))
			}
		}
	}
	if preempted > 0 {
		p.opts.Logger.Info("tasks preempted: GetCancellations reports them with reason PREEMPTED until Swarming reports them absent",
			"pool", pool, "preempted", preempted, "examples", examples)
	}
}

// emit hands committed events to the sink; a sink that panics loses them
// but not the pool.
func (p *Pipeline) emit(pool string, events []scheduler.Event) {
	defer func() {
		if r := recover(); r != nil {
			p.opts.Logger.Error("event sink panicked; the batch's events are lost", "pool", pool,
				"events", len(events), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
	}()
	p.sink.Emit(pool, events)
}

// validAssign checks what the scheduler would reject for the whole union.
func validAssign(in AssignInput) error {
	if err := scheduler.ValidateTime("time", in.Time); err != nil {
		return err
	}
	for i, b := range in.Bots {
		if err := scheduler.ValidateID(fmt.Sprintf("idle_bots[%d].bot_id", i), string(b.ID)); err != nil {
			return err
		}
	}
	return nil
}

// apply runs a batch on s: notifications and mutations in arrival order,
// then every AssignTasks as one reconciler call, or a pass at the clock.
func (p *Pipeline) apply(s *scheduler.Scheduler, batch []*op) (assigns, passes int) {
	var assignOps []*op
	for _, o := range batch {
		o.res, o.err = nil, nil
		switch o.kind {
		case opNotify:
			for _, n := range o.notify.Items {
				if err := s.Notify(n, o.notify.IsCallback); err != nil {
					// The frontend validated the item; what the core still
					// rejects is reported like any other task error.
					if s.SetTaskError(n.Task.ID, err.Error()) != nil {
						p.opts.Logger.Warn("notification dropped", "task", n.Task.ID, "err", err)
					}
				}
			}
			for _, te := range o.notify.TaskErrors {
				if err := s.SetTaskError(te.Task, te.Msg); err != nil {
					p.opts.Logger.Warn("task error dropped", "task", te.Task, "err", err)
				}
			}
		case opMutate:
			o.err = o.mutate(s)
		case opAssign:
			// One malformed call must not fail the union of the batch.
			if o.err = validAssign(o.assign); o.err == nil {
				assignOps = append(assignOps, o)
			}
		}
	}
	if len(assignOps) == 0 {
		if now, ok := s.Clock(); ok {
			if _, err := s.AssignTasks(now, nil); err == nil {
				passes = 1
			}
		}
		return 0, passes
	}
	// One pass for the union of idle bots at the latest request time.
	var latest time.Time
	var bots []scheduler.IdleWorker
	seen := map[scheduler.WorkerID]int{}
	for _, o := range assignOps {
		if o.assign.Time.After(latest) {
			latest = o.assign.Time
		}
		for _, b := range o.assign.Bots {
			if i, dup := seen[b.ID]; dup {
				bots[i] = b // the later poll's labels
				continue
			}
			seen[b.ID] = len(bots)
			bots = append(bots, b)
		}
	}
	out, err := s.AssignTasks(latest, bots)
	if err != nil { // cannot happen: every op was validated
		for _, o := range assignOps {
			o.err = err
		}
		return len(assignOps), 0
	}
	byBot := make(map[scheduler.WorkerID]scheduler.TaskAssignment, len(out))
	for _, a := range out {
		byBot[a.Worker] = a
	}
	for _, o := range assignOps {
		for _, b := range o.assign.Bots {
			if a, ok := byBot[b.ID]; ok {
				o.res = append(o.res, a)
			}
		}
	}
	return len(assignOps), 1
}
