// Package state is the pipeline between the RPC handlers and the scheduler:
// one batcher per pool applies queued requests to the pool's scheduler state
// in batches (group commit), commits each batch's delta to the store before
// anyone gets an answer, and hands the batch's events to the event sink after
// the commit (SERVICE.md §3).
//
// A batch takes everything queued while the previous batch was committing.
// Inside it, notifications and admin mutations apply in arrival order, then
// all AssignTasks requests together as one reconciler call (one scheduling
// pass for the union of idle bots at the latest request time). A batch
// without AssignTasks still runs a pass at the scheduler's clock, so that
// preemptions are found when no bot is idle. The batch runs under the
// pipeline's own context with its own deadline, never under a caller's.
package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/proto"
)

// Errors of the pipeline; the frontend maps them to gRPC codes.
var (
	// ErrPoolNotFound: the pool does not exist.
	ErrPoolNotFound = errors.New("pool not found")
	// ErrPoolExists: CreatePool of an existing pool.
	ErrPoolExists = errors.New("pool already exists")
	// ErrOverloaded: the pool's queue is full; the caller should retry later.
	ErrOverloaded = errors.New("pool queue is full")
	// ErrUnavailable: the store could not commit (after retries) or the
	// pipeline is shutting down.
	ErrUnavailable = errors.New("unavailable")
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
	// MaxQueue bounds each pool's queue of pending requests (default 10000).
	MaxQueue int
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
	LogBytes   int
	Events     int
	Err        error
	Generation int64
}

func (o *Options) defaults() {
	if o.MaxQueue <= 0 {
		o.MaxQueue = 10000
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
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
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
	loaded bool // Load finished: a pool not in pools does not exist
	closed bool
}

// New returns a pipeline over store; Load must be called before use.
func New(store nodestore.Store, sink EventSink, opts Options) *Pipeline {
	opts.defaults()
	ctx, stop := context.WithCancel(context.Background())
	return &Pipeline{store: store, sink: sink, opts: opts, ctx: ctx, stop: stop, pools: map[string]*pool{}}
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
	st, gen, err := p.store.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	s, err := scheduler.FromProto(st)
	if err != nil {
		return nil, fmt.Errorf("%w: stored state invalid: %v", nodestore.ErrCorrupt, err)
	}
	s.TrackChanges()
	return &pool{id: id, s: s, gen: gen, queue: make(chan *op, p.opts.MaxQueue), done: make(chan struct{})}, nil
}

func (p *Pipeline) start(pl *pool) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.run(pl)
	}()
}

// Close stops accepting requests, lets every queued request finish its
// batch, and waits for the batchers.
func (p *Pipeline) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for _, pl := range p.pools {
		pl.closeQueue()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.stop()
}

// pool is one pool's committed state and batcher.
type pool struct {
	id      string
	qmu     sync.Mutex // guards sending on queue and qclosed
	queue   chan *op
	qclosed bool
	done    chan struct{} // closed when the batcher exits

	mu  sync.RWMutex // guards s and gen; readers see only committed state
	s   *scheduler.Scheduler
	gen int64

	// spareEvents is the last batch's event slice, handed back to the
	// scheduler at the next batch (only the batcher touches it).
	spareEvents []scheduler.Event

	deleted bool
}

func (pl *pool) closeQueue() {
	pl.qmu.Lock()
	defer pl.qmu.Unlock()
	if !pl.qclosed {
		pl.qclosed = true
		close(pl.queue)
	}
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

// Pools returns the ids of all pools, sorted.
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

// CreatePool creates an empty pool with default tunables.
func (p *Pipeline) CreatePool(ctx context.Context, id string) error {
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
	if err := p.store.CreatePool(ctx, id, s.ToProto()); err != nil {
		if errors.Is(err, nodestore.ErrAlreadyExists) {
			return fmt.Errorf("%w: %q", ErrPoolExists, id)
		}
		return fmt.Errorf("%w: creating pool: %v", ErrUnavailable, err)
	}
	s.TrackChanges()
	pl := &pool{id: id, s: s, gen: 1, queue: make(chan *op, p.opts.MaxQueue), done: make(chan struct{})}
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
	pl.closeQueue()
	p.mu.Unlock()
	<-pl.done
	pl.mu.Lock()
	pl.deleted = true
	pl.mu.Unlock()
	if err := p.store.DeletePool(ctx, id); err != nil && !errors.Is(err, nodestore.ErrNotFound) {
		return fmt.Errorf("%w: deleting pool: %v", ErrUnavailable, err)
	}
	return nil
}

// Read runs f on the pool's latest committed state (after catching up with
// commits of other processes). f must not keep or modify s.
func (p *Pipeline) Read(ctx context.Context, id string, f func(s *scheduler.Scheduler) error) error {
	pl, err := p.pool(id)
	if err != nil {
		return err
	}
	if err := p.catchUp(ctx, pl); err != nil {
		return err
	}
	pl.mu.RLock()
	defer pl.mu.RUnlock()
	if pl.deleted {
		return fmt.Errorf("%w: %q", ErrPoolNotFound, id)
	}
	return f(pl.s)
}

// catchUp applies log entries committed by other processes since pl.gen.
func (p *Pipeline) catchUp(ctx context.Context, pl *pool) error {
	pl.mu.RLock()
	gen := pl.gen
	pl.mu.RUnlock()
	deltas, last, err := p.store.ReadLog(ctx, pl.id, gen)
	if err != nil && !errors.Is(err, nodestore.ErrLogTruncated) {
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
	if pl.gen != gen { // someone else caught up meanwhile
		return nil
	}
	if err != nil { // truncated: reload everything
		return p.reload(ctx, pl)
	}
	return p.applyDeltas(pl, deltas, last)
}

// applyDeltas brings pl's scheduler up to generation last. pl.mu is held.
func (p *Pipeline) applyDeltas(pl *pool, deltas []*statev1.PoolDelta, last int64) error {
	st := pl.s.ToProto()
	for _, d := range deltas {
		st = nodestore.ApplyDelta(st, d)
	}
	s, err := scheduler.FromProto(proto.CloneOf(st))
	if err != nil {
		return fmt.Errorf("%w: applying committed deltas: %v", ErrUnavailable, err)
	}
	s.TrackChanges()
	pl.s, pl.gen = s, last
	return nil
}

// reload replaces pl's state with the store's. pl.mu is held.
func (p *Pipeline) reload(ctx context.Context, pl *pool) error {
	st, gen, err := p.store.Load(ctx, pl.id)
	if err != nil {
		return fmt.Errorf("%w: reloading pool: %v", ErrUnavailable, err)
	}
	s, err := scheduler.FromProto(st)
	if err != nil {
		return fmt.Errorf("%w: stored state invalid: %v", ErrUnavailable, err)
	}
	s.TrackChanges()
	pl.s, pl.gen = s, gen
	return nil
}
