// Package state is the pipeline between the RPC handlers and the scheduler:
// one batcher per pool applies queued requests to the pool's scheduler state
// in batches (group commit), commits each batch's delta to the store before
// anyone gets an answer, and hands the batch's events to the event sink after
// the commit.
//
// A pool's queue has two parts: notifications and admin changes, in arrival
// order, and polls (AssignTasks) apart, each with its own bounds, so that a
// flood of polls never sheds a notification. Polls are bounded by count and
// bytes per pool and, across the process, by a door that refuses them
// before their request is read (AdmitPoll); notifications and admin changes
// by count per pool and by bytes across the process. A batch takes
// everything queued while the previous batch was committing, every
// notification and admin change before any poll, and drops unapplied the
// requests whose caller has already left. Inside it, notifications and admin
// mutations apply in arrival order, then all AssignTasks requests together
// as one reconciler call (one scheduling pass for the union of idle bots at
// the latest request time). A batch without AssignTasks still runs a pass at
// the scheduler's clock, so that preemptions are found when no bot is idle.
// The batch runs under the pipeline's own context with its own deadline,
// never under a caller's.
//
// A batch that fails (its commit, or a panic while applying it) fails all
// its callers and its state is dropped before anyone can read it; the pool
// is down, answering ErrUnavailable, until its committed state is restored
// from the store under a context of its own, retried with backoff.
//
// The store itself is unhealthy from a failed write until a write check
// succeeds (StoreHealth, health.go), retried with backoff in the
// background, so that health recovers without traffic.
package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
)

// Errors of the pipeline; the frontend maps them to gRPC codes.
var (
	// ErrPoolNotFound: the pool does not exist.
	ErrPoolNotFound = errors.New("pool not found")
	// ErrPoolExists: CreatePool of an existing pool.
	ErrPoolExists = errors.New("pool already exists")
	// ErrOverloaded: the pool's queue of polls is full, or the process has
	// as many AssignTasks calls in flight as it takes; the caller should
	// retry later.
	ErrOverloaded = errors.New("overloaded")
	// ErrUnavailable: the store could not commit (after retries), the pool
	// is restoring its committed state after a failed batch, the pool's
	// queue of notifications or the process's bytes of them are at their
	// bound, or the pipeline is shutting down.
	ErrUnavailable = errors.New("unavailable")
	// ErrInternal: applying a batch panicked (a bug); the batch was dropped.
	ErrInternal = errors.New("internal error")
)

// EventSink receives the events of committed batches. Emit must not block
// for long (sinks buffer and write in the background), and must not keep
// the slice or its elements' slices after it returns: the pipeline reuses
// its memory for later events.
type EventSink interface {
	Emit(pool string, events []scheduler.Event)
}

// Options tune the pipeline. Zero values take the defaults.
type Options struct {
	// MaxQueue bounds each pool's queue of AssignTasks calls (default
	// 10000); beyond it they fail with ErrOverloaded.
	MaxQueue int
	// MaxQueueBytes bounds the bytes (AssignInput.Size) of each pool's
	// queued AssignTasks calls (default 64 MiB); beyond it they fail with
	// ErrOverloaded. A call larger than the bound is queued only when no
	// other poll is.
	MaxQueueBytes int64
	// MaxPollsInFlight bounds the AssignTasks calls of the process from
	// AdmitPoll to their answer (default 10000); beyond it AdmitPoll
	// fails with ErrOverloaded. While several pools poll, each may hold
	// its share of it. Negative: no bound and no shares.
	MaxPollsInFlight int64
	// MaxNotifyQueue bounds each pool's queue of NotifyTasks and admin
	// calls (default 100000); beyond it they fail with ErrUnavailable.
	MaxNotifyQueue int
	// MaxNotifyQueueBytes bounds the bytes (NotifyInput.Size) of the
	// NotifyTasks and admin calls queued or in a running batch, over every
	// pool of the process (default 256 MiB); beyond it they fail with
	// ErrUnavailable. A call larger than the bound is taken only when
	// nothing else is held.
	MaxNotifyQueueBytes int64
	// MaxBatch bounds the requests in one batch (default 5000).
	MaxBatch int
	// Window is an optional wait before a batch starts, to gather more
	// requests (default 0: group commit only).
	Window time.Duration
	// BatchTimeout bounds one batch's store work (default 30 s).
	BatchTimeout time.Duration
	// CommitRetries bounds how often a batch is replayed after another
	// process committed in between (default 3).
	CommitRetries int
	// RestoreBackoff is the wait before the second attempt to restore a
	// pool's committed state after a failed batch (the first is at once);
	// it doubles after each failed attempt up to RestoreBackoffMax
	// (defaults 100 ms and 10 s).
	RestoreBackoff, RestoreBackoffMax time.Duration
	// StoreCheckBackoff is the wait before the second background write
	// check once the store is unhealthy (the first is at once); it doubles
	// after each check up to StoreCheckBackoffMax (defaults 500 ms and
	// 10 s).
	StoreCheckBackoff, StoreCheckBackoffMax time.Duration
	// Logger for errors (default slog.Default()).
	Logger *slog.Logger
	// OnBatch, if set, is called after every batch (for metrics).
	OnBatch func(BatchStats)
}

// BatchStats describes one batch.
type BatchStats struct {
	Pool       string
	Requests   int
	Assigns    int
	Passes     int
	Apply      time.Duration // applying the requests and the pass
	Commit     time.Duration
	Settle     time.Duration // filing the batch's changes in the orders reads use, after answering
	LogBytes   int
	Events     int
	Err        error
	Generation int64
}

func (o *Options) defaults() {
	if o.MaxQueue <= 0 {
		o.MaxQueue = 10000
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = 64 << 20
	}
	if o.MaxPollsInFlight == 0 {
		o.MaxPollsInFlight = 10000
	}
	if o.MaxNotifyQueue <= 0 {
		o.MaxNotifyQueue = 100000
	}
	if o.MaxNotifyQueueBytes <= 0 {
		o.MaxNotifyQueueBytes = 256 << 20
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 5000
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 30 * time.Second
	}
	if o.CommitRetries <= 0 {
		o.CommitRetries = 3
	}
	if o.RestoreBackoff <= 0 {
		o.RestoreBackoff = 100 * time.Millisecond
	}
	if o.RestoreBackoffMax < o.RestoreBackoff {
		o.RestoreBackoffMax = max(o.RestoreBackoff, 10*time.Second)
	}
	if o.StoreCheckBackoff <= 0 {
		o.StoreCheckBackoff = 500 * time.Millisecond
	}
	if o.StoreCheckBackoffMax < o.StoreCheckBackoff {
		o.StoreCheckBackoffMax = max(o.StoreCheckBackoff, 10*time.Second)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// PoolCounters count what went wrong in one pool since it was loaded or
// created.
type PoolCounters struct {
	// Requests refused because the pool's queue was full: AssignTasks
	// (ErrOverloaded), NotifyTasks and admin changes (ErrUnavailable).
	ShedPolls, ShedNotifications, ShedAdmin int64
	// Requests dropped unapplied because their caller had left (its
	// deadline passed, or it canceled) before their batch started.
	ExpiredPolls, ExpiredNotifications, ExpiredAdmin int64
	// Batches whose commit failed, or whose application panicked.
	FailedCommits, BatchPanics int64
	// Attempts to restore the committed state that failed.
	FailedRestores int64
	// Batches whose commit found another process's commits first
	// (nodestore.ErrConflict); each is undone, caught up and replayed.
	Conflicts int64
	// Times the pool's state was rebuilt from the store rather than
	// caught up delta by delta: the log was truncated, or a delta could
	// not be applied or a batch not undone.
	Reloads int64
	// Catch-ups done as one rebuild in memory, their deltas touching many
	// times more records than the pool holds.
	Rebuilds int64
}

// poolCounters is PoolCounters, updated concurrently.
type poolCounters struct {
	shedPolls, shedNotifications, shedAdmin          atomic.Int64
	expiredPolls, expiredNotifications, expiredAdmin atomic.Int64
	failedCommits, batchPanics                       atomic.Int64
	failedRestores                                   atomic.Int64
	conflicts, reloads, rebuilds                     atomic.Int64
}

func (c *poolCounters) snapshot() PoolCounters {
	return PoolCounters{
		ShedPolls: c.shedPolls.Load(), ShedNotifications: c.shedNotifications.Load(), ShedAdmin: c.shedAdmin.Load(),
		ExpiredPolls: c.expiredPolls.Load(), ExpiredNotifications: c.expiredNotifications.Load(), ExpiredAdmin: c.expiredAdmin.Load(),
		FailedCommits: c.failedCommits.Load(), BatchPanics: c.batchPanics.Load(), FailedRestores: c.failedRestores.Load(),
		Conflicts: c.conflicts.Load(), Reloads: c.reloads.Load(), Rebuilds: c.rebuilds.Load(),
	}
}

// PoolStatus is what metrics show of one pool.
type PoolStatus struct {
	Pool string
	// Down: the pool has no trustworthy state and answers Unavailable
	// while its committed state is restored.
	Down bool
	// Requests waiting in the pool's queue, and their bytes.
	QueuedNotifications, QueuedPolls         int
	QueuedNotificationBytes, QueuedPollBytes int64
	Counters                                 PoolCounters
}

// NotifyBytes returns the bytes of notifications and admin calls the
// process holds (queued or in a running batch) and their bound.
func (p *Pipeline) NotifyBytes() (held, max int64) {
	return p.notifyBytes.used(), p.notifyBytes.max
}

// Status describes every pool, by id.
func (p *Pipeline) Status() []PoolStatus {
	var out []PoolStatus
	for _, pl := range p.sortedPools() {
		st := PoolStatus{Pool: pl.id, Counters: pl.counts.snapshot()}
		l := pl.q.state()
		st.QueuedNotifications, st.QueuedPolls = l.Urgent, l.Polls
		st.QueuedNotificationBytes, st.QueuedPollBytes = l.UrgentBytes, l.PollBytes
		pl.omu.Lock()
		st.Down = pl.outage != nil
		pl.omu.Unlock()
		out = append(out, st)
	}
	return out
}

// Pipeline serves all pools of one store.
type Pipeline struct {
	store nodestore.Store
	sink  EventSink
	opts  Options
	ctx   context.Context // lifetime of the pipeline
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex
	pools  map[string]*pool
	loaded bool // Load finished: a pool not in pools is not in the store as of then
	closed bool

	discover sync.Mutex // one caller at a time loads a pool from the store (findPool)

	health health         // whether the store takes writes (health.go)
	hwg    sync.WaitGroup // the store check goroutine

	polls       pollDoor // AssignTasks calls in flight (door.go)
	notifyBytes budget   // bytes of notifications and admin calls held
}

// New returns a pipeline over store; Load must be called before use.
func New(store nodestore.Store, sink EventSink, opts Options) *Pipeline {
	opts.defaults()
	ctx, stop := context.WithCancel(context.Background())
	p := &Pipeline{store: store, sink: sink, opts: opts, ctx: ctx, stop: stop, pools: map[string]*pool{}}
	p.polls.max = max(0, opts.MaxPollsInFlight)
	p.notifyBytes.max = opts.MaxNotifyQueueBytes
	p.health.init(time.Now())
	return p
}

// Load loads every pool of the store into memory and starts its batcher.
func (p *Pipeline) Load(ctx context.Context) error {
	ids, err := p.store.ListPools(ctx)
	if err != nil {
		return fmt.Errorf("listing pools: %w", err)
	}
	for _, id := range ids {
		pl, err := p.loadPool(ctx, id)
		if err != nil {
			return fmt.Errorf("loading pool %q: %w", id, err)
		}
		p.mu.Lock()
		p.pools[id] = pl
		p.mu.Unlock()
		p.start(pl)
	}
	p.mu.Lock()
	p.loaded = true
	p.mu.Unlock()
	return nil
}

// Ready reports whether every pool is loaded.
func (p *Pipeline) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loaded && !p.closed
}

// ErrLoading is returned (wrapping ErrUnavailable) for a pool asked for
// before the pipeline finished loading: it may exist, Swarming should retry.
var ErrLoading = fmt.Errorf("%w: pools are still loading", ErrUnavailable)

func (p *Pipeline) loadPool(ctx context.Context, id string) (*pool, error) {
	s, gen, err := p.loadState(ctx, id)
	if err != nil {
		return nil, err
	}
	return p.newPool(id, s, gen), nil
}

func (p *Pipeline) newPool(id string, s *scheduler.Scheduler, gen int64) *pool {
	l := queueLimits{polls: p.opts.MaxQueue, pollBytes: p.opts.MaxQueueBytes, urgent: p.opts.MaxNotifyQueue}
	return &pool{id: id, s: s, gen: gen, q: newQueue(l, &p.notifyBytes), done: make(chan struct{})}
}

// loadState reads a pool's committed state from the store.
func (p *Pipeline) loadState(ctx context.Context, id string) (*scheduler.Scheduler, int64, error) {
	st, gen, err := p.store.Load(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	s, err := scheduler.FromProto(st)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: stored state invalid: %v", nodestore.ErrCorrupt, err)
	}
	s.TrackChanges()
	return s, gen, nil
}

func (p *Pipeline) start(pl *pool) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.run(pl)
	}()
}

// Close stops accepting requests, lets every queued request finish its
// batch, and waits for the batchers and the store check.
func (p *Pipeline) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for _, pl := range p.pools {
		pl.q.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.stop()
	p.closeHealth()
}

// pool is one pool's committed state and batcher.
type pool struct {
	id   string
	q    *queue
	done chan struct{} // closed when the batcher exits

	mu  sync.RWMutex         // guards s, gen and deleted; readers see only committed state
	s   *scheduler.Scheduler // nil while the pool is down
	gen int64

	// outage is set while the pool has no trustworthy state (s is nil):
	// a batch failed and its committed state is not restored yet. Only the
	// batcher writes it, under omu (never held with mu by others, so that
	// Status does not wait for a commit); the batcher reads it freely.
	omu    sync.Mutex
	outage *outage

	// Only the batcher touches these.
	spareEvents []scheduler.Event // the last batch's events, reused by the next
	shedLog     rateLog

	counts poolCounters

	// For the shares of the door (door.go): when the pool last polled
	// (UnixNano), and its polls queued or in a running batch.
	lastPoll, pollsHeld atomic.Int64

	deleted bool
}

// outage describes a pool that is down.
type outage struct {
	since    time.Time
	cause    error // the failure that took the pool down
	attempts int   // restores tried
	last     error // the last restore's error
	retryAt  time.Time
	backoff  time.Duration
	gone     bool // the store no longer has the pool: another process deleted it
}

// err is what callers get while the pool is down.
func (o *outage) err(pool string) error {
	if o.gone {
		return fmt.Errorf("%w: %q (deleted by another process)", ErrPoolNotFound, pool)
	}
	return fmt.Errorf("%w: pool %q is down since %s, restoring its committed state (%d attempts); it went down after: %v",
		ErrUnavailable, pool, o.since.UTC().Format(time.RFC3339), o.attempts, o.cause)
}

// markDown drops the state, which may hold an uncommitted batch. pl.mu is
// held.
func (pl *pool) markDown(cause error) {
	pl.s = nil
	pl.omu.Lock()
	pl.outage = &outage{since: time.Now(), cause: cause}
	pl.omu.Unlock()
}

// downErr is what a caller gets while the pool is down, or nil.
func (pl *pool) downErr() error {
	pl.omu.Lock()
	defer pl.omu.Unlock()
	if pl.outage == nil {
		return nil
	}
	return pl.outage.err(pl.id)
}

// restore tries once to load the pool's committed state, under a context of
// its own. On failure the next attempt is due after a growing backoff.
func (p *Pipeline) restore(pl *pool) {
	o := pl.outage
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.BatchTimeout)
	s, gen, err := p.loadState(ctx, pl.id)
	cancel()
	if errors.Is(err, nodestore.ErrNotFound) {
		p.forgetDeleted(pl)
		return
	}
	if err == nil {
		// Logged before the pool serves again, so that the line precedes
		// everything the pool does next.
		p.opts.Logger.Info("pool available again: its committed state is restored", "pool", pl.id,
			"generation", gen, "attempts", o.attempts+1, "down_for", time.Since(o.since))
		pl.mu.Lock()
		pl.s, pl.gen = s, gen
		pl.omu.Lock()
		pl.outage = nil
		pl.omu.Unlock()
		pl.mu.Unlock()
		pl.spareEvents = nil
		return
	}
	pl.omu.Lock()
	o.attempts++
	o.last = err
	o.backoff = min(max(2*o.backoff, p.opts.RestoreBackoff), p.opts.RestoreBackoffMax)
	// Up to a fifth less, so that pools that went down together do not
	// retry together.
	wait := o.backoff - time.Duration(rand.Int64N(int64(o.backoff)/5+1))
	o.retryAt = time.Now().Add(wait)
	pl.omu.Unlock()
	pl.counts.failedRestores.Add(1)
	p.opts.Logger.Error("pool unavailable: restoring its committed state failed", "pool", pl.id,
		"attempt", o.attempts, "retry_in", wait, "down_since", o.since, "err", err)
}

// PoolOutage describes a pool that cannot serve.
type PoolOutage struct {
	Pool     string
	Since    time.Time
	Cause    error // what took it down
	Attempts int   // restores tried so far
	Last     error // the last restore's error
}

// Outages lists the pools that are down, by id.
func (p *Pipeline) Outages() []PoolOutage {
	var out []PoolOutage
	for _, pl := range p.sortedPools() {
		pl.omu.Lock()
		if o := pl.outage; o != nil {
			out = append(out, PoolOutage{Pool: pl.id, Since: o.since, Cause: o.cause, Attempts: o.attempts, Last: o.last})
		}
		pl.omu.Unlock()
	}
	return out
}

// rateLog lets a log line through at most every ten seconds (or every) and
// counts what it held back.
type rateLog struct {
	mu    sync.Mutex
	every time.Duration // 0: ten seconds
	last  time.Time
	held  int
}

// allow reports whether to log now, and how many events the line stands for.
func (r *rateLog) allow(now time.Time) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held++
	every := r.every
	if every == 0 {
		every = 10 * time.Second
	}
	if !r.last.IsZero() && now.Sub(r.last) < every {
		return 0, false
	}
	n := r.held
	r.last, r.held = now, 0
	return n, true
}

func (p *Pipeline) pool(id string) (*pool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrUnavailable
	}
	pl := p.pools[id]
	if pl == nil {
		if !p.loaded {
			return nil, ErrLoading
		}
		return nil, fmt.Errorf("%w: %q", ErrPoolNotFound, id)
	}
	return pl, nil
}

// findPool returns the pool id. A pool this process does not hold may have
// been created by another process serving the same store since this one
// loaded its pools: if the store has it, it is loaded and served from then
// on. A store that cannot be asked gives ErrUnavailable, so that the
// caller retries rather than taking the pool for absent.
func (p *Pipeline) findPool(ctx context.Context, id string) (*pool, error) {
	pl, err := p.pool(id)
	if !errors.Is(err, ErrPoolNotFound) {
		return pl, err
	}
	p.discover.Lock()
	defer p.discover.Unlock()
	if pl, err := p.pool(id); !errors.Is(err, ErrPoolNotFound) {
		return pl, err // another caller loaded it meanwhile
	}
	if nodestore.CheckPoolID(id) != nil {
		return nil, err // no store holds such a pool
	}
	npl, lerr := p.loadPool(ctx, id)
	if errors.Is(lerr, nodestore.ErrNotFound) {
		return nil, err
	}
	if lerr != nil {
		return nil, fmt.Errorf("%w: looking for pool %q in the store: %v", ErrUnavailable, id, lerr)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrUnavailable
	}
	p.pools[id] = npl
	p.mu.Unlock()
	p.start(npl)
	p.opts.Logger.Info("serving a pool another process created", "pool", id, "generation", npl.gen)
	return npl, nil
}

// forgetDeleted stops serving pl, which the store no longer has: another
// process deleted it. Its queued requests and later ones get
// ErrPoolNotFound. Called by pl's batcher.
func (p *Pipeline) forgetDeleted(pl *pool) {
	p.mu.Lock()
	if p.pools[pl.id] == pl {
		delete(p.pools, pl.id)
	}
	p.mu.Unlock()
	pl.q.close()
	pl.mu.Lock()
	pl.deleted, pl.s = true, nil
	pl.mu.Unlock()
	pl.omu.Lock()
	if pl.outage == nil {
		pl.outage = &outage{since: time.Now()}
	}
	wasGone := pl.outage.gone
	pl.outage.gone = true
	pl.outage.retryAt = time.Now().Add(p.opts.RestoreBackoffMax)
	pl.omu.Unlock()
	if !wasGone {
		p.opts.Logger.Info("pool deleted by another process: no longer served", "pool", pl.id)
	}
}

// ListPools returns the ids of the pools the store holds, sorted: those of
// every process serving it, including pools this one has not served yet.
func (p *Pipeline) ListPools(ctx context.Context) ([]string, error) {
	if !p.Ready() {
		return nil, ErrLoading
	}
	ids, err := p.store.ListPools(ctx)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("%w: listing pools: %v", ErrUnavailable, err)
	}
	return ids, nil
}

// Pools returns the ids of the pools this process serves, sorted.
func (p *Pipeline) Pools() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.pools))
	for id := range p.pools {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// sortedPools returns the pools, by id.
func (p *Pipeline) sortedPools() []*pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.SortedFunc(maps.Values(p.pools), func(a, b *pool) int { return strings.Compare(a.id, b.id) })
}

// ValidatePoolID checks a pool id by the rule stores apply
// (nodestore.CheckPoolID); the error wraps scheduler.ErrInvalidArgument and
// names field.
func ValidatePoolID(field, id string) error {
	if err := nodestore.CheckPoolID(id); err != nil {
		return fmt.Errorf("%w: %s: %v", scheduler.ErrInvalidArgument, field, err)
	}
	return nil
}

// CreatePool creates an empty pool with default tunables.
func (p *Pipeline) CreatePool(ctx context.Context, id string) error {
	if err := ValidatePoolID("pool id", id); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrUnavailable
	}
	if !p.loaded {
		return ErrLoading
	}
	if p.pools[id] != nil {
		return fmt.Errorf("%w: %q", ErrPoolExists, id)
	}
	s, err := scheduler.New(nil)
	if err != nil {
		return err
	}
	err = p.store.CreatePool(ctx, id, s.ToProto())
	p.writeDone(fmt.Sprintf("creating pool %q", id), err, ctx)
	if err != nil {
		if errors.Is(err, nodestore.ErrAlreadyExists) {
			return fmt.Errorf("%w: %q", ErrPoolExists, id)
		}
		return fmt.Errorf("%w: creating pool: %v", ErrUnavailable, err)
	}
	s.TrackChanges()
	pl := p.newPool(id, s, 1)
	p.pools[id] = pl
	p.start(pl)
	return nil
}

// DeletePool removes a pool and its stored state. Requests queued for it
// fail with ErrPoolNotFound.
func (p *Pipeline) DeletePool(ctx context.Context, id string) error {
	p.mu.Lock()
	pl := p.pools[id]
	if p.closed {
		p.mu.Unlock()
		return ErrUnavailable
	}
	if pl == nil {
		p.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrPoolNotFound, id)
	}
	delete(p.pools, id)
	pl.q.close()
	p.mu.Unlock()
	<-pl.done
	pl.mu.Lock()
	pl.deleted = true
	pl.mu.Unlock()
	err := p.store.DeletePool(ctx, id)
	p.writeDone(fmt.Sprintf("deleting pool %q", id), err, ctx)
	if err != nil && !errors.Is(err, nodestore.ErrNotFound) {
		return fmt.Errorf("%w: deleting pool: %v", ErrUnavailable, err)
	}
	return nil
}

// Read runs f on the pool's latest committed state (after catching up with
// commits of other processes). f must not keep or modify s.
func (p *Pipeline) Read(ctx context.Context, id string, f func(s *scheduler.Scheduler) error) error {
	pl, err := p.findPool(ctx, id)
	if err != nil {
		return err
	}
	if err := p.catchUp(ctx, pl); err != nil {
		return err
	}
	pl.mu.RLock()
	for pl.s != nil && !pl.s.OrdersSettled() {
		// A reader that comes between a batch's answers and its settling
		// settles for the batcher, under the exclusive lock: settling writes.
		pl.mu.RUnlock()
		pl.mu.Lock()
		if pl.s != nil {
			pl.s.SettleOrders()
		}
		pl.mu.Unlock()
		pl.mu.RLock()
	}
	defer pl.mu.RUnlock()
	switch {
	case pl.deleted:
		return fmt.Errorf("%w: %q", ErrPoolNotFound, id)
	case pl.s == nil:
		return pl.downErr()
	}
	return f(pl.s)
}

// catchUp applies log entries committed by other processes since pl.gen.
// A caller whose context ends gets its context's error.
func (p *Pipeline) catchUp(ctx context.Context, pl *pool) error {
	pl.mu.RLock()
	gen, down := pl.gen, pl.s == nil
	pl.mu.RUnlock()
	if down {
		return nil // Read answers for the outage
	}
	deltas, last, err := p.store.ReadLog(ctx, pl.id, gen)
	if err != nil && !errors.Is(err, nodestore.ErrLogTruncated) {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if errors.Is(err, nodestore.ErrNotFound) {
			return fmt.Errorf("%w: %q", ErrPoolNotFound, pl.id)
		}
		return fmt.Errorf("%w: reading the log: %v", ErrUnavailable, err)
	}
	if err == nil && len(deltas) == 0 {
		return nil
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.gen != gen || pl.s == nil { // the batcher moved on meanwhile
		return nil
	}
	if err == nil && p.applyDeltas(pl, deltas, last) == nil {
		return nil
	}
	// The log was truncated, or a delta could not be applied: reload.
	if err := p.reload(ctx, pl); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: reloading pool: %v", ErrUnavailable, err)
	}
	return nil
}

// applyDeltas brings pl's scheduler from pl.gen up to generation last by
// applying, in order, the deltas committed since, in proportion to their
// size (scheduler.ApplyDelta). Deltas that touch many times more records
// than the pool holds (a replica that was away for thousands of commits)
// cost less as one rebuild in memory (rebuildCheaper). pl.mu is held. On an
// error pl is at the generation of the last delta applied, and the caller
// reloads.
func (p *Pipeline) applyDeltas(pl *pool, deltas []*statev1.PoolDelta, last int64) error {
	if pl.gen+int64(len(deltas)) != last {
		return fmt.Errorf("%d deltas from generation %d do not end at %d", len(deltas), pl.gen, last)
	}
	if rebuildCheaper(pl.s, deltas) {
		sh := nodestore.NewShadow(pl.s.ToProto())
		for _, d := range deltas {
			sh.Apply(d)
		}
		s, err := scheduler.FromProto(sh.State())
		if err != nil {
			p.opts.Logger.Error("committed deltas do not rebuild the pool; reloading it", "pool", pl.id, "generation", last, "err", err)
			return err
		}
		s.TrackChanges()
		pl.s, pl.gen = s, last
		pl.counts.rebuilds.Add(1)
		return nil
	}
	for _, d := range deltas {
		if err := pl.s.ApplyDelta(d); err != nil {
			p.opts.Logger.Error("a committed delta does not apply to the live state; reloading the pool", "pool", pl.id,
				"generation", pl.gen+1, "err", err)
			return err
		}
		pl.gen++
	}
	return nil
}

// rebuildCheaper reports whether applying deltas one by one to s would
// cost more than rebuilding s from its state with the deltas applied. On
// the lab workload a record costs ApplyDelta about 1.2-1.9 µs and a
// rebuild about 7 µs per request or worker (docs/performance.md); the
// floor keeps small catch-ups of small pools on ApplyDelta.
func rebuildCheaper(s *scheduler.Scheduler, deltas []*statev1.PoolDelta) bool {
	records := 0
	for _, d := range deltas {
		records += nodestore.DeltaRecords(d)
	}
	v := s.View(0)
	return records > rebuildFloor+4*(v.NumWaiting+v.NumRunning+v.NumIdle)
}

// rebuildFloor is the number of records below which deltas are always
// applied one by one.
const rebuildFloor = 10000

// reload replaces pl's state with the committed one from the store. pl.mu
// is held; on an error pl keeps its state, a committed one.
func (p *Pipeline) reload(ctx context.Context, pl *pool) error {
	s, gen, err := p.loadState(ctx, pl.id)
	if err != nil {
		return err
	}
	pl.counts.reloads.Add(1)
	pl.s, pl.gen = s, gen
	return nil
}

// resolveConflict makes pl's state the committed one after its batch's
// commit found other processes' commits: the batch is undone
// (scheduler.UndoDelta) and the other commits applied, each in proportion
// to its size; when either cannot be done, the committed state is
// reloaded. pl.mu is held.
func (p *Pipeline) resolveConflict(ctx context.Context, pl *pool) error {
	pl.counts.conflicts.Add(1)
	if err := pl.s.UndoDelta(); err == nil {
		deltas, last, err := p.store.ReadLog(ctx, pl.id, pl.gen)
		if err == nil && p.applyDeltas(pl, deltas, last) == nil {
			return nil
		}
	}
	return p.reload(ctx, pl)
}
