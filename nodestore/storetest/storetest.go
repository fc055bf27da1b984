// Package storetest is the conformance suite every nodestore.Store
// implementation passes: Run it from the implementation's tests.
//
// Stores that can be driven synchronously implement Maintainer; stores whose
// clock the suite controls are returned wrapped with WithClock. Checks that
// need either are skipped otherwise.
package storetest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

var seedFlag = flag.Uint64("storetest.seed", 0, "seed of the randomized store tests (0: from the clock)")

// Maintainer is implemented by stores whose background work can be forced:
// SnapshotNow snapshots a pool (if anything was committed since its last
// snapshot) and returns once it is installed; CollectNow garbage-collects
// every pool as the store's clock and GC lag allow.
type Maintainer interface {
	SnapshotNow(ctx context.Context, pool string) error
	CollectNow(ctx context.Context) error
}

// Clock is a manual clock for stores' injected clocks. It is safe for
// concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock reading 2026-01-01T00:00:00Z.
func NewClock() *Clock { return &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// clocked is a store whose clock is c and GC lag is lag.
type clocked struct {
	nodestore.Store
	clock *Clock
	lag   time.Duration
}

// WithClock tells Run that s measures its GC lag, gcLag, with c, so that the
// suite can test garbage collection by advancing c. The wrapper is for Run
// only: it hides every method of s but the Store interface.
func WithClock(s nodestore.Store, c *Clock, gcLag time.Duration) nodestore.Store {
	return clocked{s, c, gcLag}
}

// harness is one subtest's store and what the suite can drive of it.
type harness struct {
	nodestore.Store
	maint Maintainer    // nil if the store does not implement it
	clock *Clock        // nil unless wrapped with WithClock
	lag   time.Duration // the GC lag, with clock
}

func open(t *testing.T, newStore func(t *testing.T) nodestore.Store) *harness {
	t.Helper()
	s := newStore(t)
	h := &harness{Store: s}
	if c, ok := s.(clocked); ok {
		h.Store, h.clock, h.lag = c.Store, c.clock, c.lag
	}
	h.maint, _ = h.Store.(Maintainer)
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// Run runs the suite. newStore returns a new, empty store each time it is
// called (once per subtest); the suite closes it. Closing twice must be
// allowed.
func Run(t *testing.T, newStore func(t *testing.T) nodestore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *harness)
	}{
		{"Pools", testPools},
		{"LoadAfterCreate", testLoadAfterCreate},
		{"CommitCAS", testCommitCAS},
		{"ReadLog", testReadLog},
		{"ConcurrentCommitters", testConcurrentCommitters},
		{"DeepCopies", testDeepCopies},
		{"EmptyDelta", testEmptyDelta},
		{"Wipe", testWipe},
		{"Truncation", testTruncation},
		{"Randomized", testRandomized},
		{"Closed", testClosed},
		{"CheckWrite", testCheckWrite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t, newStore)) })
	}
}

func seed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -storetest.seed=%d)", s, s)
	return s
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func diff(want, got any) string { return cmp.Diff(want, got, protocmp.Transform()) }

// checkLoad checks that Load returns want at generation gen.
func checkLoad(t *testing.T, s nodestore.Store, pool string, want *statev1.PoolState, gen int64) {
	t.Helper()
	got, g, err := s.Load(t.Context(), pool)
	must(t, "Load", err)
	if g != gen {
		t.Fatalf("Load: generation %d, want %d", g, gen)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("Load at generation %d: state differs (-want +got):\n%s", gen, diff(want, got))
	}
}

// checkLog checks that ReadLog after `after` returns want, ending at gen.
func checkLog(t *testing.T, s nodestore.Store, pool string, after int64, want []*statev1.PoolDelta, gen int64) {
	t.Helper()
	got, g, err := s.ReadLog(t.Context(), pool, after)
	must(t, fmt.Sprintf("ReadLog(%d)", after), err)
	if g != gen {
		t.Fatalf("ReadLog(%d): generation %d, want %d", after, g, gen)
	}
	if len(got) != len(want) {
		t.Fatalf("ReadLog(%d): %d deltas, want %d", after, len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("ReadLog(%d): delta of generation %d differs (-want +got):\n%s", after, after+1+int64(i), diff(want[i], got[i]))
		}
	}
}

func commit(t *testing.T, s nodestore.Store, pool string, expect int64, d *statev1.PoolDelta) nodestore.CommitStats {
	t.Helper()
	cs, err := s.Commit(t.Context(), pool, expect, d)
	must(t, fmt.Sprintf("Commit(%d)", expect), err)
	if cs.Generation != expect+1 {
		t.Fatalf("Commit(%d): generation %d, want %d", expect, cs.Generation, expect+1)
	}
	return cs
}

func testPools(t *testing.T, s *harness) {
	ctx := t.Context()
	ids, err := s.ListPools(ctx)
	must(t, "ListPools", err)
	if len(ids) != 0 {
		t.Fatalf("ListPools of a new store: %q", ids)
	}
	// Ids that could collide with a store's own names, odd characters, the
	// longest allowed.
	pools := []string{"b", "a", "a\x00", "a/b", "ü-pool", "pools", "head", "meta", "log", strings.Repeat("x", nodestore.MaxPoolIDLen), "\u00ff\ufffe", "__key__"}
	st := &statev1.PoolState{Config: &statev1.PoolConfig{DisablePreemption: true}}
	for _, p := range pools {
		must(t, "CreatePool "+p, s.CreatePool(ctx, p, st))
	}
	for _, p := range []string{"", strings.Repeat("x", nodestore.MaxPoolIDLen+1), "\xff\xfe"} {
		wantErr(t, fmt.Sprintf("CreatePool(%d bytes)", len(p)), s.CreatePool(ctx, p, st), nodestore.ErrInvalidPoolID)
	}
	wantErr(t, "CreatePool of an existing pool", s.CreatePool(ctx, "a", st), nodestore.ErrAlreadyExists)
	ids, err = s.ListPools(ctx)
	must(t, "ListPools", err)
	want := slices.Sorted(slices.Values(pools))
	if d := cmp.Diff(want, ids); d != "" {
		t.Fatalf("ListPools (-want +got):\n%s", d)
	}

	commit(t, s, "a", 1, &statev1.PoolDelta{LastUpdateUnixNanos: proto.Int64(5)})
	must(t, "DeletePool", s.DeletePool(ctx, "a"))
	wantErr(t, "DeletePool of a deleted pool", s.DeletePool(ctx, "a"), nodestore.ErrNotFound)
	wantErr(t, "DeletePool of an unknown pool", s.DeletePool(ctx, "nope"), nodestore.ErrNotFound)
	_, _, err = s.Load(ctx, "a")
	wantErr(t, "Load of a deleted pool", err, nodestore.ErrNotFound)
	_, _, err = s.ReadLog(ctx, "a", 1)
	wantErr(t, "ReadLog of a deleted pool", err, nodestore.ErrNotFound)
	_, err = s.Commit(ctx, "a", 2, &statev1.PoolDelta{})
	wantErr(t, "Commit to a deleted pool", err, nodestore.ErrNotFound)
	ids, err = s.ListPools(ctx)
	must(t, "ListPools", err)
	if d := cmp.Diff(slices.DeleteFunc(want, func(p string) bool { return p == "a" }), ids); d != "" {
		t.Fatalf("ListPools after DeletePool (-want +got):\n%s", d)
	}
	// The neighbours of the deleted pool are intact.
	checkLoad(t, s, "a\x00", st, 1)
	checkLoad(t, s, "b", st, 1)

	// Created again, the pool starts afresh.
	st2 := &statev1.PoolState{LastUpdateUnixNanos: proto.Int64(9)}
	must(t, "CreatePool again", s.CreatePool(ctx, "a", st2))
	checkLoad(t, s, "a", st2, 1)
	checkLog(t, s, "a", 1, nil, 1)
	_, _, err = s.ReadLog(ctx, "a", 2)
	wantErr(t, "ReadLog past the recreated pool's generation", err, nodestore.ErrLogTruncated)
}

func testLoadAfterCreate(t *testing.T, s *harness) {
	ctx := t.Context()
	st := newGen(seed(t)).state()
	must(t, "CreatePool", s.CreatePool(ctx, "p", st))
	checkLoad(t, s, "p", st, 1)
	checkLog(t, s, "p", 1, nil, 1)
	_, _, err := s.ReadLog(ctx, "p", 0)
	wantErr(t, "ReadLog(0): generation 1 is no delta", err, nodestore.ErrLogTruncated)

	must(t, "CreatePool(nil)", s.CreatePool(ctx, "empty", nil))
	checkLoad(t, s, "empty", &statev1.PoolState{}, 1)

	// Lists are returned sorted by id whatever order they were given in.
	rev := proto.Clone(st).(*statev1.PoolState)
	slices.Reverse(rev.Waiting)
	slices.Reverse(rev.Workers)
	must(t, "CreatePool(unsorted)", s.CreatePool(ctx, "unsorted", rev))
	checkLoad(t, s, "unsorted", st, 1)
}

func testCommitCAS(t *testing.T, s *harness) {
	ctx := t.Context()
	g := newGen(seed(t))
	st := g.state()
	must(t, "CreatePool", s.CreatePool(ctx, "p", st))
	d := g.delta(st)
	cs := commit(t, s, "p", 1, d)
	if cs.LogBytes <= 0 {
		t.Errorf("CommitStats.LogBytes = %d, want > 0", cs.LogBytes)
	}
	want := nodestore.ApplyDelta(st, d)
	for _, stale := range []int64{1, 0, -1, 3, 100} {
		_, err := s.Commit(ctx, "p", stale, g.delta(want))
		wantErr(t, fmt.Sprintf("Commit(%d) at generation 2", stale), err, nodestore.ErrConflict)
	}
	// Nothing the failed commits carried was written.
	checkLoad(t, s, "p", want, 2)
	checkLog(t, s, "p", 1, []*statev1.PoolDelta{d}, 2)
	d2 := g.delta(want)
	commit(t, s, "p", 2, d2)
	checkLoad(t, s, "p", nodestore.ApplyDelta(want, d2), 3)
}

func testReadLog(t *testing.T, s *harness) {
	ctx := t.Context()
	g := newGen(seed(t))
	st := g.state()
	must(t, "CreatePool", s.CreatePool(ctx, "p", st))
	const n = 20
	var ds []*statev1.PoolDelta
	for i := range n {
		d := g.delta(st)
		commit(t, s, "p", int64(i+1), d)
		st = nodestore.ApplyDelta(st, d)
		ds = append(ds, d)
	}
	for after := int64(1); after <= n+1; after++ {
		checkLog(t, s, "p", after, ds[after-1:], n+1)
	}
	for _, after := range []int64{n + 2, n + 100} {
		_, _, err := s.ReadLog(ctx, "p", after)
		wantErr(t, fmt.Sprintf("ReadLog(%d) past the generation", after), err, nodestore.ErrLogTruncated)
	}
	checkLoad(t, s, "p", st, n+1)
}

// testConcurrentCommitters races committers on one pool: every generation
// has exactly one winner, and the log holds the winners' deltas in order.
func testConcurrentCommitters(t *testing.T, s *harness) {
	ctx := t.Context()
	must(t, "CreatePool", s.CreatePool(ctx, "p", &statev1.PoolState{}))
	const writers, wins = 6, 10
	marker := func(w, i int) int64 { return int64(w)<<32 | int64(i) }
	var mu sync.Mutex
	winner := map[int64]int64{} // generation → marker
	var conflicts int
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			gen := int64(1)
			for i := 0; i < wins; {
				d := &statev1.PoolDelta{LastUpdateUnixNanos: proto.Int64(marker(w, i))}
				cs, err := s.Commit(ctx, "p", gen, d)
				switch {
				case err == nil:
					mu.Lock()
					if prev, ok := winner[cs.Generation]; ok {
						mu.Unlock()
						errs <- fmt.Errorf("generation %d won twice: %x and %x", cs.Generation, prev, marker(w, i))
						return
					}
					winner[cs.Generation] = marker(w, i)
					mu.Unlock()
					gen = cs.Generation
					i++
				case errors.Is(err, nodestore.ErrConflict):
					mu.Lock()
					conflicts++
					mu.Unlock()
					// Catch up, as a replica would.
					if _, gen, err = s.ReadLog(ctx, "p", gen); err != nil {
						errs <- fmt.Errorf("ReadLog: %w", err)
						return
					}
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d commits, %d conflicts", writers*wins, conflicts)
	const last = 1 + writers*wins
	ds, gen, err := s.ReadLog(ctx, "p", 1)
	must(t, "ReadLog", err)
	if gen != last || len(ds) != writers*wins {
		t.Fatalf("ReadLog: %d deltas up to generation %d, want %d up to %d", len(ds), gen, writers*wins, last)
	}
	for i, d := range ds {
		g := int64(i + 2)
		if m, ok := winner[g]; !ok || d.GetLastUpdateUnixNanos() != m {
			t.Fatalf("generation %d holds %x, its committer was told it won with %x (ok=%v)", g, d.GetLastUpdateUnixNanos(), m, ok)
		}
	}
	// Each writer's deltas appear in its own order.
	next := map[int64]int64{}
	for _, d := range ds {
		m := d.GetLastUpdateUnixNanos()
		w, i := m>>32, m&0xffffffff
		if next[w] != i {
			t.Fatalf("writer %d: delta %d after %d", w, i, next[w]-1)
		}
		next[w]++
	}
}

// testDeepCopies: callers may modify what they passed in and what they got.
func testDeepCopies(t *testing.T, s *harness) {
	ctx := t.Context()
	g := newGen(seed(t))
	st := g.state()
	st.Waiting = append(st.Waiting, &statev1.Request{Id: "zzz", BaseLabels: []string{"pool:lab"}})
	st.Config.AccountConfigs["acct-x"] = &statev1.AccountConfig{ChargeRate: []float32{1}}
	orig := proto.Clone(st).(*statev1.PoolState)
	must(t, "CreatePool", s.CreatePool(ctx, "p", st))
	scribble(st)
	checkLoad(t, s, "p", orig, 1)

	d := g.delta(orig)
	d.Waiting = append(d.Waiting, &statev1.Request{Id: "zzzz", BaseLabels: []string{"os:linux"}})
	d.Config = &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{"acct-y": {ChargeRate: []float32{2}}}}
	dOrig := proto.Clone(d).(*statev1.PoolDelta)
	want := nodestore.ApplyDelta(proto.Clone(orig).(*statev1.PoolState), dOrig)
	commit(t, s, "p", 1, d)
	scribbleDelta(d)
	checkLoad(t, s, "p", want, 2)
	checkLog(t, s, "p", 1, []*statev1.PoolDelta{dOrig}, 2)

	got, _, err := s.Load(ctx, "p")
	must(t, "Load", err)
	scribble(got)
	checkLoad(t, s, "p", want, 2)
	ds, _, err := s.ReadLog(ctx, "p", 1)
	must(t, "ReadLog", err)
	scribbleDelta(ds[0])
	checkLog(t, s, "p", 1, []*statev1.PoolDelta{dOrig}, 2)
}

// scribble modifies st in place, down to nested messages, maps and slices.
func scribble(st *statev1.PoolState) {
	st.LastUpdateUnixNanos = proto.Int64(-1)
	st.Config.DisablePreemption = !st.Config.DisablePreemption
	for _, ac := range st.Config.AccountConfigs {
		ac.ChargeRate = append(ac.ChargeRate[:0], 99)
	}
	st.Config.AccountConfigs["scribbled"] = &statev1.AccountConfig{}
	for _, r := range st.Waiting {
		r.Id += "!"
		if len(r.BaseLabels) > 0 {
			r.BaseLabels[0] = "scribbled"
		}
	}
	for _, w := range st.Workers {
		w.Labels = append(w.Labels, "scribbled")
		if w.Running != nil {
			w.Running.Request.Id = "scribbled"
			w.Running.Cost[0] = -1
		}
	}
	for _, b := range st.Balances {
		b.Value[0] = -1
	}
	st.Tombstones = nil
}

func scribbleDelta(d *statev1.PoolDelta) {
	for _, r := range d.Waiting {
		r.Id += "!"
		if len(r.BaseLabels) > 0 {
			r.BaseLabels[0] = "scribbled"
		}
	}
	if d.Config != nil {
		for _, ac := range d.Config.AccountConfigs {
			ac.ChargeRate[0] = 99
		}
	}
	d.DeletedWorkers = append(d.DeletedWorkers, "scribbled")
	d.Wipe = !d.Wipe
}

func testEmptyDelta(t *testing.T, s *harness) {
	ctx := t.Context()
	st := newGen(seed(t)).state()
	must(t, "CreatePool", s.CreatePool(ctx, "p", st))
	commit(t, s, "p", 1, &statev1.PoolDelta{})
	commit(t, s, "p", 2, &statev1.PoolDelta{})
	checkLoad(t, s, "p", st, 3)
	checkLog(t, s, "p", 1, []*statev1.PoolDelta{{}, {}}, 3)
}

func testWipe(t *testing.T, s *harness) {
	ctx := t.Context()
	g := newGen(seed(t))
	st := g.state()
	must(t, "CreatePool", s.CreatePool(ctx, "p", st))
	wipe := &statev1.PoolDelta{Wipe: true, Workers: []*statev1.Worker{g.worker(3)}, Waiting: []*statev1.Request{g.request(7)}}
	commit(t, s, "p", 1, wipe)
	want := nodestore.ApplyDelta(st, wipe)
	if !proto.Equal(want.Config, st.Config) || len(want.Waiting) != 1 || want.LastUpdateUnixNanos != nil || want.Balances != nil {
		t.Fatalf("ApplyDelta of a wipe: %v", want)
	}
	checkLoad(t, s, "p", want, 2)
	d := g.delta(want)
	commit(t, s, "p", 2, d)
	want = nodestore.ApplyDelta(want, d)
	checkLoad(t, s, "p", want, 3)
	// A wipe that clears everything.
	commit(t, s, "p", 3, &statev1.PoolDelta{Wipe: true})
	checkLoad(t, s, "p", &statev1.PoolState{Config: want.Config}, 4)
	checkLog(t, s, "p", 2, []*statev1.PoolDelta{d, {Wipe: true}}, 4)
}

// testTruncation: after a snapshot, ReadLog keeps working for the
// generations it covers until the snapshot has been installed for the GC
// lag and a collection ran; then they are ErrLogTruncated.
func testTruncation(t *testing.T, s *harness) {
	if s.maint == nil || s.clock == nil {
		t.Skip("the store implements no Maintainer or was not wrapped with WithClock")
	}
	ctx := t.Context()
	g := newGen(seed(t))
	st := g.state()
	must(t, "CreatePool", s.CreatePool(ctx, "p", st))
	var ds []*statev1.PoolDelta
	for i := range 5 {
		d := g.delta(st)
		commit(t, s, "p", int64(i+1), d)
		st = nodestore.ApplyDelta(st, d)
		ds = append(ds, d)
	}
	must(t, "SnapshotNow", s.maint.SnapshotNow(ctx, "p"))
	checkLoad(t, s, "p", st, 6)
	must(t, "CollectNow", s.maint.CollectNow(ctx))
	checkLog(t, s, "p", 1, ds, 6)
	s.clock.Advance(s.lag / 2)
	must(t, "CollectNow", s.maint.CollectNow(ctx))
	checkLog(t, s, "p", 1, ds, 6) // the lag has not passed
	checkLoad(t, s, "p", st, 6)

	s.clock.Advance(s.lag)
	must(t, "CollectNow", s.maint.CollectNow(ctx))
	for _, after := range []int64{1, 3, 5} {
		_, _, err := s.ReadLog(ctx, "p", after)
		wantErr(t, fmt.Sprintf("ReadLog(%d) after collection", after), err, nodestore.ErrLogTruncated)
	}
	checkLog(t, s, "p", 6, nil, 6)
	checkLoad(t, s, "p", st, 6)

	// The log continues after the collected part.
	ds = ds[:0]
	for i := range 2 {
		d := g.delta(st)
		commit(t, s, "p", int64(i+6), d)
		st = nodestore.ApplyDelta(st, d)
		ds = append(ds, d)
	}
	checkLog(t, s, "p", 6, ds, 8)
	checkLoad(t, s, "p", st, 8)
	// A second snapshot: the first one and the entries up to 8 go once it
	// is older than the lag.
	must(t, "SnapshotNow", s.maint.SnapshotNow(ctx, "p"))
	must(t, "SnapshotNow with nothing new", s.maint.SnapshotNow(ctx, "p"))
	s.clock.Advance(s.lag / 2)
	must(t, "CollectNow", s.maint.CollectNow(ctx))
	checkLog(t, s, "p", 6, ds, 8)
	s.clock.Advance(s.lag / 2)
	must(t, "CollectNow", s.maint.CollectNow(ctx))
	_, _, err := s.ReadLog(ctx, "p", 6)
	wantErr(t, "ReadLog(6) after the second collection", err, nodestore.ErrLogTruncated)
	checkLog(t, s, "p", 8, nil, 8)
	checkLoad(t, s, "p", st, 8)
	if sr, ok := s.Store.(nodestore.StatsReporter); ok {
		stats := sr.Stats()
		t.Logf("stats: %+v", stats)
		if stats.Commits != 7 || stats.Snapshots < 2 || stats.CollectedLogs < 7 || stats.CollectedShards < 1 {
			t.Errorf("Stats() = %+v, want 7 commits, at least 2 snapshots, 7 collected log entries and 1 shard", stats)
		}
	}
	must(t, "SnapshotNow of an unknown pool", ignoreNotFound(s.maint.SnapshotNow(ctx, "nope")))
}

func ignoreNotFound(err error) error {
	if errors.Is(err, nodestore.ErrNotFound) {
		return nil
	}
	if err == nil {
		return errors.New("no error, want ErrNotFound")
	}
	return err
}

// testRandomized commits random batches of random deltas, checking after
// each batch that Load returns the state the deltas give and ReadLog the
// batch; every 25 batches it forces a snapshot and garbage collection, and
// checks what the lag protects and what it lets go.
func testRandomized(t *testing.T, s *harness) {
	ctx := t.Context()
	g := newGen(seed(t))
	st := g.state()
	const pool = "random pool"
	must(t, "CreatePool", s.CreatePool(ctx, pool, st))
	// A second pool, committed to in between, must not disturb the first.
	must(t, "CreatePool", s.CreatePool(ctx, "other", &statev1.PoolState{}))
	gen := int64(1)
	otherGen, otherClock := int64(1), int64(0)
	log := map[int64]*statev1.PoolDelta{} // generation → delta
	var collected int64 = 1               // generations up to this may be collected
	const batches, every = 200, 25
	for b := 1; b <= batches; b++ {
		start := gen
		var batch []*statev1.PoolDelta
		for range 1 + g.r.IntN(4) {
			d := g.delta(st)
			commit(t, s, pool, gen, d)
			gen++
			st = nodestore.ApplyDelta(st, d)
			log[gen] = d
			batch = append(batch, d)
		}
		if g.r.IntN(5) == 0 {
			commit(t, s, "other", otherGen, &statev1.PoolDelta{LastUpdateUnixNanos: proto.Int64(int64(b))})
			otherGen++
			otherClock = int64(b)
		}
		checkLoad(t, s, pool, st, gen)
		checkLog(t, s, pool, start, batch, gen)
		if b%every != 0 || s.maint == nil {
			continue
		}

		must(t, "SnapshotNow", s.maint.SnapshotNow(ctx, pool))
		checkLoad(t, s, pool, st, gen)
		if s.clock == nil {
			must(t, "CollectNow", s.maint.CollectNow(ctx))
			checkLoad(t, s, pool, st, gen)
			continue
		}
		// Every snapshot since the last phase was installed less than the
		// lag ago: the log since the last collection point is intact.
		s.clock.Advance(s.lag / 2)
		must(t, "CollectNow", s.maint.CollectNow(ctx))
		checkLoad(t, s, pool, st, gen)
		var since []*statev1.PoolDelta
		for g := collected + 1; g <= gen; g++ {
			since = append(since, log[g])
		}
		checkLog(t, s, pool, collected, since, gen)
		// Once the lag has passed, the snapshot covers everything and the
		// log before it is gone.
		s.clock.Advance(s.lag)
		must(t, "CollectNow", s.maint.CollectNow(ctx))
		checkLoad(t, s, pool, st, gen)
		if gen > 1 {
			_, _, err := s.ReadLog(ctx, pool, gen-1)
			wantErr(t, fmt.Sprintf("ReadLog(%d) of a collected generation", gen-1), err, nodestore.ErrLogTruncated)
		}
		checkLog(t, s, pool, gen, nil, gen)
		collected = gen
	}
	wantOther := &statev1.PoolState{}
	if otherGen > 1 {
		wantOther.LastUpdateUnixNanos = proto.Int64(otherClock)
	}
	checkLoad(t, s, "other", wantOther, otherGen)
	if sr, ok := s.Store.(nodestore.StatsReporter); ok {
		t.Logf("stats: %+v", sr.Stats())
	}
}

func testClosed(t *testing.T, s *harness) {
	ctx := t.Context()
	must(t, "CreatePool", s.CreatePool(ctx, "p", &statev1.PoolState{}))
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err := s.Load(canceled, "p")
	wantErr(t, "Load with a canceled context", err, context.Canceled)

	must(t, "Close", s.Close())
	wantErr(t, "CreatePool after Close", s.CreatePool(ctx, "q", nil), nodestore.ErrClosed)
	wantErr(t, "DeletePool after Close", s.DeletePool(ctx, "p"), nodestore.ErrClosed)
	_, err = s.ListPools(ctx)
	wantErr(t, "ListPools after Close", err, nodestore.ErrClosed)
	_, _, err = s.Load(ctx, "p")
	wantErr(t, "Load after Close", err, nodestore.ErrClosed)
	_, _, err = s.ReadLog(ctx, "p", 1)
	wantErr(t, "ReadLog after Close", err, nodestore.ErrClosed)
	_, err = s.Commit(ctx, "p", 1, &statev1.PoolDelta{})
	wantErr(t, "Commit after Close", err, nodestore.ErrClosed)
	if s.maint != nil {
		wantErr(t, "SnapshotNow after Close", s.maint.SnapshotNow(ctx, "p"), nodestore.ErrClosed)
		wantErr(t, "CollectNow after Close", s.maint.CollectNow(ctx), nodestore.ErrClosed)
	}
	must(t, "second Close", s.Close())
}

// testCheckWrite: a store that offers a write check passes it without
// changing any pool, honours a canceled context, and fails it once closed.
func testCheckWrite(t *testing.T, s *harness) {
	wc, ok := s.Store.(nodestore.WriteChecker)
	if !ok {
		t.Skip("the store does not implement nodestore.WriteChecker")
	}
	ctx := t.Context()
	must(t, "CheckWrite of an empty store", wc.CheckWrite(ctx))
	ids, err := s.ListPools(ctx)
	must(t, "ListPools", err)
	if len(ids) != 0 {
		t.Fatalf("ListPools after CheckWrite: %q, want none", ids)
	}
	st := &statev1.PoolState{TaskErrors: []*statev1.TaskError{{TaskId: "t", Error: "e"}}}
	must(t, "CreatePool", s.CreatePool(ctx, "p", st))
	d := &statev1.PoolDelta{TaskErrors: []*statev1.TaskError{{TaskId: "u", Error: "f"}}}
	commit(t, s, "p", 1, d)
	want, _, err := s.Load(ctx, "p")
	must(t, "Load", err)
	for range 3 {
		must(t, "CheckWrite", wc.CheckWrite(ctx))
	}
	checkLoad(t, s, "p", want, 2)
	checkLog(t, s, "p", 1, []*statev1.PoolDelta{d}, 2)
	commit(t, s, "p", 2, d)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	wantErr(t, "CheckWrite with a canceled context", wc.CheckWrite(canceled), context.Canceled)
	must(t, "Close", s.Close())
	wantErr(t, "CheckWrite after Close", wc.CheckWrite(ctx), nodestore.ErrClosed)
}
