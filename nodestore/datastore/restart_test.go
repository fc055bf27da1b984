package datastore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsemu"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsproxy"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEmulatorRestart: the emulator is killed while a replica commits to a
// pool in a loop, and another one is started in its place.
//
// The emulator keeps its data in memory, so the restarted one is empty and
// the commits acknowledged before the kill are gone with it; no store can
// show them. What the test asserts is what the store can be honest about:
//   - before the kill, the acknowledged commits are consecutive generations;
//   - while the database is down, every commit and every load fails, after
//     its retries, with Unavailable: none is acknowledged, and the pool is
//     not reported missing, since nothing says it is;
//   - once the empty database answers, the store claims nothing of what the
//     dead one held: the pool is not found (no generation, no state), the
//     loop's commits fail with ErrNotFound and not a conflict, ListPools is
//     empty;
//   - the same store, not reopened, serves again: a pool created anew takes
//     commits and loads.
func TestEmulatorRestart(t *testing.T) {
	ctx := t.Context()
	first, err := dsemu.Start(ctx)
	dsemu.SkipOrFail(t, err)
	defer first.Stop()
	px, err := dsproxy.Start(first.Host())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	t.Setenv("DATASTORE_EMULATOR_HOST", px.Addr())
	s, err := Open(ctx, dsemu.ProjectID(), "", Options{CodeVersion: "test", MaintainEvery: -1, Attempts: 3, RetryDelay: 10 * time.Millisecond, AttemptTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreatePool(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}

	type result struct {
		gen int64 // the generation the commit asked for
		err error
	}
	results, stop, stopped := make(chan result), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		gen := int64(1)
		for {
			cs, err := s.Commit(ctx, "p", gen, stamp(gen+1))
			select {
			case results <- result{gen + 1, err}:
			case <-stop:
				return
			}
			if err == nil {
				gen = cs.Generation
			}
		}
	}()
	defer func() {
		close(stop)
		<-stopped
	}()

	const before = 20
	for want := int64(2); want < 2+before; want++ {
		if r := <-results; r.err != nil || r.gen != want {
			t.Fatalf("commit %d before the kill: generation %d, %v", want, r.gen, r.err)
		}
	}
	first.Stop()
	// The commit in flight at the kill may have been acknowledged; from
	// the first failure on, none is.
	var failures int
	for failures < 5 {
		r := <-results
		switch {
		case r.err == nil && failures > 0:
			t.Fatalf("commit of generation %d acknowledged while the database is down", r.gen)
		case r.err == nil:
			continue
		case status.Code(r.err) != codes.Unavailable || !strings.Contains(r.err.Error(), "gave up after 3 attempts"):
			t.Fatalf("commit while the database is down: %v, want Unavailable after 3 attempts", r.err)
		}
		failures++
	}
	if _, _, err := s.Load(ctx, "p"); status.Code(err) != codes.Unavailable || errors.Is(err, nodestore.ErrNotFound) {
		t.Errorf("Load while the database is down: %v, want Unavailable", err)
	}

	second, err := dsemu.Start(ctx)

	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	if err := px.SetUpstream(second.Host()); err != nil {
		t.Fatal(err)
	}
	for {
		r := <-results
		if r.err == nil {
			t.Fatalf("commit of generation %d acknowledged by a database without the pool", r.gen)
		}
		if errors.Is(r.err, nodestore.ErrNotFound) {
			break
		}
		if status.Code(r.err) != codes.Unavailable || errors.Is(r.err, nodestore.ErrConflict) {
			t.Fatalf("commit as the database comes back: %v, want Unavailable (sent before) or ErrNotFound", r.err)
		}
	}
	if st, gen, err := s.Load(ctx, "p"); !errors.Is(err, nodestore.ErrNotFound) {
		t.Errorf("Load after the restart: generation %d, state %v, error %v; want ErrNotFound", gen, st, err)
	}
	if ids, err := s.ListPools(ctx); err != nil || len(ids) != 0 {
		t.Errorf("ListPools after the restart: %q, %v; want none", ids, err)
	}
	if err := s.CreatePool(ctx, "q", nil); err != nil {
		t.Fatalf("CreatePool after the restart: %v", err)
	}
	if _, err := s.Commit(ctx, "q", 1, stamp(2)); err != nil {
		t.Fatalf("Commit after the restart: %v", err)
	}
	if _, gen, err := s.Load(ctx, "q"); err != nil || gen != 2 {
		t.Errorf("Load after the restart: generation %d, %v; want 2", gen, err)
	}
}
