// Package upkeep is the background work the stores share: the policy that
// decides when a pool is due a snapshot, and the goroutine that takes the
// snapshots of the pools marked due and, periodically, checks every pool
// and collects garbage.
package upkeep

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
)

// Defaults of the stores' snapshot and collection options.
const (
	DefaultSnapshotEvery = 20000
	DefaultSnapshotBytes = 8 << 20
	DefaultGCLag         = 10 * time.Minute
	DefaultMaintainEvery = time.Minute
)

// Policy says when a pool is due a snapshot: once its log since the last
// snapshot holds SnapshotEvery entries or SnapshotBytes bytes.
type Policy struct {
	SnapshotEvery int
	SnapshotBytes int64
}

// WithDefaults returns p with its zero or negative fields set to the
// defaults.
func (p Policy) WithDefaults() Policy {
	if p.SnapshotEvery <= 0 {
		p.SnapshotEvery = DefaultSnapshotEvery
	}
	if p.SnapshotBytes <= 0 {
		p.SnapshotBytes = DefaultSnapshotBytes
	}
	return p
}

// Due reports whether a log of entries entries and logBytes bytes since the
// snapshot passed a threshold.
func (p Policy) Due(entries, logBytes int64) bool {
	return entries >= int64(p.SnapshotEvery) || logBytes >= p.SnapshotBytes
}

// Crossed reports whether a commit took the log across a threshold, or a
// multiple of one: entries is the log's length after the commit, before and
// after its bytes. A snapshot that failed is so retried every threshold's
// worth of commits (and by the periodic check), not after every commit.
func (p Policy) Crossed(entries, before, after int64) bool {
	return entries >= int64(p.SnapshotEvery) && entries%int64(p.SnapshotEvery) == 0 ||
		after/p.SnapshotBytes > before/p.SnapshotBytes
}

// Work is what the goroutine does, as the store implements it.
type Work struct {
	// Name names the store in log messages ("nodestore/<name>: ...").
	Name string
	// ListPools lists every pool.
	ListPools func(ctx context.Context) ([]string, error)
	// Snapshot snapshots the pool if it is due.
	Snapshot func(ctx context.Context, pool string) error
	// Collect collects the pool's garbage.
	Collect func(ctx context.Context, pool string) error
	// Logger receives the errors.
	Logger *slog.Logger
}

// Worker runs Work in a goroutine.
type Worker struct {
	work   Work
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}
	mu     sync.Mutex
	due    map[string]struct{} // pools whose log crossed a threshold
}

// Start starts the goroutine: it checks every pool at start and then every
// `every` (never, not even at start, if every is negative, so that tests
// drive the work themselves), and snapshots and collects the pools marked
// due as soon as they are.
func Start(every time.Duration, w Work) *Worker {
	ctx, cancel := context.WithCancel(context.Background())
	wk := &Worker{work: w, cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1), due: map[string]struct{}{}}
	go wk.run(ctx, every)
	return wk
}

// Stop stops the goroutine and waits for it. Stopping twice is allowed.
func (w *Worker) Stop() {
	w.cancel()
	<-w.done
}

// MarkDue queues pool for a snapshot.
func (w *Worker) MarkDue(pool string) {
	w.mu.Lock()
	w.due[pool] = struct{}{}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Worker) takeDue() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for p := range w.due {
		out = append(out, p)
	}
	clear(w.due)
	return out
}

func (w *Worker) run(ctx context.Context, every time.Duration) {
	defer close(w.done)
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
		w.maintain(ctx) // at once too: garbage left by an earlier process
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			for _, pool := range w.takeDue() {
				w.pool(ctx, pool)
			}
		case <-tick:
			w.maintain(ctx)
		}
	}
}

// maintain snapshots every pool that is due and collects every pool.
func (w *Worker) maintain(ctx context.Context) {
	pools, err := w.work.ListPools(ctx)
	if err != nil {
		w.logError(ctx, "listing", "", err)
		return
	}
	for _, pool := range pools {
		w.pool(ctx, pool)
	}
}

// pool snapshots the pool if due and collects it (also if the snapshot
// failed: older garbage may be due).
func (w *Worker) pool(ctx context.Context, pool string) {
	if err := w.work.Snapshot(ctx, pool); err != nil {
		w.logError(ctx, "snapshot", pool, err)
	}
	if err := w.work.Collect(ctx, pool); err != nil {
		w.logError(ctx, "collect", pool, err)
	}
}

func (w *Worker) logError(ctx context.Context, what, pool string, err error) {
	if ctx.Err() != nil || errors.Is(err, nodestore.ErrNotFound) || errors.Is(err, nodestore.ErrClosed) {
		return // stopping, or the pool was deleted meanwhile
	}
	w.work.Logger.Warn("nodestore/"+w.work.Name+": background "+what+" failed", slog.String("pool", pool), slog.Any("error", err))
}

// Counters count a store's work, for its Stats.
type Counters struct {
	Commits, LogBytes, Snapshots, SnapshotBytes, CollectedLogs, CollectedShards atomic.Int64
}

// Stats returns the counts.
func (c *Counters) Stats() nodestore.Stats {
	return nodestore.Stats{
		Commits:         c.Commits.Load(),
		LogBytes:        c.LogBytes.Load(),
		Snapshots:       c.Snapshots.Load(),
		SnapshotBytes:   c.SnapshotBytes.Load(),
		CollectedLogs:   c.CollectedLogs.Load(),
		CollectedShards: c.CollectedShards.Load(),
	}
}

// Snapshotted counts a snapshot installed of n bytes and calls on, if set.
func (c *Counters) Snapshotted(pool string, gen int64, n int, on func(pool string, gen int64, bytes int)) {
	c.Snapshots.Add(1)
	c.SnapshotBytes.Add(int64(n))
	if on != nil {
		on(pool, gen, n)
	}
}

// CollectAll runs collect on every pool list returns; pools deleted
// meanwhile are no error.
func CollectAll(ctx context.Context, list func(context.Context) ([]string, error), collect func(context.Context, string) error) error {
	pools, err := list(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, pool := range pools {
		if err := collect(ctx, pool); err != nil && !errors.Is(err, nodestore.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Gate admits a store's operations until Close.
type Gate struct {
	// mu is held shared by every operation and exclusively by Close.
	mu     sync.RWMutex
	closed bool
}

// Begin starts an operation, or fails with ctx's error or, once closed,
// nodestore.ErrClosed. End must follow a nil error.
func (g *Gate) Begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return nodestore.ErrClosed
	}
	return nil
}

// End ends an operation.
func (g *Gate) End() { g.mu.RUnlock() }

// Close waits for the operations in progress, closes the gate and calls
// release, the first time only.
func (g *Gate) Close(release func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return release()
}
