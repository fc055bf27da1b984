package scheduler

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/selectk"
)

// PoolView is what operators see of a pool (InspectPool).
type PoolView struct {
	// Now is the scheduler clock (zero when HasClock is false).
	Now      time.Time
	HasClock bool

	NumWaiting, NumRunning, NumIdle int
	// RunningByLevel counts running tasks by level 0..5; WaitingByLevel
	// waiting requests by their account's current priority.
	RunningByLevel, WaitingByLevel [NumPaidLevels + 1]int

	Balances map[AccountID]Vector

	// The oldest entries (by confirmed time, then id), at most maxItems each.
	Running []RunningView
	Waiting []WaitingView
	Idle    []IdleView

	// Excess lists limits that running tasks exceed (caused from outside:
	// Swarming starting tasks, or an operator lowering a limit).
	Excess []LimitExcess
}

// RunningView is a running task in a PoolView.
type RunningView struct {
	ID       RequestID
	Worker   WorkerID
	Priority Priority
	Account  AccountID
	Age      time.Duration
}

// WaitingView is a waiting request in a PoolView.
type WaitingView struct {
	ID      RequestID
	Account AccountID
	Age     time.Duration
}

// IdleView is an idle worker in a PoolView.
type IdleView struct {
	ID     WorkerID
	Labels []string
	Age    time.Duration
}

// LimitExcess is a limit exceeded by running tasks.
type LimitExcess struct {
	Account AccountID
	Kind    string // "fanout" or "label"
	Key     string // the group's labels joined by ",", or the label
	Running int
	Limit   int
}

// View returns the pool as operators see it, with at most maxItems entries
// per list (maxItems <= 0: no entries).
func (s *Scheduler) View(maxItems int) PoolView {
	v := PoolView{HasClock: s.hasClock, Balances: map[AccountID]Vector{}}
	if s.hasClock {
		v.Now = Time(s.now)
	}
	age := func(confirmed int64) time.Duration {
		if !s.hasClock || confirmed >= s.now {
			return 0
		}
		return time.Duration(s.now - confirmed)
	}
	var running, waiting, idle []confirmedKey
	for _, a := range s.accounts {
		if a.hasBalance {
			v.Balances[a.id] = a.balance
		}
		v.WaitingByLevel[a.priority()] += a.waiting
	}
	s.requests.All(func(r *request) {
		if r.cls != nil {
			v.NumWaiting++
			if maxItems > 0 {
				waiting = append(waiting, confirmedKey{t: r.confirmed, id: string(r.id), r: r})
			}
		}
	})
	for _, w := range s.workers {
		if w.req == nil {
			v.NumIdle++
			if maxItems > 0 {
				idle = append(idle, confirmedKey{t: w.confirmed, id: string(w.id), w: w})
			}
			continue
		}
		v.NumRunning++
		v.RunningByLevel[w.level]++
		if maxItems > 0 {
			running = append(running, confirmedKey{t: w.latestConfirmed(), id: string(w.req.id), r: w.req, w: w})
		}
	}
	for _, it := range selectk.Smallest(running, maxItems, cmpConfirmed) {
		v.Running = append(v.Running, RunningView{ID: it.r.id, Worker: it.w.id, Priority: it.w.level, Account: it.r.acct.id, Age: age(it.t)})
	}
	for _, it := range selectk.Smallest(waiting, maxItems, cmpConfirmed) {
		v.Waiting = append(v.Waiting, WaitingView{ID: it.r.id, Account: it.r.acct.id, Age: age(it.t)})
	}
	for _, it := range selectk.Smallest(idle, maxItems, cmpConfirmed) {
		v.Idle = append(v.Idle, IdleView{ID: it.w.id, Labels: it.w.names, Age: age(it.t)})
	}
	for _, a := range s.sortedAccounts() {
		if a.maxFanout > 0 {
			for fan, g := range a.fanout {
				if g.paid > a.maxFanout {
					v.Excess = append(v.Excess, LimitExcess{a.id, "fanout", strings.Join(fan.names, ","), int(g.paid), int(a.maxFanout)})
				}
			}
		}
		for l, n := range a.labelCount {
			if lim, ok := a.limits[s.labels.keys[l]]; ok && n > lim {
				v.Excess = append(v.Excess, LimitExcess{a.id, "label", s.labels.names[l], int(n), int(lim)})
			}
		}
	}
	slices.SortFunc(v.Excess, func(x, y LimitExcess) int {
		return cmp.Or(cmp.Compare(x.Account, y.Account), cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Key, y.Key))
	})
	return v
}

// confirmedKey orders requests and workers oldest confirmed first, then by
// id (the order of callbacks and views).
type confirmedKey struct {
	t  int64
	id string
	r  *request
	w  *worker
}

func cmpConfirmed(a, b confirmedKey) int {
	switch {
	case a.t < b.t:
		return -1
	case a.t > b.t:
		return 1
	case a.id < b.id:
		return -1
	case a.id > b.id:
		return 1
	}
	return 0
}
