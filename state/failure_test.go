package state

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/testing/protocmp"
)

// failing is a pool whose state holds the task "kept" (committed) and
// whose next batch, holding a notification of "lost-task", a poll of
// "lost-bot" (which the waiting "blocker" would go to) and whatever extra
// adds, is about to commit with the given faults.
type failing struct {
	fs  *faultstore.Store
	mem *memory.Store
	p   *Pipeline
	log *testutil.Buffer
}

func newFailing(t *testing.T, opts Options) *failing {
	t.Helper()
	f := &failing{mem: memory.New(memory.Options{}), log: &testutil.Buffer{}}
	f.fs = faultstore.New(f.mem)
	opts.Logger = slog.New(slog.NewTextHandler(f.log, nil))
	f.p = newPipeline(t, f.fs, nil, opts)
	ctx := context.Background()
	for _, pool := range []string{"p", "other"} {
		if err := f.p.CreatePool(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("kept", 1)}}); err != nil {
		t.Fatal(err)
	}
	return f
}

// runFailing runs the failing batch: the notification, extra (if any), the
// poll. It returns the poll's assignments and the three callers' errors.
func (f *failing) runFailing(t *testing.T, extra func(s *scheduler.Scheduler) error, faults ...faultstore.Fault) (out []scheduler.TaskAssignment, notifyErr, extraErr, assignErr error) {
	t.Helper()
	ctx := context.Background()
	f.fs.Hold()
	blocker := make(chan error, 1)
	go func() {
		blocker <- f.p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("blocker", 2)}})
	}()
	testutil.WaitFor(t, "a commit to be held", func() bool { return f.fs.Held() == 1 })
	pl, _ := f.p.pool("p")
	notified, mutated := make(chan error, 1), make(chan error, 1)
	go func() {
		notified <- f.p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("lost-task", 3)}})
	}()
	testutil.WaitFor(t, "the notification to be queued", func() bool { return pl.q.state().Urgent == 1 })
	if extra != nil {
		go func() { mutated <- f.p.Mutate(ctx, "p", extra) }()
		testutil.WaitFor(t, "the admin change to be queued", func() bool { return pl.q.state().Urgent == 2 })
	}
	type result struct {
		out []scheduler.TaskAssignment
		err error
	}
	assigned := make(chan result, 1)
	go func() {
		out, err := f.p.Assign(ctx, "p", AssignInput{Time: t0.Add(4 * time.Second), Bots: []scheduler.IdleWorker{{ID: "lost-bot", Labels: []string{"pool:x"}}}})
		assigned <- result{out, err}
	}()
	testutil.WaitFor(t, "the poll to be queued", func() bool { return pl.q.state().Polls == 1 })
	f.fs.FailCommits(faults...)
	f.fs.Release()
	if err := <-blocker; err != nil {
		t.Fatalf("the batch before the failing one: %v", err)
	}
	notifyErr = <-notified
	if extra != nil {
		extraErr = <-mutated
	}
	r := <-assigned
	return r.out, notifyErr, extraErr, r.err
}

// stateOf returns the pool's live state, or the error Read gives.
func stateOf(p *Pipeline, pool string) (*statev1.PoolState, error) {
	var st *statev1.PoolState
	err := p.Read(context.Background(), pool, func(s *scheduler.Scheduler) error {
		st = s.ToProto()
		return nil
	})
	return st, err
}

// mentions reports which of ids the state holds as a waiting request, a
// worker or a running request.
func mentions(st *statev1.PoolState, ids ...string) []string {
	var found []string
	has := func(id string) bool {
		for _, r := range st.Waiting {
			if r.Id == id {
				return true
			}
		}
		for _, w := range st.Workers {
			if w.Id == id || (w.Running != nil && w.Running.Request.GetId() == id) {
				return true
			}
		}
		return false
	}
	for _, id := range ids {
		if has(id) {
			found = append(found, id)
		}
	}
	return found
}

// checkNoTrace checks that neither a read nor the store nor a later commit
// holds anything of the failed batch, that "kept" and "blocker" still wait,
// and that the live state is the stored one.
func (f *failing) checkNoTrace(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	check := func(when string) {
		t.Helper()
		live, err := stateOf(f.p, "p")
		if err != nil {
			t.Fatalf("%s: reading the pool: %v", when, err)
		}
		stored, _, err := f.mem.Load(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		for name, st := range map[string]*statev1.PoolState{"read": live, "store": stored} {
			if got := mentions(st, "lost-task", "lost-bot"); len(got) > 0 {
				t.Errorf("%s: the %s holds %v of the failed batch", when, name, got)
			}
			if got := mentions(st, "kept", "blocker"); len(got) != 2 || len(st.Workers) != 0 {
				t.Errorf("%s: the %s has workers %v and of kept and blocker %v waiting; want both waiting and no worker", when, name, st.Workers, got)
			}
		}
		if diff := cmp.Diff(live, stored, protocmp.Transform()); diff != "" {
			t.Errorf("%s: the live state differs from the stored one (-live +stored):\n%s", when, diff)
		}
	}
	check("after the failure")
	// A later batch commits on the committed state.
	if err := f.p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("after", 5)}}); err != nil {
		t.Fatalf("the batch after the failure: %v", err)
	}
	check("after a later commit")
}

// TestFailedCommitLeavesNoTrace: whatever makes a commit fail, every caller
// of the batch gets Unavailable, the poll gets no task, and nothing of the
// batch is read or committed later. A store failure takes the pool down
// until its committed state is restored; losing the race to other writers
// every time leaves it caught up and serving. A commit that outlives the batch's
// deadline is the case where restoring the state under the batch's own
// context would fail too.
func TestFailedCommitLeavesNoTrace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults []faultstore.Fault
	}{
		{"error", []faultstore.Fault{faultstore.Error}},
		{"deadline", []faultstore.Fault{faultstore.Deadline}},
		// CommitRetries (3) replays, each losing to another writer again.
		{"conflict", []faultstore.Fault{faultstore.Conflict, faultstore.Conflict, faultstore.Conflict, faultstore.Conflict}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFailing(t, Options{BatchTimeout: 300 * time.Millisecond})
			out, nerr, _, aerr := f.runFailing(t, nil, tc.faults...)
			if !errors.Is(nerr, ErrUnavailable) || !errors.Is(aerr, ErrUnavailable) || len(out) > 0 {
				t.Errorf("callers of the failed batch got %v, and %v with %v; want ErrUnavailable and no task", nerr, aerr, out)
			}
			f.checkNoTrace(t)
			if got := countersOf(t, f.p, "p").FailedCommits; got != 1 {
				t.Errorf("%d failed commits counted, want 1", got)
			}
			if !strings.Contains(f.log.String(), "batch not committed") {
				t.Errorf("the failure was not logged:\n%s", f.log)
			}
			// Lost races leave the pool caught up without the batch, never
			// down: only a failure of the store takes it down (and restores
			// it before the callers are answered).
			if restored := strings.Contains(f.log.String(), "pool available again"); restored != (tc.name != "conflict") {
				t.Errorf("the pool went down and was restored: %v\n%s", restored, f.log)
			}
		})
	}
}

// TestConflictReplaysOnCaughtUpState: a commit that loses to another
// writer once is replayed on the state the store holds, and succeeds: the
// batch and the other writer's change are both there, once.
func TestConflictReplaysOnCaughtUpState(t *testing.T) {
	f := newFailing(t, Options{})
	out, nerr, _, aerr := f.runFailing(t, nil, faultstore.Conflict)
	// FIFO by (enqueue time, id): blocker and kept tie on time.
	if nerr != nil || aerr != nil || len(out) != 1 || out[0].Task != "blocker" {
		t.Fatalf("replayed batch: %v, %v, %v; want success and blocker for lost-bot", nerr, aerr, out)
	}
	live, err := stateOf(f.p, "p")
	if err != nil {
		t.Fatal(err)
	}
	stored, _, _ := f.mem.Load(context.Background(), "p")
	if diff := cmp.Diff(live, stored, protocmp.Transform()); diff != "" {
		t.Errorf("live state differs from the stored one (-live +stored):\n%s", diff)
	}
	if len(live.TaskErrors) != 1 || live.TaskErrors[0].TaskId != faultstore.OtherWriterTask || len(mentions(live, "lost-task", "lost-bot")) != 2 {
		t.Errorf("state %v; want the other writer's task error, lost-task waiting and lost-bot running kept", live)
	}
}

// TestAmbiguousCommitRestoresWhatTheStoreHolds: a commit that lands but
// reports an error fails its callers (the pipeline cannot know), and the
// pool restores what the store holds, so that the next commit does not
// conflict forever.
func TestAmbiguousCommitRestoresWhatTheStoreHolds(t *testing.T) {
	f := newFailing(t, Options{})
	_, nerr, _, aerr := f.runFailing(t, nil, faultstore.LandedError)
	if !errors.Is(nerr, ErrUnavailable) || !errors.Is(aerr, ErrUnavailable) {
		t.Errorf("callers: %v, %v; want ErrUnavailable", nerr, aerr)
	}
	if err := f.p.Notify(context.Background(), "p", NotifyInput{Items: []scheduler.Notification{waiting("after", 5)}}); err != nil {
		t.Fatalf("the batch after: %v", err)
	}
	live, _ := stateOf(f.p, "p")
	stored, _, _ := f.mem.Load(context.Background(), "p")
	if diff := cmp.Diff(live, stored, protocmp.Transform()); diff != "" {
		t.Errorf("live state differs from the stored one (-live +stored):\n%s", diff)
	}
}

// TestPanicInBatch: a batch that panics (in a change it applies, or in the
// store) fails every caller with ErrInternal, is logged with its stack,
// leaves nothing behind, and the pool and the others go on serving.
func TestPanicInBatch(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra func(s *scheduler.Scheduler) error
		fault []faultstore.Fault
		want  string
	}{
		{"in an admin change", func(s *scheduler.Scheduler) error { panic("boom in the batch") }, nil, "boom in the batch"},
		{"in the store", nil, []faultstore.Fault{faultstore.Panic}, "injected panic in the commit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFailing(t, Options{})
			out, nerr, merr, aerr := f.runFailing(t, tc.extra, tc.fault...)
			for _, err := range []error{nerr, aerr} {
				if !errors.Is(err, ErrInternal) {
					t.Errorf("caller of the panicking batch got %v, want ErrInternal", err)
				}
			}
			if tc.extra != nil && !errors.Is(merr, ErrInternal) {
				t.Errorf("the panicking change got %v, want ErrInternal", merr)
			}
			if len(out) > 0 {
				t.Errorf("the poll got %v from a batch that panicked", out)
			}
			log := f.log.String()
			if !strings.Contains(log, "batch panicked") || !strings.Contains(log, tc.want) || !strings.Contains(log, "runtime/debug.Stack") {
				t.Errorf("the panic was not logged with its value and stack:\n%s", log)
			}
			if got := countersOf(t, f.p, "p").BatchPanics; got != 1 {
				t.Errorf("%d panics counted, want 1", got)
			}
			if err := f.p.Notify(context.Background(), "other", NotifyInput{Items: []scheduler.Notification{waiting("x", 1)}}); err != nil {
				t.Errorf("another pool after the panic: %v", err)
			}
			f.checkNoTrace(t)
		})
	}
}

// TestRestoreRetriesUntilTheStoreAnswers: while the committed state cannot
// be loaded, the pool answers Unavailable (requests and reads), says so in
// Outages and the log, and other pools serve; once loads succeed again
// (after failing N more times) the pool serves the committed state.
func TestRestoreRetriesUntilTheStoreAnswers(t *testing.T) {
	f := newFailing(t, Options{RestoreBackoff: time.Millisecond, RestoreBackoffMax: 5 * time.Millisecond})
	f.fs.FailLoads(-1)
	_, nerr, _, aerr := f.runFailing(t, nil, faultstore.Error)
	if !errors.Is(nerr, ErrUnavailable) || !errors.Is(aerr, ErrUnavailable) {
		t.Fatalf("callers: %v, %v; want ErrUnavailable", nerr, aerr)
	}
	ctx := context.Background()
	for range 3 {
		err := f.p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("while-down", 5)}})
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "restoring its committed state") {
			t.Errorf("Notify while down: %v, want ErrUnavailable saying the pool is restoring", err)
		}
		if _, err := stateOf(f.p, "p"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Read while down: %v, want ErrUnavailable", err)
		}
	}
	outages := f.p.Outages()
	if len(outages) != 1 || outages[0].Pool != "p" || outages[0].Attempts < 1 || !errors.Is(outages[0].Last, faultstore.ErrInjected) {
		t.Errorf("Outages() = %+v, want p with its failed restores", outages)
	}
	if err := f.p.Notify(ctx, "other", NotifyInput{Items: []scheduler.Notification{waiting("x", 1)}}); err != nil {
		t.Errorf("another pool while p is down: %v", err)
	}
	for _, st := range f.p.Status() {
		if st.Down != (st.Pool == "p") {
			t.Errorf("Status() says pool %s down=%v", st.Pool, st.Down)
		}
	}
	before := countersOf(t, f.p, "p").FailedRestores
	f.fs.FailLoads(2)
	testutil.WaitFor(t, "pool p to be restored", func() bool { return len(f.p.Outages()) == 0 })
	if got := countersOf(t, f.p, "p").FailedRestores - before; got != 2 {
		t.Errorf("%d more failed restores, want 2", got)
	}
	log := f.log.String()
	for _, want := range []string{"restoring its committed state failed", "pool available again"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	f.checkNoTrace(t)
}

// TestCallerDeadlineWhileReading: a reader whose own deadline has passed
// gets its context's error, not Unavailable.
func TestCallerDeadlineWhileReading(t *testing.T) {
	p := newPipeline(t, memory.New(memory.Options{}), nil, Options{})
	if err := p.CreatePool(context.Background(), "p"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	err := p.Read(ctx, "p", func(*scheduler.Scheduler) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		t.Errorf("Read with an expired deadline: %v, want context.DeadlineExceeded", err)
	}
}

var _ nodestore.Store = (*faultstore.Store)(nil)

// countersOf returns a pool's counters.
func countersOf(t *testing.T, p *Pipeline, pool string) PoolCounters {
	t.Helper()
	for _, st := range p.Status() {
		if st.Pool == pool {
			return st.Counters
		}
	}
	t.Fatalf("no status for pool %q", pool)
	return PoolCounters{}
}
