package scheduler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestEveryRunningSecondIsCharged plays Swarming through the reconciler
// (Notify and AssignTasks only) with bots that poll rarely: an idle bot
// polls only at its 10-minute mark, so tasks start at a poll and end (an
// absent report) between polls, when nobody polls. Three accounts with
// unbounded demand, charge rates 1, 2 and 0.5 at P0, caps never reached and
// balances never low enough for another level, run tasks of known
// durations for two simulated hours. Every task is charged from its
// assignment to its absent report: each account's balance at the end is
// b0 + rate*(T - T0) - the seconds its tasks ran, and each task's COMPLETED
// event carries exactly its running time as its cost.
func TestEveryRunningSecondIsCharged(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stagger bool // bots poll at different marks instead of all at once
	}{
		{"bots poll together every 10 minutes", false},
		{"bots poll every 10 minutes, staggered", true},
	} {
		t.Run(tc.name, func(t *testing.T) { chargeRun(t, tc.stagger) })
	}
}

func chargeRun(t *testing.T, stagger bool) {
	const (
		nBots    = 6
		period   = 600  // s between an idle bot's polls
		duration = 7200 // s simulated
		b0       = 1e5  // initial balance: never below the demote threshold
		window   = 1e7  // caps rate*window: never reached
	)
	rates := map[AccountID]float64{"a": 1, "b": 2, "c": 0.5}
	accts := []AccountID{"a", "b", "c"}
	s, err := New(nil)
	must(t, err)
	for _, a := range accts {
		must(t, s.AddAccount(a, acctCfg(window, float32(rates[a])), []float32{b0}))
	}
	rng := rand.New(rand.NewPCG(1, 2))

	type task struct {
		id         RequestID
		acct       AccountID
		start, end int // s; end is when Swarming reports it absent
		bot        WorkerID
	}
	tasks := map[RequestID]*task{}
	waiting := map[AccountID]int{}
	running := map[WorkerID]*task{}
	var ids []RequestID // in creation order
	bots := make([]WorkerID, nBots)
	offset := map[WorkerID]int{}
	for i := range bots {
		bots[i] = WorkerID(fmt.Sprintf("bot%d", i))
		if stagger {
			offset[bots[i]] = i * period / nBots
		}
	}
	charged := 0 // COMPLETED events checked
	events := func(now int, pollers []IdleWorker) {
		t.Helper()
		for _, e := range s.TakeEvents() {
			switch e.Type {
			case EventEnqueued:
			case EventAssigned:
				// The model's start time is the poll: an assignment must be
				// to a bot polling now.
				if e.Time != ns(float64(now)) || !slices.ContainsFunc(pollers, func(w IdleWorker) bool { return w.ID == e.Worker }) {
					t.Fatalf("t=%d: %s assigned to %s, which is not polling", now, e.Task, e.Worker)
				}
			case EventCompleted:
				x := tasks[e.Task]
				if e.Reason != ReasonRunningTaskAbsent || x == nil {
					t.Fatalf("t=%d: unexpected %v %s %v", now, e.Type, e.Task, e.Reason)
				}
				if want := float64(x.end - x.start); math.Abs(e.Cost[0]-want) > 1e-6 || e.Cost != vec(e.Cost[0]) {
					t.Fatalf("t=%d: %s ran %v s (%d..%d), charged %v", now, e.Task, want, x.start, x.end, e.Cost)
				}
				charged++
			default:
				t.Fatalf("t=%d: unexpected %v of %s: the model has no preemption, reprioritization or unassignment", now, e.Type, e.Task)
			}
		}
	}
	seq := 0
	for now := 0; now <= duration; now++ {
		// Tasks that ended are reported absent when they end.
		for _, b := range bots {
			if x := running[b]; x != nil && x.end == now {
				must(t, s.Notify(Notification{Kind: NotifyAbsent, Time: at(float64(now)), Task: Task{ID: x.id}}, false))
				delete(running, b)
			}
		}
		// Unbounded demand: every account keeps tasks waiting.
		for _, a := range accts {
			for waiting[a] < nBots {
				seq++
				id := RequestID(fmt.Sprintf("%s-%04d", a, seq))
				tasks[id] = &task{id: id, acct: a}
				ids = append(ids, id)
				waiting[a]++
				must(t, s.Notify(Notification{Kind: NotifyWaiting, Time: at(float64(now)), Task: Task{ID: id, Account: a, EnqueueTime: at(float64(now))}}, false))
			}
		}
		events(now, nil)
		// Idle bots poll only at their mark.
		var pollers []IdleWorker
		for _, b := range bots {
			if running[b] == nil && (now-offset[b])%period == 0 {
				pollers = append(pollers, IdleWorker{ID: b})
			}
		}
		if len(pollers) == 0 {
			continue
		}
		out, err := s.AssignTasks(at(float64(now)), pollers)
		must(t, err)
		events(now, pollers)
		if len(out) != len(pollers) {
			t.Fatalf("t=%d: %d of %d polling bots got a task", now, len(out), len(pollers))
		}
		for _, a := range out {
			x := tasks[a.Task]
			x.start, x.end, x.bot = now, now+30+rng.IntN(1500), a.Worker
			running[a.Worker] = x
			waiting[x.acct]--
			must(t, s.Notify(Notification{Kind: NotifyRunning, Time: at(float64(now)), Task: Task{ID: a.Task}, Worker: a.Worker}, false))
		}
		events(now, nil)
	}
	if charged == 0 {
		t.Fatal("no task ended")
	}
	// A poll of no bot brings the clock to the end (every known bot runs a
	// task, so the pass assigns nothing).
	_, err = s.AssignTasks(at(duration), nil)
	must(t, err)
	events(duration, nil)
	for _, a := range accts {
		ran := 0 // running seconds of a's tasks up to the end
		for _, id := range ids {
			if x := tasks[id]; x.acct == a && x.bot != "" {
				ran += min(x.end, duration) - x.start
			}
		}
		bal, _ := s.Balance(a)
		got := b0 + rates[a]*duration - bal[0] // what a paid for its tasks
		t.Logf("account %s: tasks ran %d s, charged %.6f s", a, ran, got)
		if ran == 0 {
			t.Fatalf("account %s ran nothing", a)
		}
		if math.Abs(got-float64(ran)) > 0.01*float64(ran) {
			t.Errorf("account %s: charged %.3f s for %d s of running tasks (off by %.1f %%)", a, got, ran, 100*(got-float64(ran))/float64(ran))
		}
		if bal != vec(bal[0]) {
			t.Errorf("account %s: balance %v outside P0", a, bal)
		}
	}
}
