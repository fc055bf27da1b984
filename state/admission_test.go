package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
)

// heldPipeline is a pipeline over a store whose commits are held, with the
// given pools created and the first batch of pools[0] holding its commit,
// so that whatever is submitted next waits in the queue.
func heldPipeline(t *testing.T, opts Options, pools ...string) (*Pipeline, *faultstore.Store, chan error) {
	t.Helper()
	fs := faultstore.New(memory.New(memory.Options{}))
	p := newPipeline(t, fs, nil, opts)
	ctx := context.Background()
	for _, pool := range pools {
		if err := p.CreatePool(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	fs.Hold()
	first := make(chan error, 1)
	go func() {
		first <- p.Notify(ctx, pools[0], NotifyInput{Items: []scheduler.Notification{waiting("first", 1)}})
	}()
	testutil.WaitFor(t, "a commit to be held", func() bool { return fs.Held() == 1 })
	return p, fs, first
}

func poll(bot string, size int) AssignInput {
	return AssignInput{Time: t0.Add(3 * time.Second), Bots: []scheduler.IdleWorker{{ID: scheduler.WorkerID(bot), Labels: []string{"pool:x"}}}, Size: size}
}

func note(id string, size int) NotifyInput {
	return NotifyInput{Items: []scheduler.Notification{waiting(id, 2)}, Size: size}
}

// TestBytesBound: a pool's polls are bounded by their bytes as well as by
// their count (ErrOverloaded beyond), notifications by the bytes of every
// pool's together (ErrUnavailable beyond, never ErrOverloaded). A request
// larger than a bound is taken when nothing else is held.
func TestBytesBound(t *testing.T) {
	p, fs, first := heldPipeline(t, Options{MaxQueueBytes: 1000, MaxNotifyQueueBytes: 1000}, "p", "q")
	ctx := context.Background()
	errs := make(chan error, 10)
	pl, _ := p.pool("p")

	// A poll larger than the bound, into an empty queue: taken.
	go func() { _, err := p.Assign(ctx, "p", poll("big", 5000)); errs <- err }()
	testutil.WaitFor(t, "the large poll to be queued", func() bool { return pl.q.state().Polls == 1 })
	if _, err := p.Assign(ctx, "p", poll("small", 10)); !errors.Is(err, ErrOverloaded) {
		t.Errorf("a poll behind one over the byte bound: %v, want ErrOverloaded", err)
	}

	// Notifications: 1000 bytes for the process, the held batch's "first"
	// counting 0. 600 queued in p, 300 in q's batch (its commit is held
	// too): 900. Another 200 in q is too much.
	go func() { errs <- p.Notify(ctx, "p", note("n1", 600)) }()
	testutil.WaitFor(t, "a notification to be queued", func() bool { return pl.q.state().Urgent == 1 })
	go func() { errs <- p.Notify(ctx, "q", note("n2", 300)) }()
	testutil.WaitFor(t, "q's batch to be held", func() bool { return fs.Held() == 2 })
	if held, _ := p.NotifyBytes(); held != 900 {
		t.Errorf("the process holds %d bytes of notifications, want 900", held)
	}
	err := p.Notify(ctx, "q", note("n3", 200))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOverloaded) {
		t.Errorf("a notification over the process's bytes: %v, want ErrUnavailable", err)
	}
	if err := p.Mutate(ctx, "q", func(*scheduler.Scheduler) error { return nil }); !errors.Is(err, ErrUnavailable) {
		t.Errorf("an admin change over the process's bytes: %v, want ErrUnavailable", err)
	}
	if c := countersOf(t, p, "p"); c.ShedPolls != 1 || c.ShedNotifications != 0 {
		t.Errorf("p counted %+v, want one poll shed", c)
	}
	if c := countersOf(t, p, "q"); c.ShedNotifications != 1 || c.ShedAdmin != 1 {
		t.Errorf("q counted %+v, want one notification and admin change shed", c)
	}
	var st PoolStatus
	for _, s := range p.Status() {
		if s.Pool == "p" {
			st = s
		}
	}
	if st.QueuedPollBytes != 5000 || st.QueuedNotificationBytes != 600 {
		t.Errorf("p's status %+v, want 5000 bytes of polls and 600 of notifications queued", st)
	}
	fs.Release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	testutil.WaitFor(t, "the notification bytes to be released", func() bool { held, _ := p.NotifyBytes(); return held == 0 })
	// Everything answered: the bounds are free again.
	if err := p.Notify(ctx, "q", note("n4", 1000)); err != nil {
		t.Errorf("a notification of the whole bound once nothing is held: %v", err)
	}
}

// TestExpiredRequestsAreNotApplied: a request whose caller left while it
// was queued is dropped unapplied, counted, and stops counting against the
// bounds at once; the others of its batch are applied.
func TestExpiredRequestsAreNotApplied(t *testing.T) {
	p, fs, first := heldPipeline(t, Options{MaxNotifyQueue: 2, MaxQueue: 1}, "p")
	ctx := context.Background()
	pl, _ := p.pool("p")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	gone := make(chan error, 3)
	go func() { gone <- p.Notify(short, "p", note("late", 10)) }()
	go func() {
		gone <- p.Mutate(short, "p", func(s *scheduler.Scheduler) error { return errors.New("applied") })
	}()
	go func() { _, err := p.Assign(short, "p", poll("late-bot", 10)); gone <- err }()
	for range 3 {
		if err := <-gone; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a caller whose deadline passed got %v, want context.DeadlineExceeded", err)
		}
	}
	// Their places are free: the queue's bounds (2 and 1) take more.
	kept := make(chan error, 3)
	go func() { kept <- p.Notify(ctx, "p", note("kept", 10)) }()
	go func() { kept <- p.Notify(ctx, "p", note("kept-2", 10)) }()
	go func() { _, err := p.Assign(ctx, "p", poll("bot", 10)); kept <- err }()
	testutil.WaitFor(t, "the live requests to be queued", func() bool { l := pl.q.state(); return l.Urgent == 2 && l.Polls == 1 })
	if c := countersOf(t, p, "p"); c.ExpiredNotifications != 1 || c.ExpiredAdmin != 1 || c.ExpiredPolls != 1 {
		t.Errorf("counted %+v, want one expired notification, admin change and poll", c)
	}
	fs.Release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := <-kept; err != nil {
			t.Error(err)
		}
	}
	st, err := stateOf(p, "p")
	if err != nil {
		t.Fatal(err)
	}
	if got := mentions(st, "first", "kept", "kept-2", "bot", "late", "late-bot"); fmt.Sprint(got) != "[first kept kept-2 bot]" {
		t.Errorf("the state holds %v, want the live requests only", got)
	}
}

// TestTakeDropsExpired: a request whose caller's deadline passed but who
// did not take it out yet is dropped when its batch starts, unapplied.
func TestTakeDropsExpired(t *testing.T) {
	b := &budget{max: 100}
	q := newQueue(queueLimits{polls: 10, pollBytes: 100, urgent: 10}, b)
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	ops := []*op{
		{kind: opNotify, ctx: context.Background(), size: 10},
		{kind: opNotify, ctx: dead, size: 20},
		{kind: opAssign, ctx: dead, size: 30},
		{kind: opAssign, ctx: context.Background(), size: 40},
	}
	for _, o := range ops {
		if err := q.push(o); err != nil {
			t.Fatal(err)
		}
	}
	if b.used() != 30 {
		t.Errorf("budget holds %d, want 30", b.used())
	}
	batch, expired, done := q.take(10)
	if len(batch) != 2 || batch[0] != ops[0] || batch[1] != ops[3] || len(expired) != 2 || done {
		t.Fatalf("take: batch %v expired %v done %v, want the live notification and poll, two expired", batch, expired, done)
	}
	if b.used() != 10 {
		t.Errorf("budget holds %d with the batch running, want its notification's 10", b.used())
	}
	q.done(batch)
	if l := q.state(); l != (queueLens{}) || b.used() != 0 {
		t.Errorf("after the batch: queue %+v, budget %d, want nothing", l, b.used())
	}
}

// TestAbandonCompacts: callers that leave do not let the lists grow.
func TestAbandonCompacts(t *testing.T) {
	q := newQueue(queueLimits{polls: 1000, pollBytes: 1 << 20, urgent: 1000}, &budget{})
	var ops []*op
	for range 500 {
		o := &op{kind: opAssign, ctx: context.Background(), size: 1}
		if err := q.push(o); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, o)
	}
	for _, o := range ops[:499] {
		if !q.abandon(o) {
			t.Fatal("abandon of a queued request failed")
		}
	}
	if len(q.polls) > 100 || q.nPolls != 1 || q.pollBytes != 1 {
		t.Errorf("after 499 of 500 left: %d in the list, %d live, %d bytes", len(q.polls), q.nPolls, q.pollBytes)
	}
	batch, _, _ := q.take(10)
	if len(batch) != 1 || batch[0] != ops[499] {
		t.Errorf("take: %v, want the one left", batch)
	}
	if q.abandon(ops[499]) {
		t.Error("abandon of a taken request succeeded")
	}
}

// TestDoor: AdmitPoll refuses AssignTasks calls beyond MaxPollsInFlight
// with ErrOverloaded and counts them; a release frees a place.
func TestDoor(t *testing.T) {
	p := newPipeline(t, memory.New(memory.Options{}), nil, Options{MaxPollsInFlight: 2})
	r1, err := p.AdmitPoll()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := p.AdmitPoll()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AdmitPoll(); !errors.Is(err, ErrOverloaded) {
		t.Errorf("a third call: %v, want ErrOverloaded", err)
	}
	r1()
	r1() // releasing twice frees one place
	r3, err := p.AdmitPoll()
	if err != nil {
		t.Errorf("after a release: %v", err)
	}
	if d := p.Door(); d.InFlight != 2 || d.Refused != 1 || d.Max != 2 {
		t.Errorf("door %+v, want 2 in flight, 1 refused", d)
	}
	r2()
	r3()
	if d := p.Door(); d.InFlight != 0 {
		t.Errorf("door %+v, want none in flight", d)
	}
	off := newPipeline(t, memory.New(memory.Options{}), nil, Options{MaxPollsInFlight: -1})
	for range 10 {
		if _, err := off.AdmitPoll(); err != nil {
			t.Fatalf("no door: %v", err)
		}
	}
}

// TestPoolsShareTheDoor: while two pools poll, each may hold half of
// MaxPollsInFlight; the one over its share is shed, the other is not.
func TestPoolsShareTheDoor(t *testing.T) {
	p, fs, first := heldPipeline(t, Options{MaxPollsInFlight: 4}, "heavy", "light")
	ctx := context.Background()
	hp, _ := p.pool("heavy")
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	submit := func(pool, bot string) {
		wg.Add(1)
		go func() { defer wg.Done(); _, err := p.Assign(ctx, pool, poll(bot, 10)); errs <- err }()
	}
	// Alone, heavy may hold all four.
	for i := range 4 {
		submit("heavy", fmt.Sprint("h", i))
	}
	testutil.WaitFor(t, "heavy's polls to be queued", func() bool { return hp.q.state().Polls == 4 })
	// light polls (the door still counts one pool polling: it counts again
	// at most every pollerRecount).
	submit("light", "l0")
	lp, _ := p.pool("light")
	testutil.WaitFor(t, "light's poll to be held", func() bool { return lp.pollsHeld.Load() == 1 })
	// Once the door counts again, the pools share the bound, two each.
	p.polls.countedAt.Store(0)
	if _, err := p.Assign(ctx, "heavy", poll("h-over", 10)); !errors.Is(err, ErrOverloaded) {
		t.Errorf("heavy over its share: %v, want ErrOverloaded", err)
	}
	submit("light", "l1")
	testutil.WaitFor(t, "light's second poll to be held", func() bool { return lp.pollsHeld.Load() == 2 })
	if d := p.Door(); d.Pollers != 2 {
		t.Errorf("door %+v, want 2 pools polling", d)
	}
	fs.Release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
