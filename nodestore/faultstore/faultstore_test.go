package faultstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/storetest"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
)

// Without faults the wrapper is the store it wraps.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodestore.Store {
		clock := storetest.NewClock()
		return storetest.WithClock(faultstore.New(memory.New(memory.Options{Now: clock.Now})), clock, memory.DefaultGCLag)
	})
}

// TestFaults: each fault does what it says to the wrapped store.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	inner := memory.New(memory.Options{})
	s := faultstore.New(inner)
	if err := s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	d := &statev1.PoolDelta{TaskErrors: []*statev1.TaskError{{TaskId: "t", Error: "e"}}}
	gen := func() int64 {
		_, g, err := inner.Load(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		return g
	}

	s.FailCommits(faultstore.Error)
	if _, err := s.Commit(ctx, "p", 1, d); !errors.Is(err, faultstore.ErrInjected) || gen() != 1 {
		t.Errorf("Error: %v at generation %d, want ErrInjected and nothing written", err, gen())
	}
	dctx, cancel := context.WithCancel(ctx)
	cancel()
	s.FailCommits(faultstore.Deadline)
	if _, err := s.Commit(dctx, "p", 1, d); !errors.Is(err, context.Canceled) || gen() != 1 {
		t.Errorf("Deadline: %v at generation %d, want the context's error and nothing written", err, gen())
	}
	s.FailCommits(faultstore.Conflict)
	if _, err := s.Commit(ctx, "p", 1, d); !errors.Is(err, nodestore.ErrConflict) || gen() != 2 {
		t.Errorf("Conflict: %v at generation %d, want ErrConflict after the other writer's commit", err, gen())
	}
	st, _, _ := inner.Load(ctx, "p")
	if len(st.TaskErrors) != 1 || st.TaskErrors[0].TaskId != faultstore.OtherWriterTask {
		t.Errorf("after Conflict the store holds %v, want the other writer's task error", st.TaskErrors)
	}
	s.FailCommits(faultstore.LandedError)
	if _, err := s.Commit(ctx, "p", 2, d); !errors.Is(err, faultstore.ErrInjected) || gen() != 3 {
		t.Errorf("LandedError: %v at generation %d, want ErrInjected with the entry written", err, gen())
	}
	s.FailCommits(faultstore.Panic)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Panic did not panic")
			}
		}()
		s.Commit(ctx, "p", 3, d)
	}()
	if cs, err := s.Commit(ctx, "p", 3, d); err != nil || cs.Generation != 4 {
		t.Errorf("a commit without fault: %v %v, want generation 4", cs, err)
	}
	if got := s.Written(); got != 3 {
		t.Errorf("Written() = %d, want 3 (the other writer's, the landed one, the last)", got)
	}

	s.FailLoads(2)
	for i := range 2 {
		if _, _, err := s.Load(ctx, "p"); !errors.Is(err, faultstore.ErrInjected) {
			t.Errorf("load %d: %v, want ErrInjected", i, err)
		}
	}
	if _, g, err := s.Load(ctx, "p"); err != nil || g != 4 {
		t.Errorf("third load: generation %d, %v", g, err)
	}
	s.FailLoads(-1)
	for range 5 {
		if _, _, err := s.Load(ctx, "p"); !errors.Is(err, faultstore.ErrInjected) {
			t.Errorf("FailLoads(-1): %v, want ErrInjected", err)
		}
	}
	s.FailLoads(0)
	if _, _, err := s.Load(ctx, "p"); err != nil {
		t.Errorf("after FailLoads(0): %v", err)
	}

	s.Hold()
	done := make(chan error)
	go func() {
		_, err := s.Commit(ctx, "p", 4, d)
		done <- err
	}()
	testutil.WaitFor(t, "the commit to be held", func() bool {
		select {
		case err := <-done:
			t.Fatalf("held commit returned %v", err)
		default:
		}
		return s.Held() == 1
	})
	s.Release()
	if err := <-done; err != nil {
		t.Errorf("released commit: %v", err)
	}
}

// TestFailWrites: while writes fail, every write fails with both errors
// and writes nothing, reads go on, queued commit faults wait; then writes
// succeed again.
func TestFailWrites(t *testing.T) {
	ctx := context.Background()
	inner := memory.New(memory.Options{})
	s := faultstore.New(inner)
	if err := s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckWrite(ctx); err != nil {
		t.Fatalf("CheckWrite without faults: %v", err)
	}
	full := errors.New("no space left on device")
	s.FailWrites(full)
	s.FailCommits(faultstore.Error)
	d := &statev1.PoolDelta{TaskErrors: []*statev1.TaskError{{TaskId: "t", Error: "e"}}}
	writes := map[string]func() error{
		"Commit":     func() error { _, err := s.Commit(ctx, "p", 1, d); return err },
		"CreatePool": func() error { return s.CreatePool(ctx, "q", &statev1.PoolState{}) },
		"DeletePool": func() error { return s.DeletePool(ctx, "p") },
		"CheckWrite": func() error { return s.CheckWrite(ctx) },
	}
	for name, write := range writes {
		for range 2 {
			if err := write(); !errors.Is(err, faultstore.ErrInjected) || !errors.Is(err, full) {
				t.Errorf("%s while writes fail: %v, want ErrInjected and %v", name, err, full)
			}
		}
	}
	if ids, err := s.ListPools(ctx); err != nil || len(ids) != 1 || ids[0] != "p" {
		t.Errorf("ListPools while writes fail: %q, %v; want [p]", ids, err)
	}
	if _, g, err := s.Load(ctx, "p"); err != nil || g != 1 {
		t.Errorf("Load while writes fail: generation %d, %v; want 1 and no error", g, err)
	}
	if got := s.WriteChecks(); got != 3 {
		t.Errorf("WriteChecks() = %d, want 3", got)
	}
	s.FailWrites(nil)
	if _, err := s.Commit(ctx, "p", 1, d); !errors.Is(err, faultstore.ErrInjected) || errors.Is(err, full) {
		t.Errorf("first commit after FailWrites(nil): %v, want the queued Error fault", err)
	}
	if cs, err := s.Commit(ctx, "p", 1, d); err != nil || cs.Generation != 2 {
		t.Errorf("commit after FailWrites(nil): %v, %v; want generation 2", cs, err)
	}
	if err := s.CheckWrite(ctx); err != nil {
		t.Errorf("CheckWrite after FailWrites(nil): %v", err)
	}
	if err := s.CreatePool(ctx, "q", &statev1.PoolState{}); err != nil {
		t.Errorf("CreatePool after FailWrites(nil): %v", err)
	}
	if err := s.DeletePool(ctx, "q"); err != nil {
		t.Errorf("DeletePool after FailWrites(nil): %v", err)
	}
	// Write checks wait at the gate as commits do.
	s.Hold()
	done := make(chan error)
	go func() { done <- s.CheckWrite(ctx) }()
	testutil.WaitFor(t, "the check to be held", func() bool { return s.Held() == 1 })
	s.Release()
	if err := <-done; err != nil {
		t.Errorf("released check: %v", err)
	}
}

// TestDelayCommits: a delayed store is still the store it wraps (the
// conformance suite passes with every commit delayed), and a commit whose
// caller leaves while it waits writes nothing.
func TestDelayCommits(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodestore.Store {
		clock := storetest.NewClock()
		s := faultstore.New(memory.New(memory.Options{Now: clock.Now}))
		s.DelayCommits(time.Millisecond)
		return storetest.WithClock(s, clock, memory.DefaultGCLag)
	})

	inner := memory.New(memory.Options{})
	s := faultstore.New(inner)
	ctx := context.Background()
	if err := s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	s.DelayCommits(time.Hour)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	d := &statev1.PoolDelta{TaskErrors: []*statev1.TaskError{{TaskId: "t", Error: "x"}}}
	if _, err := s.Commit(cctx, "p", 1, d); !errors.Is(err, context.Canceled) {
		t.Fatalf("a commit whose context ended while delayed: %v, want context.Canceled", err)
	}
	if _, gen, err := inner.Load(ctx, "p"); err != nil || gen != 1 {
		t.Errorf("after the abandoned commit the pool is at generation %d (%v), want 1", gen, err)
	}
	s.DelayCommits(0)
	if cs, err := s.Commit(ctx, "p", 1, d); err != nil || cs.Generation != 2 {
		t.Errorf("a commit without delay: %+v, %v; want generation 2", cs, err)
	}
}
