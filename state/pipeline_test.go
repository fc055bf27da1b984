package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/eventlog"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func waiting(id string, sec int) scheduler.Notification {
	return scheduler.Notification{Kind: scheduler.NotifyWaiting, Time: t0.Add(time.Duration(sec) * time.Second),
		Task: scheduler.Task{ID: scheduler.RequestID(id), EnqueueTime: t0, BaseLabels: []string{"pool:x"}}}
}

func newPipeline(t *testing.T, store nodestore.Store, sink EventSink, opts Options) *Pipeline {
	t.Helper()
	p := New(store, sink, opts)
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func numWaiting(t *testing.T, p *Pipeline, pool string) int {
	t.Helper()
	n := 0
	if err := p.Read(context.Background(), pool, func(s *scheduler.Scheduler) error {
		n = s.View(0).NumWaiting
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGroupCommit: requests queued while a batch commits form the next
// batch, answered together after one commit.
func TestGroupCommit(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	fs.Hold()
	var mu sync.Mutex
	var batches []BatchStats
	p := newPipeline(t, fs, nil, Options{OnBatch: func(b BatchStats) { mu.Lock(); batches = append(batches, b); mu.Unlock() }})
	ctx := context.Background()
	if err := p.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("first", 1)}}) }()
	testutil.WaitFor(t, "the first batch's commit to be held", func() bool { return fs.Held() == 1 })
	const n = 50
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting(fmt.Sprintf("t%02d", i), 2)}})
		}()
	}
	pl, _ := p.pool("p")
	testutil.WaitFor(t, fmt.Sprintf("%d notifications to be queued", n), func() bool { return pl.q.state().Urgent == n })
	fs.Release() // let every commit through
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// OnBatch reports a batch after its callers are answered.
	testutil.WaitFor(t, "the second batch's stats", func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) >= 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 2 || batches[0].Requests != 1 || batches[1].Requests != n {
		t.Fatalf("batches %+v, want 2: the first request, then the %d queued meanwhile", batches, n)
	}
	if got := numWaiting(t, p, "p"); got != n+1 {
		t.Errorf("%d waiting, want %d", got, n+1)
	}
	// Committed: the store has both batches.
	st, gen, err := fs.Load(ctx, "p")
	if err != nil || gen != 3 || len(st.Waiting) != n+1 {
		t.Errorf("store at generation %d with %d waiting (%v), want 3 and %d", gen, len(st.Waiting), err, n+1)
	}
}

// TestCommitBeforeReplyAndRollback: a failed commit fails every caller of
// the batch and leaves the committed state; events appear only after a
// successful commit.
func TestCommitBeforeReplyAndRollback(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	sink := &signalSink{Memory: &eventlog.Memory{}, emitted: make(chan struct{}, 16)}
	p := newPipeline(t, fs, sink, Options{})
	ctx := context.Background()
	if err := p.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	fs.FailCommits(faultstore.Error)
	err := p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("lost", 1)}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
	if got := numWaiting(t, p, "p"); got != 0 {
		t.Errorf("after a failed commit %d waiting, want the committed state (0)", got)
	}
	if rows := sink.Rows(); len(rows) != 0 {
		t.Errorf("events of an uncommitted batch were emitted: %v", rows)
	}
	if err := p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("kept", 1)}}); err != nil {
		t.Fatal(err)
	}
	if got := numWaiting(t, p, "p"); got != 1 {
		t.Errorf("%d waiting, want 1", got)
	}
	// Events are emitted after the callers are answered, in batch order: once
	// the second batch's are out, the first's would have been.
	select {
	case <-sink.emitted:
	case <-time.After(10 * time.Second):
		t.Fatal("the committed batch's events were never emitted")
	}
	if rows := sink.Rows(); len(rows) != 1 || rows[0].TaskId != "kept" {
		t.Errorf("events %v, want the ENQUEUED of kept", rows)
	}
}

// signalSink is a Memory sink that signals each Emit.
type signalSink struct {
	*eventlog.Memory
	emitted chan struct{}
}

func (s *signalSink) Emit(pool string, events []scheduler.Event) {
	s.Memory.Emit(pool, events)
	s.emitted <- struct{}{}
}

// TestBackpressure: polls and notifications queue apart. A full queue of
// polls sheds polls at once with ErrOverloaded while notifications are
// still taken; a full queue of notifications answers ErrUnavailable (the
// process cannot take more). The next batch applies the notifications
// before the polls, and every shed request is counted.
func TestBackpressure(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	fs.Hold()
	p := newPipeline(t, fs, nil, Options{MaxQueue: 2, MaxNotifyQueue: 3})
	ctx := context.Background()
	if err := p.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 6)
	go func() { results <- p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("a", 1)}}) }()
	testutil.WaitFor(t, "a commit to be held", func() bool { return fs.Held() == 1 })
	pl, _ := p.pool("p")
	assigned := make(chan []scheduler.TaskAssignment, 2)
	for _, bot := range []scheduler.WorkerID{"bot-1", "bot-2"} {
		go func() {
			out, err := p.Assign(ctx, "p", AssignInput{Time: t0.Add(3 * time.Second), Bots: []scheduler.IdleWorker{{ID: bot, Labels: []string{"pool:x"}}}})
			results <- err
			assigned <- out
		}()
	}
	testutil.WaitFor(t, "2 polls to be queued", func() bool { return pl.q.state().Polls == 2 })
	_, err := p.Assign(ctx, "p", AssignInput{Time: t0.Add(3 * time.Second), Bots: []scheduler.IdleWorker{{ID: "bot-3", Labels: []string{"pool:x"}}}})
	if !errors.Is(err, ErrOverloaded) {
		t.Errorf("third poll: %v, want ErrOverloaded", err)
	}
	// The polls' queue is full; notifications are still taken.
	for _, id := range []string{"b", "c", "d"} {
		go func() { results <- p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting(id, 2)}}) }()
	}
	testutil.WaitFor(t, "3 notifications to be queued", func() bool { return pl.q.state().Urgent == 3 })
	err = p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("e", 2)}})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOverloaded) {
		t.Errorf("fourth queued notification: %v, want ErrUnavailable", err)
	}
	if err := p.Mutate(ctx, "p", func(*scheduler.Scheduler) error { return nil }); !errors.Is(err, ErrUnavailable) {
		t.Errorf("an admin change with the notifications' queue full: %v, want ErrUnavailable", err)
	}
	if c := countersOf(t, p, "p"); c.ShedPolls != 1 || c.ShedNotifications != 1 || c.ShedAdmin != 1 {
		t.Errorf("counted %+v, want one shed poll, notification and admin change", c)
	}
	fs.Release()
	for range 6 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	// One batch held b, c, d and both polls: the notifications came first,
	// so both bots got a task although only a was waiting before.
	n := 0
	for range 2 {
		n += len(<-assigned)
	}
	if n != 2 {
		t.Errorf("%d of 2 polls got a task, want both (notifications apply before polls)", n)
	}
}

// TestCallerGivingUpDoesNotHurtOthers: the batch runs under the pipeline's
// context: a caller that cancels gets its context error, the others their
// answers.
func TestCallerGivingUpDoesNotHurtOthers(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	fs.Hold()
	p := newPipeline(t, fs, nil, Options{})
	ctx := context.Background()
	if err := p.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	impatient, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	patient := make(chan error, 1)
	go func() {
		gaveUp <- p.Notify(impatient, "p", NotifyInput{Items: []scheduler.Notification{waiting("a", 1)}})
	}()
	go func() { patient <- p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("b", 1)}}) }()
	testutil.WaitFor(t, "a commit to be held", func() bool { return fs.Held() == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("impatient caller got %v, want context.Canceled", err)
	}
	fs.Release()
	if err := <-patient; err != nil {
		t.Errorf("patient caller got %v", err)
	}
}

// TestTwoReplicas: two processes serve one pool; reads catch up with the
// other's commits, and a batch that loses the compare-and-swap is replayed
// on the caught-up state.
func TestTwoReplicas(t *testing.T) {
	store := memory.New(memory.Options{})
	ctx := context.Background()
	a := newPipeline(t, store, nil, Options{})
	if err := a.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	b := newPipeline(t, store, nil, Options{})
	if err := a.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("from-a", 1)}}); err != nil {
		t.Fatal(err)
	}
	if got := numWaiting(t, b, "p"); got != 1 {
		t.Errorf("replica b sees %d waiting, want a's commit (1)", got)
	}
	if err := a.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("from-a-2", 1)}}); err != nil {
		t.Fatal(err)
	}
	// b is one generation behind: its commit conflicts and is replayed.
	if err := b.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("from-b", 1)}}); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*Pipeline{"a": a, "b": b} {
		if got := numWaiting(t, p, "p"); got != 3 {
			t.Errorf("replica %s sees %d waiting, want 3", name, got)
		}
	}
}

// TestRebuiltStateEqualsLive: after every batch of random requests, the
// state the store rebuilds equals the pipeline's live state.
func TestRebuiltStateEqualsLive(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		store := memory.New(memory.Options{SnapshotEvery: 5})
		p := New(store, nil, Options{})
		defer p.Close()
		ctx := context.Background()
		if err := p.Load(ctx); err != nil {
			rt.Fatal(err)
		}
		if err := p.CreatePool(ctx, "p"); err != nil {
			rt.Fatal(err)
		}
		sec := 0
		for step := range rapid.IntRange(1, 30).Draw(rt, "steps") {
			if err := randomCall(rt, p, &sec, true); err != nil {
				rt.Fatalf("step %d: %v", step, err)
			}
			checkStored(rt, p, store, fmt.Sprintf("step %d", step))
		}
	})
}

// randomCall makes a random call to pool "p" of p: an account, a
// notification (waiting, running or absent, with a task error), a poll, or
// (when wipe) a Wipe, at *sec seconds, which it advances.
func randomCall(rt *rapid.T, p *Pipeline, sec *int, wipe bool) error {
	ctx := context.Background()
	*sec += rapid.IntRange(0, 3).Draw(rt, "dt")
	at := t0.Add(time.Duration(*sec) * time.Second)
	id := scheduler.RequestID(fmt.Sprintf("r%d", rapid.IntRange(0, 9).Draw(rt, "r")))
	bot := scheduler.WorkerID(fmt.Sprintf("w%d", rapid.IntRange(0, 3).Draw(rt, "w")))
	ops := 5
	if wipe {
		ops = 6
	}
	var err error
	switch rapid.IntRange(0, ops-1).Draw(rt, "op") {
	case 0:
		err = p.Mutate(ctx, "p", func(s *scheduler.Scheduler) error {
			return s.AddAccount("a", &statev1.AccountConfig{ChargeRate: []float32{1}, MaxChargeSeconds: 10}, nil)
		})
	case 1:
		err = p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{{Kind: scheduler.NotifyWaiting, Time: at,
			Task: scheduler.Task{ID: id, Account: "a", EnqueueTime: t0, BaseLabels: []string{"pool:x"}}}}})
	case 2:
		err = p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{{Kind: scheduler.NotifyRunning, Time: at, Task: scheduler.Task{ID: id}, Worker: bot}}})
	case 3:
		err = p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{{Kind: scheduler.NotifyAbsent, Time: at, Task: scheduler.Task{ID: id}}},
			TaskErrors: []TaskError{{Task: "bad", Msg: "no"}}})
	case 4:
		_, err = p.Assign(ctx, "p", AssignInput{Time: at, Bots: []scheduler.IdleWorker{{ID: bot, Labels: []string{"pool:x"}}}})
	case 5:
		err = p.Mutate(ctx, "p", func(s *scheduler.Scheduler) error { s.Wipe(); return nil })
	}
	return err
}

// checkStored fails unless p's state of pool "p", caught up by the read,
// equals the state the store rebuilds.
func checkStored(rt interface {
	Fatal(...any)
	Fatalf(string, ...any)
}, p *Pipeline, store nodestore.Store, what string) {
	ctx := context.Background()
	var live *statev1.PoolState
	if err := p.Read(ctx, "p", func(s *scheduler.Scheduler) error { live = s.ToProto(); return nil }); err != nil {
		rt.Fatal(err)
	}
	stored, _, err := store.Load(ctx, "p")
	if err != nil {
		rt.Fatal(err)
	}
	if diff := cmp.Diff(live, stored, protocmp.Transform()); diff != "" {
		rt.Fatalf("%s: stored state differs from the live one (-live +stored):\n%s", what, diff)
	}
}

// TestTwoReplicasCatchUpWithoutReload: two pipelines serve one pool and
// take turns at random, each writing without reading the other's commits
// first, so that its commits conflict. Each conflict is resolved by
// undoing the batch, applying the other's deltas and replaying, and each
// read catches up delta by delta: no pool is ever reloaded, and the state
// each one holds equals what the store rebuilds.
func TestTwoReplicasCatchUpWithoutReload(t *testing.T) {
	var conflicts int64
	rapid.Check(t, func(rt *rapid.T) {
		store := memory.New(memory.Options{})
		ctx := context.Background()
		var reps [2]*Pipeline
		for i := range reps {
			reps[i] = New(store, nil, Options{})
			defer reps[i].Close()
			if err := reps[i].Load(ctx); err != nil {
				rt.Fatal(err)
			}
			if i == 0 { // the second replica loads the pool the first creates
				if err := reps[0].CreatePool(ctx, "p"); err != nil {
					rt.Fatal(err)
				}
			}
		}
		sec := 0
		for step := range rapid.IntRange(1, 30).Draw(rt, "steps") {
			w := rapid.IntRange(0, 1).Draw(rt, "replica")
			if err := randomCall(rt, reps[w], &sec, false); err != nil {
				rt.Fatalf("step %d on replica %d: %v", step, w, err)
			}
			if rapid.IntRange(0, 3).Draw(rt, "read") == 0 {
				checkStored(rt, reps[w], store, fmt.Sprintf("step %d, replica %d", step, w))
			}
		}
		for i, p := range reps {
			checkStored(rt, p, store, fmt.Sprintf("replica %d at the end", i))
			c := p.Status()[0].Counters
			if c.Reloads != 0 {
				rt.Fatalf("replica %d reloaded the pool %d times (%d conflicts)", i, c.Reloads, c.Conflicts)
			}
			conflicts += c.Conflicts
		}
	})
	if conflicts == 0 {
		t.Error("no commit conflicted: the test did not exercise conflicts")
	}
}

// TestLoadingIsUnavailable: before Load finishes, a pool that may exist is
// Unavailable (retry), never NotFound (permanent).
func TestLoadingIsUnavailable(t *testing.T) {
	store := memory.New(memory.Options{})
	ctx := context.Background()
	if err := store.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	p := New(store, nil, Options{})
	defer p.Close()
	if err := p.Notify(ctx, "p", NotifyInput{}); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPoolNotFound) {
		t.Errorf("before Load: %v, want ErrUnavailable", err)
	}
	if err := p.CreatePool(ctx, "q"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("CreatePool before Load: %v, want ErrUnavailable", err)
	}
	if p.Ready() {
		t.Error("ready before Load")
	}
	if err := p.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Notify(ctx, "p", NotifyInput{}); err != nil {
		t.Errorf("after Load: %v", err)
	}
	if err := p.Notify(ctx, "nope", NotifyInput{}); !errors.Is(err, ErrPoolNotFound) {
		t.Errorf("unknown pool after Load: %v, want ErrPoolNotFound", err)
	}
}

// TestPoolLifecycle: create, duplicate, delete, and requests to a deleted
// pool.
func TestPoolLifecycle(t *testing.T) {
	store := memory.New(memory.Options{})
	p := newPipeline(t, store, nil, Options{})
	ctx := context.Background()
	if err := p.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if err := p.CreatePool(ctx, "p"); !errors.Is(err, ErrPoolExists) {
		t.Errorf("second CreatePool: %v, want ErrPoolExists", err)
	}
	if got := p.Pools(); !cmp.Equal(got, []string{"p"}) {
		t.Errorf("Pools() = %v", got)
	}
	if err := p.DeletePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if err := p.Notify(ctx, "p", NotifyInput{}); !errors.Is(err, ErrPoolNotFound) {
		t.Errorf("Notify after delete: %v, want ErrPoolNotFound", err)
	}
	if ids, _ := store.ListPools(ctx); len(ids) != 0 {
		t.Errorf("store still has %v", ids)
	}
}

// TestBadAssignDoesNotFailItsBatch: AssignTasks calls of one batch share
// one pass; a malformed one (a time the scheduler cannot hold, an empty bot
// id) gets its own error naming the field and the others their answers.
func TestBadAssignDoesNotFailItsBatch(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	fs.Hold()
	p := newPipeline(t, fs, nil, Options{})
	ctx := context.Background()
	if err := p.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("task", 1)}}) }()
	testutil.WaitFor(t, "a commit to be held", func() bool { return fs.Held() == 1 })
	type result struct {
		out []scheduler.TaskAssignment
		err error
	}
	good, badTime, badBot := make(chan result, 1), make(chan result, 1), make(chan result, 1)
	go func() {
		out, err := p.Assign(ctx, "p", AssignInput{Time: t0.Add(2 * time.Second), Bots: []scheduler.IdleWorker{{ID: "bot", Labels: []string{"pool:x"}}}})
		good <- result{out, err}
	}()
	go func() {
		out, err := p.Assign(ctx, "p", AssignInput{Time: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), Bots: []scheduler.IdleWorker{{ID: "other"}}})
		badTime <- result{out, err}
	}()
	go func() {
		out, err := p.Assign(ctx, "p", AssignInput{Time: t0.Add(2 * time.Second), Bots: []scheduler.IdleWorker{{ID: "third"}, {}}})
		badBot <- result{out, err}
	}()
	pl, _ := p.pool("p")
	testutil.WaitFor(t, "3 polls to be queued", func() bool { return pl.q.state().Polls == 3 })
	fs.Release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, field string
		r           result
	}{
		{"time out of range", "time:", <-badTime},
		{"empty bot id", "idle_bots[1].bot_id:", <-badBot},
	} {
		if !errors.Is(tc.r.err, scheduler.ErrInvalidArgument) || !strings.Contains(tc.r.err.Error(), tc.field) {
			t.Errorf("malformed call (%s): %v, want ErrInvalidArgument naming %s", tc.name, tc.r.err, tc.field)
		}
	}
	if r := <-good; r.err != nil || len(r.out) != 1 || r.out[0].Task != "task" {
		t.Errorf("good call of the same batch: %v %v, want task assigned to bot", r.out, r.err)
	}
}

// TestEventsOfSuccessiveBatches: each batch's events reach the sink whole
// and in order, although later batches record into the memory of earlier
// ones once those were emitted.
func TestEventsOfSuccessiveBatches(t *testing.T) {
	sink := &signalSink{Memory: &eventlog.Memory{}, emitted: make(chan struct{}, 16)}
	p := newPipeline(t, memory.New(memory.Options{}), sink, Options{})
	ctx := context.Background()
	if err := p.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 5 {
		var items []scheduler.Notification
		for j := range i + 1 {
			id := fmt.Sprintf("t%d-%d", i, j)
			items = append(items, waiting(id, 1))
			want = append(want, id)
		}
		if err := p.Notify(ctx, "p", NotifyInput{Items: items}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-sink.emitted:
		case <-time.After(10 * time.Second):
			t.Fatalf("batch %d's events were never emitted", i)
		}
	}
	var got []string
	for _, r := range sink.Rows() {
		got = append(got, r.TaskId)
	}
	if !slices.Equal(got, want) {
		t.Errorf("emitted tasks %v, want %v", got, want)
	}
}

// TestReadersSeeSettledOrders: the orders by confirmed time that InspectPool
// and GetCallbacks read are settled after a batch's callers are answered.
// Readers running beside a stream of batches (two at a time, under the read
// lock) must each find every list complete, and never write: under -race, a
// reader that settled under the read lock would be reported.
func TestReadersSeeSettledOrders(t *testing.T) {
	p := newPipeline(t, memory.New(memory.Options{}), nil, Options{})
	ctx := context.Background()
	if err := p.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	const rounds = 200
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range rounds {
			at := t0.Add(time.Duration(i) * time.Second)
			items := []scheduler.Notification{waiting(fmt.Sprintf("r%d", i), i)}
			if i >= 10 {
				items = append(items, scheduler.Notification{Kind: scheduler.NotifyAbsent, Time: at, Task: scheduler.Task{ID: scheduler.RequestID(fmt.Sprintf("r%d", i-10))}})
			}
			if err := p.Notify(ctx, "p", NotifyInput{Items: items}); err != nil {
				t.Error(err)
				return
			}
			bot := scheduler.WorkerID(fmt.Sprintf("w%d", i%7))
			if _, err := p.Assign(ctx, "p", AssignInput{Time: at, Bots: []scheduler.IdleWorker{{ID: bot, Labels: []string{"pool:x"}}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	done := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				err := p.Read(ctx, "p", func(s *scheduler.Scheduler) error {
					if !s.OrdersSettled() {
						return errors.New("a reader found the orders unsettled")
					}
					var cur scheduler.ViewCursor
					var nw, nr, ni int
					for {
						v := s.ViewPage(cur, 3)
						nw, nr, ni = nw+len(v.Waiting), nr+len(v.Running), ni+len(v.Idle)
						if !v.More {
							if nw != v.NumWaiting || nr != v.NumRunning || ni != v.NumIdle {
								return fmt.Errorf("pages list %d waiting, %d running, %d idle; counts say %d, %d, %d", nw, nr, ni, v.NumWaiting, v.NumRunning, v.NumIdle)
							}
							return nil
						}
						cur = v.Next
					}
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
}

// TestLongCatchUpRebuildsOnce: a replica that is a few commits behind
// applies them one by one; one that is so far behind that the deltas touch
// many times more records than its pool holds rebuilds once in memory
// instead. Either way it reloads nothing from the store and ends with the
// stored state.
func TestLongCatchUpRebuildsOnce(t *testing.T) {
	store := memory.New(memory.Options{})
	ctx := context.Background()
	writer := newPipeline(t, store, nil, Options{})
	if err := writer.CreatePool(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	reader := newPipeline(t, store, nil, Options{})
	next := 0
	commit := func(batches, items int) {
		t.Helper()
		for range batches {
			var in NotifyInput
			for range items {
				in.Items = append(in.Items, waiting(fmt.Sprintf("r%d", next), next))
				next++
			}
			if err := writer.Notify(ctx, "p", in); err != nil {
				t.Fatal(err)
			}
		}
	}
	caughtUp := func(what string) PoolCounters {
		t.Helper()
		checkStored(t, reader, store, what)
		return reader.Status()[0].Counters
	}
	commit(3, 10)
	if c := caughtUp("3 commits behind"); c.Rebuilds != 0 || c.Reloads != 0 {
		t.Errorf("3 commits behind: %d rebuilds, %d reloads; want the deltas applied one by one", c.Rebuilds, c.Reloads)
	}
	commit(60, 200) // 12,000 records against a pool of 30 requests
	if c := caughtUp("60 commits behind"); c.Rebuilds != 1 || c.Reloads != 0 {
		t.Errorf("60 large commits behind: %d rebuilds, %d reloads; want one rebuild in memory", c.Rebuilds, c.Reloads)
	}
	commit(2, 10)
	if c := caughtUp("2 more commits"); c.Rebuilds != 1 || c.Reloads != 0 {
		t.Errorf("2 more commits: %d rebuilds, %d reloads; want them applied one by one", c.Rebuilds, c.Reloads)
	}
}

// TestPoolsOfAnotherProcess: a pool another process creates in the shared
// store is served as soon as a request names it, and one it deletes stops
// being served: after at most one Unavailable (the batch whose commit
// found it gone), requests get NotFound.
func TestPoolsOfAnotherProcess(t *testing.T) {
	store := memory.New(memory.Options{})
	ctx := context.Background()
	a := newPipeline(t, store, nil, Options{})
	b := newPipeline(t, store, nil, Options{})
	if err := b.Notify(ctx, "q", NotifyInput{Items: []scheduler.Notification{waiting("r0", 0)}}); !errors.Is(err, ErrPoolNotFound) {
		t.Fatalf("a pool no process created: %v, want ErrPoolNotFound", err)
	}
	if err := a.CreatePool(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	if err := b.Notify(ctx, "q", NotifyInput{Items: []scheduler.Notification{waiting("r1", 1)}}); err != nil {
		t.Fatalf("a pool the other process created: %v", err)
	}
	if n := numWaiting(t, a, "q"); n != 1 {
		t.Errorf("the creating process reads %d waiting, want the 1 the other one queued", n)
	}
	if ids, err := b.ListPools(ctx); err != nil || len(ids) != 1 || ids[0] != "q" {
		t.Errorf("the other process lists %v, %v; want [q]", ids, err)
	}
	if err := b.CreatePool(ctx, "q"); !errors.Is(err, ErrPoolExists) {
		t.Errorf("creating the pool again on the other process: %v, want ErrPoolExists", err)
	}

	if err := a.DeletePool(ctx, "q"); err != nil {
		t.Fatal(err)
	}
	err := b.Notify(ctx, "q", NotifyInput{Items: []scheduler.Notification{waiting("r2", 2)}})
	if err != nil && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrPoolNotFound) {
		t.Fatalf("the first request after the deletion: %v, want Unavailable or NotFound", err)
	}
	if err := b.Notify(ctx, "q", NotifyInput{Items: []scheduler.Notification{waiting("r3", 3)}}); !errors.Is(err, ErrPoolNotFound) {
		t.Errorf("a request after the deletion: %v, want ErrPoolNotFound", err)
	}
	if err := b.Read(ctx, "q", func(*scheduler.Scheduler) error { return nil }); !errors.Is(err, ErrPoolNotFound) {
		t.Errorf("a read after the deletion: %v, want ErrPoolNotFound", err)
	}
	if pools := b.Pools(); len(pools) != 0 {
		t.Errorf("the other process still serves %v", pools)
	}
}

// TestUnknownPoolWhileTheStoreFails: a request for a pool this process does
// not serve, while the store cannot be read, gets Unavailable (Swarming
// retries), never NotFound (final: Swarming would drop the task).
func TestUnknownPoolWhileTheStoreFails(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	p := newPipeline(t, fs, nil, Options{})
	fs.FailLoads(1)
	err := p.Notify(context.Background(), "q", NotifyInput{Items: []scheduler.Notification{waiting("r0", 0)}})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPoolNotFound) {
		t.Errorf("a pool looked for while the store fails: %v, want ErrUnavailable", err)
	}
	if err := p.Notify(context.Background(), "q", NotifyInput{Items: []scheduler.Notification{waiting("r0", 0)}}); !errors.Is(err, ErrPoolNotFound) {
		t.Errorf("once the store answers: %v, want ErrPoolNotFound", err)
	}
}
