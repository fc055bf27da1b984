package state

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
)

// healthPipeline is a pipeline over a faultstore with pools p and other,
// logging to a buffer.
func healthPipeline(t *testing.T, store func(*faultstore.Store) nodestore.Store, opts Options) (*Pipeline, *faultstore.Store, *testutil.Buffer) {
	t.Helper()
	fs := faultstore.New(memory.New(memory.Options{}))
	log := &testutil.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(log, nil))
	var s nodestore.Store = fs
	if store != nil {
		s = store(fs)
	}
	p := newPipeline(t, s, nil, opts)
	for _, pool := range []string{"p", "other"} {
		if err := p.CreatePool(context.Background(), pool); err != nil {
			t.Fatal(err)
		}
	}
	return p, fs, log
}

// changed reports whether a health change token is waiting, taking it.
func changed(p *Pipeline) bool {
	select {
	case <-p.StoreHealthChanged():
		return true
	default:
		return false
	}
}

// TestStoreHealthFullDisk: while every write fails, the store is unhealthy
// from the first failed commit on, requests get Unavailable, background
// checks retry without any request (logged at most once a minute), and
// health recovers by itself once writes succeed, without a request.
func TestStoreHealthFullDisk(t *testing.T) {
	p, fs, log := healthPipeline(t, nil, Options{StoreCheckBackoff: time.Millisecond, StoreCheckBackoffMax: 5 * time.Millisecond,
		RestoreBackoff: time.Millisecond, RestoreBackoffMax: time.Millisecond})
	ctx := context.Background()
	if h := p.StoreHealth(); !h.Healthy || h.Err() != nil || changed(p) {
		t.Fatalf("health at start: %+v (Err %v), want healthy and no change", h, h.Err())
	}

	fs.FailWrites(syscall.ENOSPC)
	err := p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("t1", 1)}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Notify on a full disk: %v, want ErrUnavailable", err)
	}
	h := p.StoreHealth()
	if h.Healthy || !errors.Is(h.Cause, syscall.ENOSPC) || !strings.Contains(h.Cause.Error(), `commit of pool "p"`) || h.Outages != 1 {
		t.Fatalf("health after a failed commit: %+v, want unhealthy since the commit of pool p, ENOSPC", h)
	}
	if err := h.Err(); !errors.Is(err, ErrStoreUnhealthy) || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("Err() = %v, want ErrStoreUnhealthy with the store's error", err)
	}
	if !changed(p) {
		t.Error("no change signalled when the store went unhealthy")
	}
	// Requests keep failing, and so does an admin write.
	if _, err := p.Assign(ctx, "other", AssignInput{Time: t0, Bots: []scheduler.IdleWorker{{ID: "b", Labels: []string{"pool:x"}}}}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Assign on a full disk: %v, want ErrUnavailable", err)
	}
	if err := p.CreatePool(ctx, "new"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("CreatePool on a full disk: %v, want ErrUnavailable", err)
	}
	// No request from here on: the checks run by themselves.
	checks := fs.WriteChecks()
	testutil.WaitFor(t, "three more write checks, failed", func() bool {
		return fs.WriteChecks() >= checks+3 && p.StoreHealth().FailedChecks >= 3
	})
	h = p.StoreHealth()
	if h.Healthy || h.FailedWrites < 3 || h.FailedChecks < 3 || h.Outages != 1 || !errors.Is(h.Last, syscall.ENOSPC) {
		t.Errorf("health while checks fail: %+v, want unhealthy, 3 failed writes, 3 failed checks, one outage", h)
	}
	if got := strings.Count(log.String(), "store takes no writes"); got != 1 {
		t.Errorf("%d lines say the store went unhealthy, want 1:\n%s", got, log)
	}
	if got := strings.Count(log.String(), "store write check failed"); got != 1 {
		t.Errorf("%d lines for %d failed checks, want 1 (at most one a minute):\n%s", got, h.FailedChecks, log)
	}

	fs.FailWrites(nil)
	testutil.WaitFor(t, "the store to recover without a request", func() bool { return p.StoreHealth().Healthy })
	h = p.StoreHealth()
	if h.Err() != nil || h.Cause != nil || h.FailedChecks != 0 || h.Outages != 1 || h.TotalFailedChecks < 3 {
		t.Errorf("health after recovery: %+v", h)
	}
	if !changed(p) {
		t.Error("no change signalled when the store recovered")
	}
	out := log.String()
	if got := strings.Count(out, "store takes writes again"); got != 1 || !strings.Contains(out, "after=\"write check\"") || !strings.Contains(out, "unhealthy_for=") {
		t.Errorf("the recovery is logged %d times, want once, after the write check, with how long it lasted:\n%s", got, out)
	}
	if err := p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("t2", 2)}}); err != nil {
		t.Errorf("Notify after recovery: %v", err)
	}
	if got := numWaiting(t, p, "p"); got != 1 {
		t.Errorf("%d tasks waiting, want 1 (t2 only)", got)
	}
}

// TestStoreHealthCommitsDoNotRecover: a commit that succeeds while the
// store is unhealthy does not end it: on a full disk some do.
func TestStoreHealthCommitsDoNotRecover(t *testing.T) {
	p, fs, _ := healthPipeline(t, nil, Options{StoreCheckBackoff: time.Hour})
	ctx := context.Background()
	fs.FailWrites(errors.New("disk full"))
	if err := p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("lost", 1)}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Notify while writes fail: %v", err)
	}
	testutil.WaitFor(t, "the first check to fail", func() bool { return p.StoreHealth().FailedChecks == 1 })
	fs.FailWrites(nil)
	if err := p.Notify(ctx, "other", NotifyInput{Items: []scheduler.Notification{waiting("ok", 1)}}); err != nil {
		t.Fatalf("Notify once writes succeed: %v", err)
	}
	if h := p.StoreHealth(); h.Healthy || h.FailedWrites != 1 {
		t.Errorf("health after a successful commit: %+v, want unhealthy until a check succeeds", h)
	}
}

// TestStoreHealthCheckBeforeAFailure: a check that started before a write
// failed does not end the outage; the next check does.
func TestStoreHealthCheckBeforeAFailure(t *testing.T) {
	p, fs, log := healthPipeline(t, nil, Options{StoreCheckBackoff: time.Millisecond, StoreCheckBackoffMax: time.Millisecond})
	ctx := context.Background()
	fs.Hold()
	fs.FailWrites(errors.New("disk full"))
	if err := p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("lost", 1)}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Notify while writes fail: %v", err)
	}
	fs.FailWrites(nil)
	testutil.WaitFor(t, "a check to be held at the gate", func() bool { return fs.Held() == 1 })
	held := fs.WriteChecks()
	fs.FailWrites(errors.New("disk full again"))
	if err := p.Notify(ctx, "other", NotifyInput{Items: []scheduler.Notification{waiting("x", 1)}}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Notify while writes fail: %v", err)
	}
	fs.FailWrites(nil)
	fs.Release()
	testutil.WaitFor(t, "the store to recover", func() bool { return p.StoreHealth().Healthy })
	if got := fs.WriteChecks(); got <= held {
		t.Errorf("recovered after %d checks: by the check held across the failure, want a later one", got)
	}
	if n := strings.Count(log.String(), "store takes writes again"); n != 1 {
		t.Errorf("%d recoveries logged, want 1:\n%s", n, log)
	}
}

// TestStoreHealthIgnoresOtherFailures: losing the compare-and-swap, a
// panic, an existing pool and a caller that gave up say nothing about the
// store's writes.
func TestStoreHealthIgnoresOtherFailures(t *testing.T) {
	f := newFailing(t, Options{})
	f.runFailing(t, nil, faultstore.Conflict, faultstore.Conflict, faultstore.Conflict, faultstore.Conflict)
	f.runFailing(t, nil, faultstore.Panic)
	if err := f.p.CreatePool(context.Background(), "p"); !errors.Is(err, ErrPoolExists) {
		t.Fatalf("CreatePool of an existing pool: %v", err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	f.p.CreatePool(canceled, "gone")
	if h := f.p.StoreHealth(); !h.Healthy || h.Outages != 0 || changed(f.p) {
		t.Errorf("health %+v, want healthy all along", h)
	}
}

// noChecker hides the store's write check.
type noChecker struct{ nodestore.Store }

// TestStoreHealthWithoutWriteCheck: a store without a write check recovers
// once it answers a read.
func TestStoreHealthWithoutWriteCheck(t *testing.T) {
	p, fs, _ := healthPipeline(t, func(fs *faultstore.Store) nodestore.Store { return noChecker{fs} },
		Options{StoreCheckBackoff: time.Millisecond, StoreCheckBackoffMax: time.Millisecond})
	fs.FailWrites(errors.New("disk full"))
	fs.FailLoads(-1) // the pool stays down; ListPools still answers
	if err := p.Notify(context.Background(), "p", NotifyInput{Items: []scheduler.Notification{waiting("t", 1)}}); !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the store to recover", func() bool { return p.StoreHealth().Healthy })
	if fs.WriteChecks() != 0 {
		t.Errorf("%d write checks through a store that hides them", fs.WriteChecks())
	}
	fs.FailLoads(0)
}

// TestCloseWhileUnhealthy: the first check runs at once; Close does not
// wait for the next.
func TestCloseWhileUnhealthy(t *testing.T) {
	p, fs, _ := healthPipeline(t, nil, Options{StoreCheckBackoff: time.Hour})
	fs.FailWrites(errors.New("disk full"))
	if err := p.Notify(context.Background(), "p", NotifyInput{Items: []scheduler.Notification{waiting("t", 1)}}); !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the first check to fail", func() bool { return p.StoreHealth().FailedChecks == 1 })
	done := make(chan struct{})
	go func() {
		p.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the store check")
	}
	if fs.WriteChecks() != 1 {
		t.Errorf("%d checks, want the first one only", fs.WriteChecks())
	}
}
