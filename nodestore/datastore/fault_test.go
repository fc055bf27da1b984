package datastore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	gds "cloud.google.com/go/datastore"
	pb "cloud.google.com/go/datastore/apiv1/datastorepb"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsemu"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsproxy"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/storetest"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The retry settings of the fault tests: a short backoff, so that a test
// that uses every attempt stays short. An attempt may take patientTimeout,
// which no test waits for, or hangTimeout in the tests where calls hang
// until the attempt's deadline: long enough for any attempt that does not
// hang, even on a loaded machine.
const (
	faultAttempts   = 4
	faultRetryDelay = 20 * time.Millisecond
	patientTimeout  = 30 * time.Second
	hangTimeout     = time.Second
)

// faulty is a store whose calls go through a fault-injecting proxy in front
// of the test binary's emulator, with a client of the same project that
// goes to the emulator directly, to look at what it holds.
type faulty struct {
	s       *Store
	px      *dsproxy.Proxy
	c       *gds.Client
	project string
	clock   *storetest.Clock
}

// openFaulty opens the store with o, whose zero Attempts, RetryDelay and
// AttemptTimeout are the fault tests' settings.
func openFaulty(t *testing.T, o Options) *faulty {
	t.Helper()
	emu := dsemu.Shared(t)
	px, err := dsproxy.Start(emu.Host())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	project := dsemu.ProjectID()
	f := &faulty{px: px, project: project, clock: storetest.NewClock()}
	t.Setenv("DATASTORE_EMULATOR_HOST", px.Addr())
	o.CodeVersion, o.MaintainEvery, o.Now, o.GCLag, o.ShardBytes = "test", -1, f.clock.Now, testLag, MinShardBytes
	if o.Attempts == 0 {
		o.Attempts = faultAttempts
	}
	if o.RetryDelay == 0 {
		o.RetryDelay = faultRetryDelay
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = patientTimeout
	}
	f.s, err = Open(t.Context(), project, "", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.s.Close() })
	t.Setenv("DATASTORE_EMULATOR_HOST", emu.Host())
	f.c, err = gds.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.c.Close() })
	return f
}

// stamp is a delta that records n.
func stamp(n int64) *statev1.PoolDelta {
	return &statev1.PoolDelta{LastUpdateUnixNanos: proto.Int64(n), TaskErrors: []*statev1.TaskError{{TaskId: fmt.Sprintf("t%d", n), Error: "e"}}}
}

// checkAt checks that the pool is at generation gen, with the deltas
// stamp(2)..stamp(gen) each applied once: what Load builds and what
// ReadLog returns after generation 1.
func (f *faulty) checkAt(t *testing.T, pool string, gen int64) {
	t.Helper()
	ctx := t.Context()
	st, got, err := f.s.Load(ctx, pool)
	if err != nil || got != gen {
		t.Fatalf("Load: generation %d, %v; want %d", got, err, gen)
	}
	if len(st.TaskErrors) != int(gen-1) || gen > 1 && st.GetLastUpdateUnixNanos() != gen {
		t.Errorf("Load at generation %d: %d task errors, last update %d; want %d and %d", gen, len(st.TaskErrors), st.GetLastUpdateUnixNanos(), gen-1, gen)
	}
	ds, last, err := f.s.ReadLog(ctx, pool, 1)
	if err != nil || last != gen || len(ds) != int(gen-1) {
		t.Fatalf("ReadLog after 1: %d deltas up to %d, %v; want %d up to %d", len(ds), last, err, gen-1, gen)
	}
	for i, d := range ds {
		if !proto.Equal(d, stamp(int64(i)+2)) {
			t.Errorf("ReadLog: entry %d is %v, want %v", i+2, d, stamp(int64(i)+2))
		}
	}
}

// TestTransientFaultsRetried: a transient fault on any call a commit or a
// load makes (Aborted on the commit, Unavailable or DeadlineExceeded on any
// call) is retried with a growing backoff and, if it clears within the
// attempts, the caller sees nothing of it: the operation succeeds and its
// effect is there once.
func TestTransientFaultsRetried(t *testing.T) {
	f := openFaulty(t, Options{})
	ctx := t.Context()
	if err := f.s.CreatePool(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	gen := int64(1)
	for _, tc := range []struct {
		method dsproxy.Method
		fault  dsproxy.Fault
		load   bool // fault a Load rather than a Commit
	}{
		{dsproxy.Commit, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Aborted}, false},
		{dsproxy.Commit, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable}, false},
		{dsproxy.Commit, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.DeadlineExceeded}, false},
		{dsproxy.BeginTransaction, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable}, false},
		{dsproxy.Lookup, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable}, false},
		{dsproxy.Lookup, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.DeadlineExceeded}, true},
		{dsproxy.RunQuery, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable}, true},
	} {
		name := fmt.Sprintf("%s/%v/%v", tc.method, tc.fault.Action, tc.fault.Code)
		if tc.load {
			name += "/load"
		}
		t.Run(name, func(t *testing.T) {
			start := len(f.px.Calls(tc.method))
			f.px.Inject(dsproxy.Rule{Method: tc.method, Times: faultAttempts - 1, Fault: tc.fault})
			if tc.load {
				if _, got, err := f.s.Load(ctx, "p"); err != nil || got != gen {
					t.Fatalf("Load: generation %d, %v; want %d", got, err, gen)
				}
			} else {
				cs, err := f.s.Commit(ctx, "p", gen, stamp(gen+1))
				if err != nil || cs.Generation != gen+1 {
					t.Fatalf("Commit: %+v, %v; want generation %d", cs, err, gen+1)
				}
				gen++
			}
			if n := f.px.Pending(); n != 0 {
				t.Fatalf("%d faults not used: the operation did not make the call faulted", n)
			}
			f.checkAt(t, "p", gen)
			// Each retry waited at least half its backoff (the jitter's
			// floor); the first backoff is RetryDelay, doubling.
			calls := f.px.Calls(tc.method)[start:]
			var hit []time.Time
			for i, c := range calls {
				if c.Action != 0 && i+1 < len(calls) {
					hit = append(hit, c.At, calls[i+1].At)
				}
			}
			delay := faultRetryDelay
			for i := 0; i+1 < len(hit); i += 2 {
				if gap := hit[i+1].Sub(hit[i]); gap < delay/2 {
					t.Errorf("retry %d came %v after the failed call, less than half the backoff of %v", i/2+1, gap, delay)
				}
				delay *= 2
			}
		})
	}
}

// TestAttemptTimeout: a call that never answers ends with its attempt's
// deadline and is retried; the caller sees nothing of it.
func TestAttemptTimeout(t *testing.T) {
	f := openFaulty(t, Options{AttemptTimeout: hangTimeout})
	ctx := t.Context()
	if err := f.s.CreatePool(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	f.px.Inject(dsproxy.Rule{Method: dsproxy.Commit, Times: 1, Fault: dsproxy.Fault{Action: dsproxy.Hang}})
	if cs, err := f.s.Commit(ctx, "p", 1, stamp(2)); err != nil || cs.Generation != 2 {
		t.Fatalf("Commit: %+v, %v; want generation 2", cs, err)
	}
	f.px.Inject(dsproxy.Rule{Method: dsproxy.Lookup, Times: 1, Fault: dsproxy.Fault{Action: dsproxy.Hang}})
	f.checkAt(t, "p", 2)
	if n := f.px.Pending(); n != 0 {
		t.Fatalf("%d faults not used", n)
	}
}

// TestRetriesGiveUp: once every attempt has failed, the error surfaces,
// says so and carries the code; the commit left nothing: the pool stays at
// its last committed generation for Load and ReadLog, and takes the next
// commit at that generation.
func TestRetriesGiveUp(t *testing.T) {
	f := openFaulty(t, Options{})
	ctx := t.Context()
	if err := f.s.CreatePool(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Commit(ctx, "p", 1, stamp(2)); err != nil {
		t.Fatal(err)
	}
	for _, code := range []codes.Code{codes.Aborted, codes.Unavailable} {
		f.px.Inject(dsproxy.Rule{Method: dsproxy.Commit, Fault: dsproxy.Fault{Action: dsproxy.Fail, Code: code}})
		before := len(f.px.Calls(dsproxy.Commit))
		_, err := f.s.Commit(ctx, "p", 2, stamp(3))
		f.px.Clear()
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts", faultAttempts)) {
			t.Errorf("Commit failing with %v every time: %v, want it to give up after %d attempts", code, err, faultAttempts)
		}
		if code == codes.Unavailable && status.Code(err) != codes.Unavailable {
			t.Errorf("Commit failing with Unavailable: %v carries code %v", err, status.Code(err))
		}
		if errors.Is(err, nodestore.ErrConflict) {
			t.Errorf("Commit failing with %v: %v, a conflict", code, err)
		}
		if n := len(f.px.Calls(dsproxy.Commit)) - before; n != faultAttempts {
			t.Errorf("%d commit calls, want %d", n, faultAttempts)
		}
		f.checkAt(t, "p", 2)
	}
	if _, err := f.s.Commit(ctx, "p", 2, stamp(3)); err != nil {
		t.Fatalf("the commit after the faults: %v", err)
	}
	f.checkAt(t, "p", 3)
}

// TestLostCommitAnswer: a commit that lands but whose answer is lost (an
// error instead of the answer, or no answer before the attempt's deadline)
// is found by the next attempt and reported as done, at its generation,
// and applied once.
func TestLostCommitAnswer(t *testing.T) {
	f := openFaulty(t, Options{AttemptTimeout: hangTimeout})
	ctx := t.Context()
	if err := f.s.CreatePool(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	gen := int64(1)
	for _, fault := range []dsproxy.Fault{
		{Action: dsproxy.Lose, Code: codes.Unavailable},
		{Action: dsproxy.Lose, Code: codes.DeadlineExceeded},
		{Action: dsproxy.LandAndHang},
	} {
		f.px.Inject(dsproxy.Rule{Method: dsproxy.Commit, Times: 1, Fault: fault})
		cs, err := f.s.Commit(ctx, "p", gen, stamp(gen+1))
		if err != nil || cs.Generation != gen+1 {
			t.Fatalf("Commit whose answer is lost by %v %v: %+v, %v; want generation %d", fault.Action, fault.Code, cs, err, gen+1)
		}
		gen++
		f.checkAt(t, "p", gen)
	}
}

// TestLostCommitAnswerThenAnotherCommit: a commit that lands, and whose
// answer is lost while another replica commits after it, is reported as
// done at its own generation when its retry finds it in the log: it is not
// reported as a conflict (its caller would replay a batch that landed),
// and the other replica's entry is not taken for it.
func TestLostCommitAnswerThenAnotherCommit(t *testing.T) {
	f := openFaulty(t, Options{})
	ctx := t.Context()
	if err := f.s.CreatePool(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	gen := int64(1)
	// Another replica, on the emulator directly.
	other, err := Open(ctx, f.project, "", Options{CodeVersion: "other", MaintainEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	g := dsproxy.NewGate()
	f.px.Inject(dsproxy.Rule{Method: dsproxy.Commit, Match: dsproxy.Transactional, Times: 1, Fault: dsproxy.Fault{Action: dsproxy.Lose, Code: codes.Unavailable, Gate: g}})
	type result struct {
		cs  nodestore.CommitStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		cs, err := f.s.Commit(ctx, "p", gen, stamp(gen+1))
		done <- result{cs, err}
	}()
	<-g.Arrived()
	if _, err := other.Commit(ctx, "p", gen, stamp(gen+1)); !errors.Is(err, nodestore.ErrConflict) {
		t.Fatalf("the other replica's commit at %d: %v, want a conflict with the landed one", gen, err)
	}
	if _, err := other.Commit(ctx, "p", gen+1, stamp(gen+2)); err != nil {
		t.Fatalf("the other replica's commit at %d: %v", gen+1, err)
	}
	g.Open()
	r := <-done
	if r.err != nil || r.cs.Generation != gen+1 {
		t.Fatalf("the commit whose answer was lost while another followed it: %+v, %v; want generation %d", r.cs, r.err, gen+1)
	}
	f.checkAt(t, "p", gen+2)
	// Its next commit, at the generation it was told, conflicts with the
	// other replica's, as any commit behind another does.
	if _, err := f.s.Commit(ctx, "p", gen+1, stamp(gen+2)); !errors.Is(err, nodestore.ErrConflict) {
		t.Errorf("the next commit at %d: %v, want a conflict", gen+1, err)
	}
}

// TestLostCreateAndDeleteAnswers: a CreatePool or a DeletePool whose
// transaction lands but whose answer is lost succeeds, rather than
// reporting that the pool it created exists or the one it deleted does
// not.
func TestLostCreateAndDeleteAnswers(t *testing.T) {
	f := openFaulty(t, Options{})
	ctx := t.Context()
	lose := dsproxy.Rule{Method: dsproxy.Commit, Match: dsproxy.Transactional, Times: 1, Fault: dsproxy.Fault{Action: dsproxy.Lose, Code: codes.Unavailable}}
	f.px.Inject(lose)
	if err := f.s.CreatePool(ctx, "p", nil); err != nil {
		t.Fatalf("CreatePool whose answer is lost: %v", err)
	}
	f.checkAt(t, "p", 1)
	f.px.Inject(lose)
	if err := f.s.DeletePool(ctx, "p"); err != nil {
		t.Fatalf("DeletePool whose answer is lost: %v", err)
	}
	if _, _, err := f.s.Load(ctx, "p"); !errors.Is(err, nodestore.ErrNotFound) {
		t.Errorf("Load after the DeletePool: %v, want ErrNotFound", err)
	}
	if left := f.keysUnder(t, "p"); len(left) != 0 {
		t.Errorf("DeletePool left %v", left)
	}
	if n := f.px.Pending(); n != 0 {
		t.Fatalf("%d faults not used", n)
	}
}

// keysUnder returns every entity stored under the pool's key, the head
// included.
func (f *faulty) keysUnder(t *testing.T, pool string) []*gds.Key {
	t.Helper()
	keys, err := f.c.GetAll(t.Context(), gds.NewQuery("").Ancestor(poolKey(pool)).KeysOnly(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func kinds(keys []*gds.Key) map[string]int {
	m := map[string]int{}
	for _, k := range keys {
		m[k.Kind]++
	}
	return m
}

// bigState needs several shards of MinShardBytes; each call returns
// another.
func bigState() *statev1.PoolState {
	return &statev1.PoolState{TaskErrors: []*statev1.TaskError{{TaskId: "big", Error: incompressible(5 * MinShardBytes)}}}
}

// TestSnapshotTimeout: a snapshot whose shards, or whose installation,
// time out never shows: Load returns the committed state from the previous
// snapshot, and commits go on. An installation that landed though its
// answer was lost counts as installed. The next snapshot succeeds and the
// collection removes what the failed ones left.
func TestSnapshotTimeout(t *testing.T) {
	f := openFaulty(t, Options{Attempts: 2, AttemptTimeout: hangTimeout})
	ctx := t.Context()
	initial := bigState()
	if err := f.s.CreatePool(ctx, "p", initial); err != nil {
		t.Fatal(err)
	}
	var first headEnt
	if err := f.c.Get(ctx, poolKey("p"), &first); err != nil {
		t.Fatal(err)
	}
	gen := int64(1)
	commit := func() {
		t.Helper()
		if _, err := f.s.Commit(ctx, "p", gen, stamp(gen+1)); err != nil {
			t.Fatal(err)
		}
		gen++
	}
	check := func(when string) {
		t.Helper()
		st, got, err := f.s.Load(ctx, "p")
		if err != nil || got != gen {
			t.Fatalf("%s: Load: generation %d, %v; want %d", when, got, err, gen)
		}
		want := initial
		for g := int64(2); g <= gen; g++ {
			want = nodestore.ApplyDelta(want, stamp(g))
		}
		if !proto.Equal(st, want) {
			t.Errorf("%s: Load returns another state than the one committed", when)
		}
	}
	install := dsproxy.Both(dsproxy.Transactional, dsproxy.Writes(KindSnapshot))
	for _, tc := range []struct {
		name  string
		rule  dsproxy.Rule
		lands bool
	}{
		// The shards land, every time, and no answer comes.
		{"shards", dsproxy.Rule{Method: dsproxy.Commit, Match: dsproxy.Writes(KindShard), Fault: dsproxy.Fault{Action: dsproxy.LandAndHang}}, false},
		{"install", dsproxy.Rule{Method: dsproxy.Commit, Match: install, Fault: dsproxy.Fault{Action: dsproxy.Hang}}, false},
		{"install answer", dsproxy.Rule{Method: dsproxy.Commit, Match: install, Times: 1, Fault: dsproxy.Fault{Action: dsproxy.LandAndHang}}, true},
	} {
		commit()
		var before headEnt
		if err := f.c.Get(ctx, poolKey("p"), &before); err != nil {
			t.Fatal(err)
		}
		f.px.Inject(tc.rule)
		err := f.s.SnapshotNow(ctx, "p")
		f.px.Clear()
		if tc.lands != (err == nil) {
			t.Errorf("%s: SnapshotNow: %v", tc.name, err)
		}
		var after headEnt
		if err := f.c.Get(ctx, poolKey("p"), &after); err != nil {
			t.Fatal(err)
		}
		if moved := after.SnapGen != before.SnapGen; moved != tc.lands {
			t.Errorf("%s: the head's snapshot went from generation %d to %d", tc.name, before.SnapGen, after.SnapGen)
		}
		check("after the snapshot that timed out on its " + tc.name)
		commit()
		check("after a commit that followed it")
	}
	if got := kinds(f.keysUnder(t, "p"))[KindSnapshot]; got != 4 {
		t.Errorf("%d snapshot records, want 4: the first, two left pending, the installed one", got)
	}
	// The next snapshot succeeds; once it has been installed for the lag,
	// the collection leaves it alone, with its shards and no log entry.
	if err := f.s.SnapshotNow(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	check("after the next snapshot")
	f.clock.Advance(testLag)
	if err := f.s.CollectNow(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the collection")
	var h headEnt
	if err := f.c.Get(ctx, poolKey("p"), &h); err != nil {
		t.Fatal(err)
	}
	got := kinds(f.keysUnder(t, "p"))
	if got[KindSnapshot] != 1 || got[KindShard] != int(h.Shards) || got[KindLog] != 0 || h.SnapGen != gen {
		t.Errorf("after the collection the pool holds %v, its snapshot of generation %d has %d shards; want 1 snapshot of generation %d, its shards, no log", got, h.SnapGen, h.Shards, gen)
	}
	if h.Shards < 2 || first.Shards < 2 {
		t.Errorf("snapshots of %d and %d shards: the test needs several", first.Shards, h.Shards)
	}
}

// TestLeftoversCollected: what a CreatePool leaves when it fails and its
// cleanup fails too, and the shards a snapshot writes after a DeletePool
// removed its pool, are no pool (ListPools, Load) and are collected: the
// first once they are GCLag old, the second at once.
func TestLeftoversCollected(t *testing.T) {
	f := openFaulty(t, Options{})
	ctx := t.Context()

	// A CreatePool whose transaction fails, and whose cleanup too.
	f.px.Inject(
		dsproxy.Rule{Method: dsproxy.Commit, Match: dsproxy.Transactional, Fault: dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable}},
		dsproxy.Rule{Method: dsproxy.Commit, Match: dsproxy.Deletes(), Fault: dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable}},
	)
	if err := f.s.CreatePool(ctx, "created", bigState()); err == nil {
		t.Fatal("CreatePool succeeded through failing commits")
	}
	f.px.Clear()
	left := kinds(f.keysUnder(t, "created"))
	if left[KindPool] != 0 || left[KindShard] < 2 || left[KindSnapshot] != 1 {
		t.Fatalf("the failed CreatePool left %v; want shards and a record, no head", left)
	}

	// A snapshot whose shards land after a DeletePool, and whose cleanup
	// fails.
	if err := f.s.CreatePool(ctx, "deleted", bigState()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Commit(ctx, "deleted", 1, stamp(2)); err != nil {
		t.Fatal(err)
	}
	g := dsproxy.NewGate()
	f.px.Inject(dsproxy.Rule{Method: dsproxy.Commit, Match: dsproxy.Writes(KindShard), Times: 1, Fault: dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable, Gate: g}})
	snapped := make(chan error, 1)
	go func() { snapped <- f.s.SnapshotNow(ctx, "deleted") }()
	<-g.Arrived()
	if err := f.s.DeletePool(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	if left := f.keysUnder(t, "deleted"); len(left) != 0 {
		t.Fatalf("DeletePool left %v", left)
	}
	f.px.Inject(dsproxy.Rule{Method: dsproxy.Commit, Match: dsproxy.Deletes(), Fault: dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable}})
	g.Open()
	if err := <-snapped; !errors.Is(err, nodestore.ErrNotFound) {
		t.Fatalf("the snapshot of the deleted pool: %v, want ErrNotFound", err)
	}
	f.px.Clear()
	left = kinds(f.keysUnder(t, "deleted"))
	if left[KindPool] != 0 || left[KindShard] < 2 || left[KindSnapshot] != 0 {
		t.Fatalf("the snapshot racing DeletePool left %v; want shards alone", left)
	}

	if ids, err := f.s.ListPools(ctx); err != nil || len(ids) != 0 {
		t.Errorf("ListPools: %q, %v; want no pool", ids, err)
	}
	for _, pool := range []string{"created", "deleted"} {
		if _, _, err := f.s.Load(ctx, pool); !errors.Is(err, nodestore.ErrNotFound) {
			t.Errorf("Load(%q): %v, want ErrNotFound", pool, err)
		}
	}
	if err := f.s.CollectNow(ctx); err != nil {
		t.Fatal(err)
	}
	if left := f.keysUnder(t, "deleted"); len(left) != 0 {
		t.Errorf("the collection left %v of the snapshot that raced DeletePool", left)
	}
	if left := kinds(f.keysUnder(t, "created")); left[KindShard] < 2 {
		t.Errorf("the collection removed the leftovers of a CreatePool before the lag: %v left", left)
	}
	f.clock.Advance(testLag)
	if err := f.s.CollectNow(ctx); err != nil {
		t.Fatal(err)
	}
	if left := f.keysUnder(t, "created"); len(left) != 0 {
		t.Errorf("the collection left %v of the failed CreatePool", left)
	}
	for _, pool := range []string{"created", "deleted"} {
		if err := f.s.CreatePool(ctx, pool, nil); err != nil {
			t.Errorf("CreatePool(%q) after the collection: %v", pool, err)
		}
	}
}

// TestInstallWaitsForCommits: a snapshot's install and the process's
// commits to the pool never run their transactions at the same time. Both
// read and then write the pool's head, and the emulator lets one of two
// such transactions wait about 2 s for the other. Each transaction runs
// from its read of the head (a Lookup in the transaction) to the answer of
// its Commit; over 3 snapshots taken while commits go on, no install's
// span overlaps a commit's.
func TestInstallWaitsForCommits(t *testing.T) {
	f := openFaulty(t, Options{})
	ctx := t.Context()
	if err := f.s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	snapped := make(chan error)
	go func() {
		for range 3 {
			if err := f.s.SnapshotNow(ctx, "p"); err != nil {
				snapped <- err
				return
			}
		}
		snapped <- nil
	}()
	gen := int64(1)
	for done := false; !done; {
		select {
		case err := <-snapped:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		default:
		}
		cs, err := f.s.Commit(ctx, "p", gen, stamp(gen))
		if err != nil {
			t.Fatal(err)
		}
		gen = cs.Generation
	}
	type span struct{ from, to time.Time }
	reads := map[string]time.Time{} // transaction -> its first read
	for _, c := range f.px.Calls(dsproxy.Lookup) {
		if tx := string(c.Req.(*pb.LookupRequest).GetReadOptions().GetTransaction()); tx != "" {
			if _, seen := reads[tx]; !seen {
				reads[tx] = c.At
			}
		}
	}
	var installs, commits []span
	for _, c := range f.px.Calls(dsproxy.Commit) {
		req := c.Req.(*pb.CommitRequest)
		from, ok := reads[string(req.GetTransaction())]
		if !ok || !c.Answered {
			continue
		}
		for _, m := range req.GetMutations() {
			switch m.GetUpsert().GetKey().GetPath()[len(m.GetUpsert().GetKey().GetPath())-1].GetKind() {
			case KindSnapshot:
				installs = append(installs, span{from, c.Done})
			case KindLog:
				commits = append(commits, span{from, c.Done})
			default:
				continue
			}
			break
		}
	}
	if len(installs) == 0 || len(commits) < 2 {
		t.Fatalf("%d installs and %d commits seen: the test did not run them together", len(installs), len(commits))
	}
	for _, in := range installs {
		for _, c := range commits {
			if in.from.Before(c.to) && c.from.Before(in.to) {
				t.Errorf("an install's transaction (%v to %v) overlapped a commit's (%v to %v)",
					in.from.Format(time.StampMicro), in.to.Format(time.StampMicro), c.from.Format(time.StampMicro), c.to.Format(time.StampMicro))
			}
		}
	}
}
