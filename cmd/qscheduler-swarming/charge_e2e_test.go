package main

// The service charges every second a task runs: tasks of known durations are
// played through NotifyTasks and AssignTasks, as Swarming sends them, and
// each account's balance, as QSchedulerView/InspectPool shows it, must have
// paid exactly its tasks' running time, also when no bot polls while tasks
// end.

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
)

// chargeScenario is a pool whose bots poll at fixed instants and run tasks of
// known durations. Every account has unbounded demand and a charge rate at
// P0 of at least the number of bots, so its balance never falls: every task
// starts and stays at P0. Caps (rate × chargeCapSeconds) are far above
// rate × duration, so no balance ever reaches its cap. The first request
// (a NotifyTasks at 0 s) starts the clock with every balance at 0, so at the
// end each account's balance is rate × duration − the seconds its tasks ran.
type chargeScenario struct {
	name     string
	bots     int
	rates    map[string]float32 // account → charge rate at P0
	duration int                // s simulated; a poll of no bot brings the clock there at the end
	// polls says whether bot (0-based) polls at now if it is idle.
	polls func(bot, now int) bool
	// length is the running time of the n-th task started (0-based), at now.
	length func(n, now int) int
	// batch: the bots polling at one instant poll in one AssignTasks call
	// (else one call per bot, as Swarming does).
	batch bool
}

const chargeCapSeconds = 1e6 // max_charge_seconds: far above every duration

func TestServiceChargesEveryRunningSecond(t *testing.T) {
	mixed := []int{120, 37, 410, 120, 905, 1333, 120, 264, 2100, 599, 61}
	together := []int{120, 300, 599, 45, 450, 240}
	scenarios := []chargeScenario{
		{
			// Bot i polls only at its own 10-minute mark (37 s + 97 s × i,
			// then every 600 s) and only when idle; tasks of mixed lengths
			// end between polls, when no bot polls.
			name: "poll rarely", bots: 6, duration: 7200,
			rates: map[string]float32{"a": 6, "b": 10, "c": 15},
			polls: func(bot, now int) bool {
				off := 37 + 97*bot
				return now >= off && (now-off)%600 == 0
			},
			length: func(n, _ int) int { return mixed[n%len(mixed)] },
		},
		{
			// Every bot polls at each 10-minute mark, one call per bot at
			// the same instant; the tasks of a round all end together,
			// before the next mark.
			name: "poll all at once", bots: 8, duration: 7200,
			rates: map[string]float32{"a": 8, "b": 12},
			polls: func(_, now int) bool { return now > 0 && now%600 == 0 },
			length: func(_, now int) int {
				return together[(now/600)%len(together)]
			},
		},
		{
			// 200 bots run 120 s tasks for an hour: every bot is busy, so
			// no bot polls until all tasks ended, and then all poll at once.
			name: "all bots busy", bots: 200, duration: 60 + 3600,
			rates:  map[string]float32{"a": 200, "b": 250},
			polls:  func(_, now int) bool { return now >= 60 && (now-60)%120 == 0 },
			length: func(int, int) int { return 120 },
			batch:  true,
		},
	}
	ts := startServer(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, tr := range []struct {
				name string
				c    clients
			}{{"prpc", ts.prpcClients()}, {"grpc", ts.grpcClients()}} {
				t.Run(tr.name, func(t *testing.T) {
					runChargeScenario(t, tr.c, "charge-"+strings.ReplaceAll(sc.name, " ", "-")+"-"+tr.name, sc)
				})
			}
		})
	}
}

func runChargeScenario(t *testing.T, c clients, pool string, sc chargeScenario) {
	ctx := context.Background()
	must(c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool}))(t)
	var accts []string
	for a := range sc.rates {
		accts = append(accts, a)
	}
	slices.Sort(accts)
	for _, a := range accts {
		must(c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: a,
			Config: &statev1.AccountConfig{ChargeRate: []float32{sc.rates[a]}, MaxChargeSeconds: chargeCapSeconds}}))(t)
	}

	type task struct {
		id, acct, bot string
		start, end    int // s: assigned at start, reported COMPLETED at end
	}
	tasks := map[string]*task{}
	var all []*task // in creation order
	waiting := map[string]int{}
	busy := map[string]*task{} // bot → its running task
	bots := make([]string, sc.bots)
	for i := range bots {
		bots[i] = fmt.Sprintf("bot-%03d", i)
	}
	var items []*swarmingv1.NotifyTasksItem
	notifyAt := func(sec int, task *swarmingv1.TaskSpec) {
		items = append(items, &swarmingv1.NotifyTasksItem{Time: at(float64(sec)), Task: task})
	}
	send := func() {
		t.Helper()
		if len(items) > 0 {
			must(c.swarming.NotifyTasks(ctx, &swarmingv1.NotifyTasksRequest{SchedulerId: pool, Notifications: items}))(t)
			items = nil
		}
	}
	seq, started := 0, 0
	for now := 0; now <= sc.duration; now++ {
		// Tasks that end now are reported COMPLETED at their end time.
		for _, b := range bots {
			if x := busy[b]; x != nil && x.end == now {
				notifyAt(now, completed(x.id))
				delete(busy, b)
			}
		}
		var pollers []string
		for i, b := range bots {
			if now < sc.duration && busy[b] == nil && sc.polls(i, now) {
				pollers = append(pollers, b)
			}
		}
		// Unbounded demand: before bots poll, every account has at least
		// as many waiting tasks as bots poll. The tasks reported at 0 start
		// the clock.
		if now == 0 || len(pollers) > 0 {
			for _, a := range accts {
				for waiting[a] < max(1, len(pollers)) {
					seq++
					x := &task{id: fmt.Sprintf("%s-%05d", a, seq), acct: a}
					tasks[x.id] = x
					all = append(all, x)
					waiting[a]++
					spec := pendingTask(x.id, a, []string{"pool:lab"})
					spec.EnqueuedTime = at(float64(now))
					notifyAt(now, spec)
				}
			}
		}
		send()
		if len(pollers) == 0 {
			continue
		}
		var got []*swarmingv1.TaskAssignment
		if sc.batch {
			req := &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(float64(now))}
			for _, b := range pollers {
				req.IdleBots = append(req.IdleBots, &swarmingv1.IdleBot{BotId: b, Dimensions: []string{"pool:lab"}})
			}
			got = must(c.swarming.AssignTasks(ctx, req))(t).Assignments
		} else {
			for _, b := range pollers {
				if a := poll(t, c, pool, b, float64(now), "pool:lab"); a != nil {
					got = append(got, a)
				}
			}
		}
		if len(got) != len(pollers) {
			t.Fatalf("t=%d s: %d bots polled with tasks of every account waiting, %d got a task: %v", now, len(pollers), len(got), got)
		}
		for _, a := range got {
			x := tasks[a.TaskId]
			switch {
			case x == nil || x.bot != "":
				t.Fatalf("t=%d s: %s was given %s, which is not waiting", now, a.BotId, a.TaskId)
			case !slices.Contains(pollers, a.BotId) || busy[a.BotId] != nil:
				t.Fatalf("t=%d s: %s was given to %s, which did not poll", now, a.TaskId, a.BotId)
			}
			x.bot, x.start, x.end = a.BotId, now, now+sc.length(started, now)
			started++
			busy[a.BotId] = x
			waiting[x.acct]--
			notifyAt(now, running(x.id, x.bot))
		}
		send()
		// The model holds only if every task runs at P0.
		ip := must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool, MaxItems: int32(sc.bots)}))(t)
		if int(ip.NumRunningTasks) != len(busy) {
			t.Fatalf("t=%d s: InspectPool says %d tasks run, Swarming has %d running", now, ip.NumRunningTasks, len(busy))
		}
		for _, r := range ip.RunningTasks {
			if r.Priority != 0 {
				t.Fatalf("t=%d s: %s of account %s runs at priority %d, want 0 (the test's charge rates keep every balance positive)", now, r.Id, r.AccountId, r.Priority)
			}
		}
	}
	// A poll of no bot brings the clock to the end; tasks still running are
	// charged up to it.
	must(c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(float64(sc.duration))}))(t)
	ip := must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool}))(t)
	if !ip.SchedulerTime.AsTime().Equal(at(float64(sc.duration)).AsTime()) {
		t.Errorf("scheduler time %v, want %v (the last request's time)", ip.SchedulerTime.AsTime(), at(float64(sc.duration)).AsTime())
	}
	for _, a := range accts {
		ran, n := 0, 0 // seconds a's tasks ran until the end, and how many ran
		for _, x := range all {
			if x.acct == a && x.bot != "" {
				ran += min(x.end, sc.duration) - x.start
				n++
			}
		}
		if ran == 0 {
			t.Fatalf("account %s ran no task: the scenario tests nothing", a)
		}
		bal := ip.AccountBalances[a]
		if bal == nil || len(bal.Value) == 0 {
			t.Fatalf("account %s: InspectPool shows no balance (%v)", a, bal)
		}
		recharged := float64(sc.rates[a]) * float64(sc.duration)
		charged := recharged - float64(bal.Value[0])
		t.Logf("account %s (rate %v): %d tasks ran %d s, charged %.1f s (balance %.1f)", a, sc.rates[a], n, ran, charged, bal.Value[0])
		if math.Abs(charged-float64(ran)) > 0.01*float64(ran) {
			t.Errorf("account %s: charged %.1f s, want the %d s its %d tasks ran (off by %.1f %%): P0 balance %.1f, want %v × %d s − %d s = %.1f",
				a, charged, ran, n, 100*(charged-float64(ran))/float64(ran), bal.Value[0], sc.rates[a], sc.duration, ran, recharged-float64(ran))
		}
		for p, v := range bal.Value[1:] {
			if v != 0 {
				t.Errorf("account %s: balance at P%d is %v, want 0 (charge rate only at P0)", a, p+1, v)
			}
		}
	}
}
