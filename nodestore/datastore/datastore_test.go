package datastore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	gds "cloud.google.com/go/datastore"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsemu"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/storetest"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { os.Exit(dsemu.Main(m)) }

const testLag = 10 * time.Minute

// open returns a store on the test binary's emulator, in a project of its
// own, and a client of the same project to look at what it stored.
func open(t testing.TB, o Options) (*Store, *gds.Client) {
	t.Helper()
	emu := dsemu.Shared(t)
	t.Setenv("DATASTORE_EMULATOR_HOST", emu.Host())
	project := dsemu.ProjectID()
	if o.MaintainEvery == 0 {
		o.MaintainEvery = -1 // the tests drive the background work
	}
	o.CodeVersion = "test"
	s, err := Open(t.Context(), project, "", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := gds.NewClient(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodestore.Store {
		clock := storetest.NewClock()
		s, _ := open(t, Options{Now: clock.Now, GCLag: testLag})
		return storetest.WithClock(s, clock, testLag)
	})
}

// incompressible returns n bytes of text flate cannot shrink much.
func incompressible(n int) string {
	b := make([]byte, n*3/4+3)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)[:n]
}

func bigDelta(n int) *statev1.PoolDelta {
	return &statev1.PoolDelta{TaskErrors: []*statev1.TaskError{{TaskId: "t", Error: incompressible(n)}}}
}

// count returns the keys of kind under the pool's current incarnation.
func count(t *testing.T, c *gds.Client, pool, kind string) []*gds.Key {
	t.Helper()
	var h headEnt
	if err := c.Get(t.Context(), poolKey(pool), &h); err != nil {
		t.Fatalf("reading the head of %q: %v", pool, err)
	}
	keys, err := c.GetAll(t.Context(), gds.NewQuery(kind).Ancestor(incKey(pool, h.Incarnation)).KeysOnly(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestEntityLimits: a state or a delta larger than an entity may be is
// split over several entities of at most ShardBytes; all of it reads back.
func TestEntityLimits(t *testing.T) {
	s, c := open(t, Options{})
	ctx := t.Context()
	st := &statev1.PoolState{TaskErrors: []*statev1.TaskError{{TaskId: "big", Error: incompressible(2_500_000)}}}
	if err := s.CreatePool(ctx, "p", st); err != nil {
		t.Fatal(err)
	}
	d := bigDelta(2_000_000)
	cs, err := s.Commit(ctx, "p", 1, d)
	if err != nil {
		t.Fatal(err)
	}
	if cs.LogBytes < 1_400_000 {
		t.Fatalf("LogBytes %d: the delta compressed better than expected", cs.LogBytes)
	}
	for _, kind := range []string{KindShard, KindLog} {
		keys := count(t, c, "p", kind)
		if len(keys) < 2 {
			t.Errorf("%d %s entities, want the payload split over several", len(keys), kind)
		}
		ents := make([]blobEnt, len(keys))
		if err := c.GetMulti(ctx, keys, ents); err != nil {
			t.Fatal(err)
		}
		for i, e := range ents {
			if len(e.Data) > DefaultShardBytes {
				t.Errorf("%v holds %d bytes, more than %d", keys[i], len(e.Data), DefaultShardBytes)
			}
		}
	}
	got, gen, err := s.Load(ctx, "p")
	if err != nil || gen != 2 || !proto.Equal(got, nodestore.ApplyDelta(st, d)) {
		t.Fatalf("Load: generation %d, error %v, equal %v", gen, err, proto.Equal(got, nodestore.ApplyDelta(st, d)))
	}
	ds, _, err := s.ReadLog(ctx, "p", 1)
	if err != nil || len(ds) != 1 || !proto.Equal(ds[0], d) {
		t.Fatalf("ReadLog: %d deltas, error %v", len(ds), err)
	}
}

// TestReadsLargerThanOneMessage: a pool whose snapshot and log each hold
// more than gRPC's default 4 MiB message loads, reads its log and takes a
// snapshot: a single read may answer with many entities of up to
// ShardBytes each.
func TestReadsLargerThanOneMessage(t *testing.T) {
	s, _ := open(t, Options{})
	ctx := t.Context()
	st := &statev1.PoolState{TaskErrors: []*statev1.TaskError{{TaskId: "big", Error: incompressible(6_000_000)}}}
	if err := s.CreatePool(ctx, "p", st); err != nil {
		t.Fatal(err)
	}
	want := st
	var ds []*statev1.PoolDelta
	for gen := int64(1); gen <= 3; gen++ {
		d := bigDelta(2_000_000)
		if _, err := s.Commit(ctx, "p", gen, d); err != nil {
			t.Fatal(err)
		}
		want, ds = nodestore.ApplyDelta(want, d), append(ds, d)
	}
	got, gen, err := s.Load(ctx, "p")
	if err != nil || gen != 4 || !proto.Equal(got, want) {
		t.Fatalf("Load: generation %d, error %v", gen, err)
	}
	if read, _, err := s.ReadLog(ctx, "p", 1); err != nil || len(read) != 3 || !proto.Equal(read[2], ds[2]) {
		t.Fatalf("ReadLog: %d deltas, error %v", len(read), err)
	}
	if err := s.SnapshotNow(ctx, "p"); err != nil {
		t.Fatalf("SnapshotNow: %v", err)
	}
	if got, gen, err := s.Load(ctx, "p"); err != nil || gen != 4 || !proto.Equal(got, want) {
		t.Fatalf("Load after the snapshot: generation %d, error %v", gen, err)
	}
}

// TestCommitLimits: a commit that would need more than 500 mutations or
// 10 MiB is refused, naming the limit, and writes nothing; the emulator
// would have taken it.
func TestCommitLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		shard int
		delta int
		want  string
	}{
		{"mutations", MinShardBytes, 800_000, "500"},
		{"bytes", DefaultShardBytes, 15 << 20, "10 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := open(t, Options{ShardBytes: tc.shard})
			ctx := t.Context()
			if err := s.CreatePool(ctx, "p", nil); err != nil {
				t.Fatal(err)
			}
			_, err := s.Commit(ctx, "p", 1, bigDelta(tc.delta))
			if !errors.Is(err, ErrCommitTooLarge) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Commit of a %d-byte delta in shards of %d: %v, want ErrCommitTooLarge naming %q", tc.delta, tc.shard, err, tc.want)
			}
			t.Log(err)
			if keys := count(t, c, "p", KindLog); len(keys) != 0 {
				t.Errorf("%d log entities written", len(keys))
			}
			if _, gen, err := s.Load(ctx, "p"); err != nil || gen != 1 {
				t.Errorf("Load after the refused commit: generation %d, %v; want 1", gen, err)
			}
			// The pool still takes commits.
			if _, err := s.Commit(ctx, "p", 1, &statev1.PoolDelta{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReaderKeepsShards: the shards a head pointed to stay readable by
// that pointer for the GC lag after a newer snapshot replaced them, so that
// a reader between reading the head and the shards never loses them.
func TestReaderKeepsShards(t *testing.T) {
	clock := storetest.NewClock()
	s, c := open(t, Options{Now: clock.Now, GCLag: testLag})
	ctx := t.Context()
	if err := s.CreatePool(ctx, "p", &statev1.PoolState{LastUpdateUnixNanos: proto.Int64(1)}); err != nil {
		t.Fatal(err)
	}
	var old headEnt // what a slow reader read
	if err := c.Get(ctx, poolKey("p"), &old); err != nil {
		t.Fatal(err)
	}
	oldShards := shardKeys(incKey("p", old.Incarnation), old.SnapID, int(old.Shards))
	readable := func() bool {
		err := c.GetMulti(ctx, oldShards, make([]blobEnt, len(oldShards)))
		var me gds.MultiError
		if errors.As(err, &me) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return true
	}
	if _, err := s.Commit(ctx, "p", 1, &statev1.PoolDelta{LastUpdateUnixNanos: proto.Int64(2)}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * testLag) // the first snapshot is old; its replacement is not
	if err := s.SnapshotNow(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(testLag - time.Second)
	if err := s.CollectNow(ctx); err != nil {
		t.Fatal(err)
	}
	if !readable() {
		t.Fatal("the replaced snapshot's shards were collected before the lag passed")
	}
	clock.Advance(time.Second)
	if err := s.CollectNow(ctx); err != nil {
		t.Fatal(err)
	}
	if readable() {
		t.Fatal("the replaced snapshot's shards outlived the lag")
	}
	if st, gen, err := s.Load(ctx, "p"); err != nil || gen != 2 || st.GetLastUpdateUnixNanos() != 2 {
		t.Fatalf("Load: %v at generation %d, %v", st, gen, err)
	}
}

// TestDeleteFinishes: a deletion that stopped after marking the head (the
// process died) leaves the pool gone; the collection, or creating the pool
// again, removes what it left.
func TestDeleteFinishes(t *testing.T) {
	s, c := open(t, Options{})
	ctx := t.Context()
	for _, pool := range []string{"a", "b"} {
		if err := s.CreatePool(ctx, pool, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, pool, 1, &statev1.PoolDelta{LastUpdateUnixNanos: proto.Int64(1)}); err != nil {
			t.Fatal(err)
		}
		// What DeletePool's first transaction does, and no more.
		var h headEnt
		if err := c.Get(ctx, poolKey(pool), &h); err != nil {
			t.Fatal(err)
		}
		h.State = poolDeleting
		if _, err := c.Put(ctx, poolKey(pool), &h); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := s.ListPools(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("ListPools with both pools half-deleted: %q, %v; want none", ids, err)
	}
	if _, _, err := s.Load(ctx, "a"); !errors.Is(err, nodestore.ErrNotFound) {
		t.Fatalf("Load of a half-deleted pool: %v, want ErrNotFound", err)
	}
	if err := s.CreatePool(ctx, "a", nil); err != nil {
		t.Fatalf("CreatePool over a half-deleted pool: %v", err)
	}
	if _, gen, err := s.Load(ctx, "a"); err != nil || gen != 1 {
		t.Fatalf("Load of the new pool: generation %d, %v", gen, err)
	}
	if err := s.CollectNow(ctx); err != nil {
		t.Fatal(err)
	}
	left, err := c.GetAll(ctx, gds.NewQuery("").Ancestor(poolKey("b")).KeysOnly(), nil)
	if err != nil || len(left) != 0 {
		t.Fatalf("after the collection, pool b left %v, %v", left, err)
	}
	all, err := c.GetAll(ctx, gds.NewQuery("").Ancestor(poolKey("a")).KeysOnly(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The new pool's head, snapshot record and one shard.
	if len(all) != 3 {
		t.Errorf("pool a holds %v, want its head, snapshot and shard only", all)
	}
}

// TestUnavailable: a database that does not answer fails every call after
// the configured attempts with an error that says so and carries the gRPC
// code the client gave (Unavailable, or DeadlineExceeded as the library
// waits for a connection until the attempt's deadline).
func TestUnavailable(t *testing.T) {
	dsemu.Shared(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	t.Setenv("DATASTORE_EMULATOR_HOST", dead)
	s, err := Open(t.Context(), "nobody", "", Options{MaintainEvery: -1, Attempts: 3, RetryDelay: time.Millisecond, AttemptTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Commit(t.Context(), "p", 1, &statev1.PoolDelta{})
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Errorf("Commit to %s: %v (code %v), want Unavailable or DeadlineExceeded", dead, err, c)
	}
	if !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("Commit to %s: %v, want it to say it gave up after 3 attempts", dead, err)
	}
	if err := s.CheckWrite(t.Context()); err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("CheckWrite to %s: %v, want it to give up after 3 attempts", dead, err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		project string
		o       Options
		want    string
	}{
		{"", Options{}, "project"},
		{"p", Options{ShardBytes: 10}, "ShardBytes"},
		{"p", Options{ShardBytes: MaxShardBytes + 1}, "ShardBytes"},
		{"p", Options{CodeVersion: strings.Repeat("v", 300)}, "CodeVersion"},
	} {
		if _, err := Open(t.Context(), tc.project, "", tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q, %+v): %v, want an error naming %s", tc.project, tc.o, err, tc.want)
		}
	}
}
