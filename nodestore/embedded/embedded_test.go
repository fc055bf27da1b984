package embedded

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/blob"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/labpool"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/storetest"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// testLogger sends the store's background warnings to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, nil))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func open(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestCheckWrite: the write check writes and syncs pages like a commit
// (bbolt counts the page writes) and leaves no key behind.
func TestCheckWrite(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	writes := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	before := writes()
	if err := s.CheckWrite(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after := writes(); after <= before {
		t.Errorf("bbolt counted %d page writes, then %d: the check wrote nothing", before, after)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyWriteCheck); v != nil {
			t.Errorf("meta/%s = %x after the check, want no key", keyWriteCheck, v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) nodestore.Store {
			clock := storetest.NewClock()
			s, err := Open(t.TempDir(), Options{Now: clock.Now, CodeVersion: "test", Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			return storetest.WithClock(s, clock, DefaultGCLag)
		})
	})
	// The smallest shards, so that log entries and snapshots are split, and
	// background snapshots every few commits, racing the suite's own.
	t.Run("small_shards", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) nodestore.Store {
			clock := storetest.NewClock()
			const lag = 30 * time.Second
			s, err := Open(t.TempDir(), Options{
				Now:           clock.Now,
				ShardBytes:    MinShardBytes,
				SnapshotEvery: 7,
				SnapshotBytes: 50_000,
				GCLag:         lag,
				Logger:        testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			return storetest.WithClock(s, clock, lag)
		})
	})
}

func checkLoad(t *testing.T, s *Store, pool string, want *statev1.PoolState, gen int64) {
	t.Helper()
	got, g, err := s.Load(t.Context(), pool)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if g != gen || !proto.Equal(got, want) {
		t.Fatalf("Load: generation %d (want %d), state diff (-want +got):\n%s", g, gen, cmp.Diff(want, got, protocmp.Transform()))
	}
}

func delta(i int) *statev1.PoolDelta {
	return &statev1.PoolDelta{
		LastUpdateUnixNanos: proto.Int64(int64(i)),
		Waiting:             []*statev1.Request{{Id: fmt.Sprintf("req-%d", i), BaseLabels: []string{"pool:lab"}}},
		TaskErrors:          []*statev1.TaskError{{TaskId: fmt.Sprintf("req-%d", i), Error: strings.Repeat("e", i*10)}},
	}
}

// TestReopen: everything committed is there after Close and Open, the
// snapshot and the log after it included, and commits continue.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	st := &statev1.PoolState{Config: &statev1.PoolConfig{DisablePreemption: true}}
	for _, p := range []string{"a", "b"} {
		if err := s.CreatePool(ctx, p, st); err != nil {
			t.Fatal(err)
		}
	}
	want := st
	var ds []*statev1.PoolDelta
	for i := 1; i <= 10; i++ {
		if i == 6 {
			if err := s.SnapshotNow(ctx, "a"); err != nil {
				t.Fatal(err)
			}
		}
		d := delta(i)
		if _, err := s.Commit(ctx, "a", int64(i), d); err != nil {
			t.Fatal(err)
		}
		want = nodestore.ApplyDelta(want, d)
		ds = append(ds, d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, Options{})
	ids, err := s.ListPools(ctx)
	if err != nil || !slices.Equal(ids, []string{"a", "b"}) {
		t.Fatalf("ListPools after reopening: %q, %v", ids, err)
	}
	checkLoad(t, s, "a", want, 11)
	checkLoad(t, s, "b", st, 1)
	got, gen, err := s.ReadLog(ctx, "a", 1)
	if err != nil || gen != 11 || len(got) != 10 {
		t.Fatalf("ReadLog after reopening: %d deltas to generation %d, %v", len(got), gen, err)
	}
	for i := range got {
		if !proto.Equal(got[i], ds[i]) {
			t.Fatalf("ReadLog after reopening: delta %d differs", i+2)
		}
	}
	if _, err := s.Commit(ctx, "a", 10, delta(11)); !errors.Is(err, nodestore.ErrConflict) {
		t.Fatalf("stale Commit after reopening: %v", err)
	}
	if _, err := s.Commit(ctx, "a", 11, delta(11)); err != nil {
		t.Fatal(err)
	}
	checkLoad(t, s, "a", nodestore.ApplyDelta(want, delta(11)), 12)
}

// TestSecondOpenFails: a second store on the same directory fails after the
// lock timeout instead of hanging, and succeeds once the first is closed.
func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, bolterrors.ErrTimeout) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v, want a lock timeout", err)
	}
	t.Log(err)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, dir, Options{LockTimeout: 50 * time.Millisecond})
}

// TestCorruption: a flipped byte anywhere in a stored entry, shard or
// snapshot header makes Load (and ReadLog, for the log) fail with
// ErrCorrupt.
func TestCorruption(t *testing.T) {
	targets := []struct {
		name    string
		bucket  []byte
		key     func(s *Store) []byte
		offset  func(v []byte) int
		readLog bool
	}{
		{"log payload", bucketLog, func(*Store) []byte { return logKey(3, 0) }, func(v []byte) int { return len(v) - 1 }, true},
		{"log header code version", bucketLog, func(*Store) []byte { return logKey(3, 0) }, func(v []byte) int { return blob.FixedLen }, true},
		{"log header generation", bucketLog, func(*Store) []byte { return logKey(2, 0) }, func(v []byte) int { return 13 }, true},
		{"log second part", bucketLog, func(*Store) []byte { return logKey(4, 1) }, func(v []byte) int { return len(v) / 2 }, true},
		{"snapshot shard", bucketShards, func(s *Store) []byte { return shardKey(headOf(t, s, "p").snapID, 0) }, func(v []byte) int { return len(v) / 3 }, false},
		{"snapshot header", bucketSnaps, func(s *Store) []byte { return u64(headOf(t, s, "p").snapID) }, func(v []byte) int { return len(v) - 2 }, false},
	}
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			opts := Options{ShardBytes: MinShardBytes, CodeVersion: "v1.2.3", MaintainEvery: -1, Logger: testLogger(t)}
			s, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 4; i++ {
				d := delta(i)
				if i == 3 {
					// Entry 4 spans several parts: incompressible text.
					d = delta(0)
					d.TaskErrors[0].Error = randomText(3 * MinShardBytes)
				}
				if _, err := s.Commit(ctx, "p", int64(i), d); err != nil {
					t.Fatal(err)
				}
			}
			key := tc.key(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			flip(t, dir, tc.bucket, key, tc.offset)

			s = open(t, dir, opts)
			_, _, err = s.Load(ctx, "p")
			if !errors.Is(err, nodestore.ErrCorrupt) {
				t.Fatalf("Load: %v, want ErrCorrupt", err)
			}
			t.Log(err)
			if tc.readLog {
				if _, _, err := s.ReadLog(ctx, "p", 1); !errors.Is(err, nodestore.ErrCorrupt) {
					t.Fatalf("ReadLog: %v, want ErrCorrupt", err)
				}
			}
			if err := s.SnapshotNow(ctx, "p"); !errors.Is(err, nodestore.ErrCorrupt) {
				t.Fatalf("SnapshotNow: %v, want ErrCorrupt", err)
			}
		})
	}
}

func randomText(n int) string {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = 'a' + byte(x%26)
	}
	return string(b)
}

func headOf(t *testing.T, s *Store, pool string) head {
	t.Helper()
	var h head
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		_, h, err = poolHead(tx, pool)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// flip inverts one byte of a value of pool p, with the store closed.
func flip(t *testing.T, dir string, bucket, key []byte, offset func([]byte) int) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPools).Bucket([]byte("p")).Bucket(bucket)
		v := b.Get(key)
		if v == nil {
			return fmt.Errorf("no value at %x", key)
		}
		v = bytes.Clone(v)
		v[offset(v)] ^= 0x5a
		return b.Put(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBackgroundSnapshot: the commit that takes the log to SnapshotEvery
// entries starts a background snapshot; once the lag has passed, collection
// removes what it covers.
func TestBackgroundSnapshot(t *testing.T) {
	ctx := t.Context()
	clock := storetest.NewClock()
	type snap struct {
		gen   int64
		bytes int
	}
	snaps := make(chan snap, 10)
	s := open(t, t.TempDir(), Options{
		Now:           clock.Now,
		SnapshotEvery: 5,
		MaintainEvery: -1,
		OnSnapshot: func(pool string, gen int64, bytes int) {
			select {
			case snaps <- snap{gen, bytes}:
			default:
			}
		},
	})
	if err := s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	want := &statev1.PoolState{}
	for i := 1; i <= 5; i++ {
		if _, err := s.Commit(ctx, "p", int64(i), delta(i)); err != nil {
			t.Fatal(err)
		}
		want = nodestore.ApplyDelta(want, delta(i))
	}
	got := <-snaps
	if got.gen != 6 || got.bytes <= 0 {
		t.Fatalf("OnSnapshot(gen %d, %d bytes), want generation 6", got.gen, got.bytes)
	}
	if h := headOf(t, s, "p"); h.snapGen != 6 || h.gen != 6 || h.logBytes != 0 {
		t.Fatalf("head after the snapshot: %+v", h)
	}
	checkLoad(t, s, "p", want, 6)
	if _, _, err := s.ReadLog(ctx, "p", 1); err != nil {
		t.Fatalf("ReadLog before the lag passed: %v", err)
	}
	clock.Advance(DefaultGCLag)
	if err := s.CollectNow(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadLog(ctx, "p", 1); !errors.Is(err, nodestore.ErrLogTruncated) {
		t.Fatalf("ReadLog after collection: %v", err)
	}
	st := s.Stats()
	if st.Commits != 5 || st.Snapshots != 1 || st.SnapshotBytes != int64(got.bytes) || st.CollectedLogs != 5 || st.CollectedShards != 1 {
		t.Fatalf("Stats() = %+v", st)
	}
	checkLoad(t, s, "p", want, 6)
}

// TestAbandonedSnapshot: the shards of a snapshot that never got installed
// are deleted by the next collection, whatever the clock.
func TestAbandonedSnapshot(t *testing.T) {
	s := open(t, t.TempDir(), Options{ShardBytes: MinShardBytes, MaintainEvery: -1})
	if err := s.CreatePool(t.Context(), "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	d := delta(1)
	d.TaskErrors[0].Error = randomText(5 * MinShardBytes)
	if _, err := s.Commit(t.Context(), "p", 1, d); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s.testHookBeforeInstall = cancel
	if err := s.SnapshotNow(ctx, "p"); !errors.Is(err, context.Canceled) {
		t.Fatalf("SnapshotNow canceled before installing: %v", err)
	}
	s.testHookBeforeInstall = nil
	count := func(bucket []byte) int {
		n := 0
		err := s.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(bucketPools).Bucket([]byte("p")).Bucket(bucket).Stats().KeyN
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if snaps, shards := count(bucketSnaps), count(bucketShards); snaps != 2 || shards < 3 {
		t.Fatalf("after an abandoned snapshot: %d snapshot records, %d shards", snaps, shards)
	}
	if err := s.CollectNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	if snaps, shards := count(bucketSnaps), count(bucketShards); snaps != 1 || shards != 1 {
		t.Fatalf("after collection: %d snapshot records, %d shards, want the pool's first snapshot only", snaps, shards)
	}
	checkLoad(t, s, "p", nodestore.ApplyDelta(&statev1.PoolState{}, d), 2)
}

// TestSurvivesKill: a commit that returned nil survives the process being
// killed. A child process commits and reports each generation; it is killed
// with SIGKILL mid-stream; every generation it reported must be there.
func TestSurvivesKill(t *testing.T) {
	if dir := os.Getenv("EMBEDDED_KILL_CHILD"); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSurvivesKill$")
	cmd.Env = append(os.Environ(), "EMBEDDED_KILL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked int64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if g, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			if acked, err = strconv.ParseInt(g, 10, 64); err != nil {
				t.Fatal(err)
			}
			if acked >= 30 {
				break
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if acked < 30 {
		t.Fatalf("the child acknowledged generations up to %d only", acked)
	}
	s := open(t, dir, Options{})
	_, gen, err := s.Load(t.Context(), "p")
	if err != nil {
		t.Fatal(err)
	}
	if gen < acked {
		t.Fatalf("after SIGKILL: generation %d, but %d was acknowledged", gen, acked)
	}
	t.Logf("acknowledged %d, found %d", acked, gen)
}

func killChild(dir string) {
	s, err := Open(dir, Options{})
	if err == nil {
		err = s.CreatePool(context.Background(), "p", &statev1.PoolState{})
	}
	for gen := int64(1); err == nil; gen++ {
		if _, err = s.Commit(context.Background(), "p", gen, delta(int(gen))); err == nil {
			fmt.Printf("committed %d\n", gen+1)
		}
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// TestLabPool runs a production-sized pool, 100,000 waiting requests and
// 5,000 bots, through the store:
//   - commit_bytes: a commit of 100 new requests writes a few KiB (< 64 KiB),
//     far below the snapshot;
//   - snapshot_does_not_block_commits: while a background snapshot is in
//     progress, commits keep succeeding. The snapshot is held before its
//     install until five more commits went through, which could never happen
//     if it blocked them; the longest commit meanwhile is logged, not
//     asserted;
//   - load: the state rebuilt from the snapshot and the log equals the
//     scheduler's.
func TestLabPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	l := labpool.Get(t)
	l.Mu.Lock()
	defer l.Mu.Unlock()

	const before = 50        // commits before the snapshot
	const every = before + 5 // the snapshot starts with the 5th commit after those
	type snap struct {
		gen   int64
		bytes int
		at    time.Time
	}
	snapped := make(chan snap, 1)
	held := make(chan struct{})    // closed when the snapshot reaches its install
	release := make(chan struct{}) // closed when it may install
	var once sync.Once
	s := open(t, t.TempDir(), Options{
		SnapshotEvery: every,
		MaintainEvery: -1,
		OnSnapshot: func(_ string, gen int64, n int) {
			select {
			case snapped <- snap{gen, n, time.Now()}:
			default:
			}
		},
	})
	s.testHookBeforeInstall = func() {
		once.Do(func() {
			close(held)
			select {
			case <-release:
			case <-time.After(time.Minute): // a failure bound, not synchronization
			}
		})
	}
	if err := s.CreatePool(ctx, "lab", l.State()); err != nil {
		t.Fatal(err)
	}
	gen := int64(1)
	commit := func(t *testing.T) (int, time.Duration) {
		t.Helper()
		d := l.Delta(t, 100)
		if len(d.Waiting) != 100 {
			t.Fatalf("delta of %d requests", len(d.Waiting))
		}
		t0 := time.Now()
		cs, err := s.Commit(ctx, "lab", gen, d)
		lat := time.Since(t0)
		if err != nil {
			t.Fatalf("Commit(%d): %v", gen, err)
		}
		gen = cs.Generation
		return cs.LogBytes, lat
	}

	var avg int
	t.Run("commit_bytes", func(t *testing.T) {
		total := 0
		for range before {
			n, _ := commit(t)
			total += n
		}
		avg = total / before
		if avg >= 64<<10 {
			t.Errorf("average commit wrote %d bytes, want < 64 KiB", avg)
		}
		if st := s.Stats(); st.LogBytes != int64(total) || st.Commits != before {
			t.Errorf("Stats() = %+v, want %d log bytes in %d commits", st, total, before)
		}
	})

	t.Run("snapshot_does_not_block_commits", func(t *testing.T) {
		var longest time.Duration
		var started time.Time
		for range 5 { // the 5th starts the snapshot
			_, lat := commit(t)
			longest, started = max(longest, lat), time.Now()
		}
		longest = 0
		during := 0
		for range 5 { // while the snapshot is being built, most likely
			_, lat := commit(t)
			longest = max(longest, lat)
			during++
		}
		select {
		case <-held:
		case <-time.After(time.Minute):
			t.Fatal("the snapshot never reached its install")
		}
		for range 5 { // while it waits to be installed, certainly
			_, lat := commit(t)
			longest = max(longest, lat)
			during++
		}
		close(release)
		var sn snap
		select {
		case sn = <-snapped:
		case <-time.After(time.Minute):
			t.Fatal("the snapshot was never installed")
		}
		t.Logf("state: %d waiting requests; average commit %d bytes; snapshot of generation %d: %d bytes in %v; %d commits meanwhile, the longest %v",
			len(l.Current().Waiting), avg, sn.gen, sn.bytes, sn.at.Sub(started), during, longest)
		if sn.gen <= every || sn.gen >= gen {
			t.Errorf("snapshot of generation %d, want one after %d and before %d", sn.gen, every, gen)
		}
		if avg*100 > sn.bytes {
			t.Errorf("average commit wrote %d bytes, more than 1%% of the %d-byte snapshot", avg, sn.bytes)
		}
		if h := headOf(t, s, "lab"); h.gen != gen || h.snapGen != sn.gen || h.logBytes <= 0 {
			t.Errorf("head after the snapshot: %+v", h)
		}
	})

	t.Run("load", func(t *testing.T) {
		checkLoad(t, s, "lab", l.Current(), gen)
	})
}

// TestFullDisk needs a small file system of its own, e.g. as root:
//
//	mkdir -p /tmp/tiny && mount -t tmpfs -o size=2m tmpfs /tmp/tiny
//	QSCHEDULER_TINY_FS=/tmp/tiny go test ./nodestore/embedded -run TestFullDisk -v
//
// Once the disk is full, commits fail (some still succeed, in pages bbolt
// freed) and so does CheckWrite, every time, although a small bbolt
// transaction alone still succeeds; once there is room again, CheckWrite
// succeeds.
func TestFullDisk(t *testing.T) {
	root := os.Getenv("QSCHEDULER_TINY_FS")
	if root == "" {
		t.Skip("QSCHEDULER_TINY_FS is not set")
	}
	dir, err := os.MkdirTemp(root, "store")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s := open(t, dir, Options{MaintainEvery: -1})
	ctx := t.Context()
	if err := s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	gen := int64(1)
	commit := func() error {
		d := &statev1.PoolDelta{TaskErrors: []*statev1.TaskError{{TaskId: fmt.Sprintf("t%d", gen), Error: strings.Repeat("e", 700)}}}
		cs, err := s.Commit(ctx, "p", gen, d)
		if err == nil {
			gen = cs.Generation
		}
		return err
	}
	for range 20 {
		if err := commit(); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(root, "filler")
	defer os.Remove(filler)
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 4096); ; {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	var failed, ok, tx int
	for range 200 {
		if err := commit(); err != nil {
			failed++
		} else {
			ok++
		}
		if err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyWriteCheck, []byte("x"))
		}); err == nil {
			tx++
		}
	}
	t.Logf("on a full disk: %d commits failed, %d succeeded; %d of 200 small transactions succeeded", failed, ok, tx)
	if failed == 0 {
		t.Fatal("no commit failed on a full disk")
	}
	for i := range 5 {
		if err := s.CheckWrite(ctx); err == nil || !strings.Contains(err.Error(), "no space left") {
			t.Errorf("CheckWrite %d on a full disk: %v, want ENOSPC", i, err)
		}
	}
	os.Remove(filler)
	if err := s.CheckWrite(ctx); err != nil {
		t.Errorf("CheckWrite once there is room: %v", err)
	}
	if err := commit(); err != nil {
		t.Errorf("a commit once there is room: %v", err)
	}
}
