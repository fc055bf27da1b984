package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// TestFairShareTwoToOne: accounts with charge rates 2 and 1 (one level,
// window 600 s) and unbounded demand share 3 bots for one simulated hour of
// 1-second passes with 60-second tasks. Swarming is played through the
// reconciler: bots poll when their task ends, assignments are confirmed
// RUNNING at once, a preempted task is reported absent and its bot polls
// again. Their worker-seconds must be within 5 % of 2:1 and neither starves.
func TestFairShareTwoToOne(t *testing.T) {
	s, err := New(nil)
	must(t, err)
	must(t, s.AddAccount("a", acctCfg(600, 2), nil))
	must(t, s.AddAccount("b", acctCfg(600, 1), nil))
	bots := []WorkerID{"bot1", "bot2", "bot3"}
	type run struct {
		task  RequestID
		acct  AccountID
		start time.Time
	}
	running := map[WorkerID]*run{}
	waiting := map[AccountID]int{}
	owner := map[RequestID]AccountID{}
	seq := 0
	workerSeconds := map[AccountID]int{}
	const hour = 3600

	confirm := func(now time.Time, out []TaskAssignment) {
		for _, a := range out {
			if r := running[a.Worker]; r != nil && r.task == a.Task {
				continue // still the same pending assignment
			}
			running[a.Worker] = &run{a.Task, owner[a.Task], now}
			waiting[owner[a.Task]]--
			must(t, s.Notify(Notification{Kind: NotifyRunning, Time: now, Task: Task{ID: a.Task}, Worker: a.Worker}, false))
		}
	}
	for sec := 0; sec < hour; sec++ {
		now := at(float64(sec))
		for _, acct := range []AccountID{"a", "b"} {
			for waiting[acct] < 10 { // unbounded demand
				seq++
				id := RequestID(fmt.Sprintf("%s-%05d", acct, seq))
				owner[id] = acct
				waiting[acct]++
				must(t, s.Notify(Notification{Kind: NotifyWaiting, Time: now, Task: Task{ID: id, Account: acct, EnqueueTime: now}}, false))
			}
		}
		var idle []IdleWorker
		for _, b := range bots {
			if r := running[b]; r == nil || now.Sub(r.start) >= time.Minute {
				if r != nil {
					must(t, s.Notify(Notification{Kind: NotifyAbsent, Time: now, Task: Task{ID: r.task}}, false))
					delete(running, b)
				}
				idle = append(idle, IdleWorker{ID: b})
			}
		}
		out, err := s.AssignTasks(now, idle)
		must(t, err)
		confirm(now, out)
		// Preemptions: Swarming kills the victim, the bot polls again and
		// gets the preemptor.
		for _, e := range s.TakeEvents() {
			if e.Type != EventAssigned || !e.Preempting {
				continue
			}
			must(t, s.Notify(Notification{Kind: NotifyAbsent, Time: now, Task: Task{ID: e.PreemptedTask}}, false))
			delete(running, e.Worker)
			out, err := s.AssignTasks(now, []IdleWorker{{ID: e.Worker}})
			must(t, err)
			confirm(now, out)
		}
		s.DiscardEvents()
		for _, r := range running {
			workerSeconds[r.acct]++
		}
	}
	a, b := workerSeconds["a"], workerSeconds["b"]
	t.Logf("worker-seconds: a=%d b=%d ratio %.3f", a, b, float64(a)/float64(b))
	if a == 0 || b == 0 {
		t.Fatalf("an account starved: a=%d b=%d", a, b)
	}
	if ratio := float64(a) / float64(b); ratio < 2*0.95 || ratio > 2*1.05 {
		t.Errorf("worker-seconds a:b = %d:%d = %.3f, want 2 within 5%%", a, b, ratio)
	}
	if a+b < 3*hour*95/100 {
		t.Errorf("bots busy %d of %d worker-seconds: idle bots while work waited", a+b, 3*hour)
	}
}
