// Package memory is a nodestore.Store held in memory, for tests. It has the
// semantics of the embedded store: generations and compare-and-swap
// commits, a log kept since the last snapshot, snapshots once the log passes
// a threshold (taken synchronously inside the commit that crosses it), and
// garbage collection of covered log entries only after a lag measured with an
// injected clock. Messages are deep-copied on the way in and out, so callers
// may reuse theirs.
package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// Defaults of Options, the same as the embedded store's.
const (
	DefaultSnapshotEvery = 20000
	DefaultSnapshotBytes = 8 << 20
	DefaultGCLag         = 10 * time.Minute
)

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// A pool is snapshotted once its log since the last snapshot holds
	// SnapshotEvery entries (default 20000) or SnapshotBytes bytes (default
	// 8 MiB; sizes are proto.Size of the deltas).
	SnapshotEvery int
	SnapshotBytes int64
	// GCLag is how long a snapshot must have been installed before the log
	// entries it covers and the snapshot it replaced are collected (default
	// 10 minutes), measured with Now.
	GCLag time.Duration
	// Now is the clock the GC lag is measured with (default time.Now).
	Now func() time.Time
	// OnSnapshot, if set, is called after each snapshot is installed, with
	// the pool, the generation it covers and its size in bytes. It runs
	// without the store's lock held.
	OnSnapshot func(pool string, gen int64, bytes int)
}

// Store is an in-memory nodestore.Store. It is safe for concurrent use.
type Store struct {
	opts Options

	mu     sync.Mutex
	closed bool
	pools  map[string]*pool
	stats  nodestore.Stats
}

// pool holds immutable messages only: everything stored is a private copy
// that nothing modifies, so Load and snapshots may share them freely.
type pool struct {
	gen      int64
	snap     *statev1.PoolState // the state at snaps[len(snaps)-1].gen
	snaps    []snapInfo         // installed snapshots not yet collected, oldest first; the last is current
	log      []*statev1.PoolDelta
	logStart int64 // the generation of log[0]
	logBytes int64 // bytes of the entries after the current snapshot
}

type snapInfo struct {
	gen       int64
	installed time.Time
	retired   time.Time // zero while current
}

func (p *pool) snapGen() int64 { return p.snaps[len(p.snaps)-1].gen }

var (
	_ nodestore.Store         = (*Store)(nil)
	_ nodestore.StatsReporter = (*Store)(nil)
	_ nodestore.WriteChecker  = (*Store)(nil)
)

// New returns an empty store.
func New(opts Options) *Store {
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = DefaultSnapshotEvery
	}
	if opts.SnapshotBytes <= 0 {
		opts.SnapshotBytes = DefaultSnapshotBytes
	}
	if opts.GCLag <= 0 {
		opts.GCLag = DefaultGCLag
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{opts: opts, pools: map[string]*pool{}}
}

func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nodestore.ErrClosed
	}
	return nil
}

func (s *Store) pool(id string) (*pool, error) {
	p := s.pools[id]
	if p == nil {
		return nil, fmt.Errorf("%w: %q", nodestore.ErrNotFound, id)
	}
	return p, nil
}

// CheckWrite implements nodestore.WriteChecker: memory always takes
// writes, until Close.
func (s *Store) CheckWrite(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// CreatePool implements nodestore.Store.
func (s *Store) CreatePool(ctx context.Context, id string, st *statev1.PoolState) error {
	if err := nodestore.CheckPoolID(id); err != nil {
		return err
	}
	if st == nil {
		st = &statev1.PoolState{}
	}
	snap := nodestore.NewShadow(proto.Clone(st).(*statev1.PoolState)).State()
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.pools[id] != nil {
		return fmt.Errorf("%w: %q", nodestore.ErrAlreadyExists, id)
	}
	s.pools[id] = &pool{gen: 1, snap: snap, snaps: []snapInfo{{gen: 1, installed: s.opts.Now()}}, logStart: 2}
	return nil
}

// DeletePool implements nodestore.Store.
func (s *Store) DeletePool(ctx context.Context, id string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, err := s.pool(id); err != nil {
		return err
	}
	delete(s.pools, id)
	return nil
}

// ListPools implements nodestore.Store.
func (s *Store) ListPools(ctx context.Context) ([]string, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.pools))
	for id := range s.pools {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// Load implements nodestore.Store.
func (s *Store) Load(ctx context.Context, id string) (*statev1.PoolState, int64, error) {
	if err := s.lock(ctx); err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	p, err := s.pool(id)
	if err != nil {
		return nil, 0, err
	}
	return proto.Clone(p.current()).(*statev1.PoolState), p.gen, nil
}

// current returns the state at p.gen; it shares p's immutable messages.
func (p *pool) current() *statev1.PoolState {
	if p.gen == p.snapGen() {
		return p.snap
	}
	sh := nodestore.NewShadow(p.snap)
	for _, d := range p.log[p.snapGen()+1-p.logStart:] {
		sh.Apply(d)
	}
	return sh.State()
}

// ReadLog implements nodestore.Store.
func (s *Store) ReadLog(ctx context.Context, id string, after int64) ([]*statev1.PoolDelta, int64, error) {
	if err := s.lock(ctx); err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	p, err := s.pool(id)
	if err != nil {
		return nil, 0, err
	}
	if after > p.gen || after < p.logStart-1 {
		return nil, 0, fmt.Errorf("%w: pool %q keeps generations %d..%d, asked for those after %d", nodestore.ErrLogTruncated, id, p.logStart, p.gen, after)
	}
	var out []*statev1.PoolDelta
	for _, d := range p.log[after+1-p.logStart:] {
		out = append(out, proto.Clone(d).(*statev1.PoolDelta))
	}
	return out, p.gen, nil
}

// Commit implements nodestore.Store. A commit that takes the log past a
// threshold also takes a snapshot and collects what the lag allows.
func (s *Store) Commit(ctx context.Context, id string, expect int64, d *statev1.PoolDelta) (nodestore.CommitStats, error) {
	if d == nil {
		d = &statev1.PoolDelta{}
	}
	d = proto.Clone(d).(*statev1.PoolDelta)
	size := proto.Size(d)
	if err := s.lock(ctx); err != nil {
		return nodestore.CommitStats{}, err
	}
	p, err := s.pool(id)
	if err == nil && p.gen != expect {
		err = fmt.Errorf("%w: pool %q is at generation %d, not %d", nodestore.ErrConflict, id, p.gen, expect)
	}
	if err != nil {
		s.mu.Unlock()
		return nodestore.CommitStats{}, err
	}
	p.log = append(p.log, d)
	p.gen++
	p.logBytes += int64(size)
	s.stats.Commits++
	s.stats.LogBytes += int64(size)
	var snapBytes int
	snapped := p.gen-p.snapGen() >= int64(s.opts.SnapshotEvery) || p.logBytes >= s.opts.SnapshotBytes
	if snapped {
		snapBytes = s.snapshotLocked(p)
		s.collectLocked(p)
	}
	gen := p.gen
	s.mu.Unlock()
	if snapped && s.opts.OnSnapshot != nil {
		s.opts.OnSnapshot(id, gen, snapBytes)
	}
	return nodestore.CommitStats{Generation: gen, LogBytes: size}, nil
}

// snapshotLocked installs a snapshot at p.gen and returns its size.
func (s *Store) snapshotLocked(p *pool) int {
	p.snap = p.current()
	now := s.opts.Now()
	p.snaps[len(p.snaps)-1].retired = now
	p.snaps = append(p.snaps, snapInfo{gen: p.gen, installed: now})
	p.logBytes = 0
	n := proto.Size(p.snap)
	s.stats.Snapshots++
	s.stats.SnapshotBytes += int64(n)
	return n
}

// collectLocked drops the log entries covered by a snapshot installed at
// least the lag ago, and the snapshots replaced at least the lag ago.
func (s *Store) collectLocked(p *pool) {
	now := s.opts.Now()
	old := func(t time.Time) bool { return !t.IsZero() && !now.Before(t.Add(s.opts.GCLag)) }
	var cut int64
	for _, si := range p.snaps {
		if old(si.installed) {
			cut = max(cut, si.gen)
		}
	}
	if n := min(cut-p.logStart+1, int64(len(p.log))); n > 0 {
		p.log = slices.Clone(p.log[n:])
		p.logStart += n
		s.stats.CollectedLogs += n
	}
	kept := p.snaps[:0]
	for _, si := range p.snaps {
		if old(si.retired) {
			s.stats.CollectedShards++
			continue
		}
		kept = append(kept, si)
	}
	p.snaps = kept
}

// SnapshotNow snapshots the pool now if anything was committed since its
// last snapshot.
func (s *Store) SnapshotNow(ctx context.Context, id string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	p, err := s.pool(id)
	if err != nil || p.gen == p.snapGen() {
		s.mu.Unlock()
		return err
	}
	n := s.snapshotLocked(p)
	gen := p.gen
	s.mu.Unlock()
	if s.opts.OnSnapshot != nil {
		s.opts.OnSnapshot(id, gen, n)
	}
	return nil
}

// CollectNow garbage-collects every pool as the clock and lag allow.
func (s *Store) CollectNow(ctx context.Context) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, p := range s.pools {
		s.collectLocked(p)
	}
	return nil
}

// Stats implements nodestore.StatsReporter. Sizes are proto.Size of the
// messages; the state a pool is created with is not counted as a snapshot.
func (s *Store) Stats() nodestore.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close implements nodestore.Store. Closing twice is allowed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.pools = nil
	return nil
}
