package state

import (
	"context"
	"errors"
	"fmt"
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
}

// Notify applies a NotifyTasks call; it returns when the batch holding it is
// committed.
func (p *Pipeline) Notify(ctx context.Context, poolID string, in NotifyInput) error {
	o := &op{kind: opNotify, notify: in}
	_, err := p.submit(ctx, poolID, o)
	return err
}

// Assign answers an AssignTasks call after the batch holding it is committed.
func (p *Pipeline) Assign(ctx context.Context, poolID string, in AssignInput) ([]scheduler.TaskAssignment, error) {
	return p.submit(ctx, poolID, &op{kind: opAssign, assign: in})
}

// Mutate applies an admin change f through the pool's batcher. f must leave
// the state unchanged when it returns an error.
func (p *Pipeline) Mutate(ctx context.Context, poolID string, f func(s *scheduler.Scheduler) error) error {
	_, err := p.submit(ctx, poolID, &op{kind: opMutate, mutate: f})
	return err
}

func (p *Pipeline) submit(ctx context.Context, poolID string, o *op) ([]scheduler.TaskAssignment, error) {
	pl, err := p.pool(poolID)
	if err != nil {
		return nil, err
	}
	o.done = make(chan struct{})
	pl.qmu.Lock()
	if pl.qclosed {
		pl.qmu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrPoolNotFound, poolID)
	}
	select {
	case pl.queue <- o:
		pl.qmu.Unlock()
	default:
		pl.qmu.Unlock()
		return nil, fmt.Errorf("%w: %d requests queued for pool %q", ErrOverloaded, cap(pl.queue), poolID)
	}
	select {
	case <-o.done:
		return o.res, o.err
	case <-ctx.Done():
		// The batch goes on without this caller.
		return nil, ctx.Err()
	}
}

// run is a pool's batcher: it takes everything queued while the previous
// batch committed (up to MaxBatch) and runs it as one batch.
func (p *Pipeline) run(pl *pool) {
	defer close(pl.done)
	for {
		first, ok := <-pl.queue
		if !ok {
			return
		}
		p.runBatch(pl, p.collect(pl, first))
	}
}

// collect gathers the batch started by first: everything already queued
// (group commit), and during the optional window whatever arrives, up to
// MaxBatch.
func (p *Pipeline) collect(pl *pool, first *op) []*op {
	batch := []*op{first}
	var window <-chan time.Time
	if w := p.opts.Window; w > 0 {
		timer := time.NewTimer(w)
		defer timer.Stop()
		window = timer.C
	}
	for len(batch) < p.opts.MaxBatch {
		if window == nil { // take only what is queued
			select {
			case o, ok := <-pl.queue:
				if !ok {
					return batch
				}
				batch = append(batch, o)
				continue
			default:
				return batch
			}
		}
		select {
		case o, ok := <-pl.queue:
			if !ok {
				return batch
			}
			batch = append(batch, o)
		case <-window:
			window = nil
		}
	}
	return batch

}

func (p *Pipeline) runBatch(pl *pool, batch []*op) {
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.BatchTimeout)
	defer cancel()
	stats := BatchStats{Pool: pl.id, Requests: len(batch)}
	var events []scheduler.Event
	committed := false
	pl.mu.Lock()
	if pl.spareEvents != nil {
		pl.s.ReuseEvents(pl.spareEvents)
		pl.spareEvents = nil
	}
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		stats.Assigns, stats.Passes = p.apply(pl.s, batch)
		delta := pl.s.TakeDelta()
		events = pl.s.TakeEvents()
		stats.Apply = time.Since(t0)
		if scheduler.DeltaEmpty(delta) {
			committed = true
			break
		}
		t1 := time.Now()
		cs, err := p.store.Commit(ctx, pl.id, pl.gen, delta)
		stats.Commit = time.Since(t1)
		if err == nil {
			pl.gen, stats.LogBytes, stats.Generation = cs.Generation, cs.LogBytes, cs.Generation
			committed = true
			break
		}
		// The state holds the uncommitted batch: go back to the committed
		// state. After a conflict (another process committed), replay the
		// batch on the caught-up state.
		rerr := p.reload(ctx, pl)
		if errors.Is(err, nodestore.ErrConflict) && rerr == nil && attempt < p.opts.CommitRetries {
			continue
		}
		if rerr != nil {
			p.opts.Logger.Error("pool state could not be reloaded after a failed commit", "pool", pl.id, "err", rerr)
		}
		stats.Err = fmt.Errorf("%w: committing: %v", ErrUnavailable, err)
		p.opts.Logger.Error("batch not committed", "pool", pl.id, "requests", len(batch), "err", err)
		break
	}
	pl.mu.Unlock()
	for _, o := range batch {
		if !committed {
			o.res, o.err = nil, stats.Err
		}
		close(o.done)
	}
	if committed && len(events) > 0 && p.sink != nil {
		p.sink.Emit(pl.id, events)
	}
	pl.spareEvents = events
	stats.Events = len(events)
	if p.opts.OnBatch != nil {
		p.opts.OnBatch(stats)
	}
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
