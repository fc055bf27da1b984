package scheduler

import (
	"cmp"
	"container/heap"
	"slices"
	"strings"
	"time"
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
	type item struct {
		confirmed int64
		id        string
		r         *request
		w         *worker
	}
	older := func(a, b item) bool {
		if a.confirmed != b.confirmed {
			return a.confirmed < b.confirmed
		}
		return a.id < b.id
	}
	running := newTopK(maxItems, older)
	waiting := newTopK(maxItems, older)
	idle := newTopK(maxItems, older)
	for _, a := range s.accounts {
		if a.hasBalance {
			v.Balances[a.id] = a.balance
		}
		v.WaitingByLevel[a.priority()] += a.waiting
	}
	for _, r := range s.requests {
		if r.cls != nil {
			v.NumWaiting++
			waiting.add(item{r.confirmed, string(r.id), r, nil})
		}
	}
	for _, w := range s.workers {
		if w.req == nil {
			v.NumIdle++
			idle.add(item{w.confirmed, string(w.id), nil, w})
			continue
		}
		v.NumRunning++
		v.RunningByLevel[w.level]++
		running.add(item{w.latestConfirmed(), string(w.req.id), w.req, w})
	}
	for _, it := range running.sorted() {
		v.Running = append(v.Running, RunningView{ID: it.r.id, Worker: it.w.id, Priority: it.w.level, Account: it.r.acct.id, Age: age(it.confirmed)})
	}
	for _, it := range waiting.sorted() {
		v.Waiting = append(v.Waiting, WaitingView{ID: it.r.id, Account: it.r.acct.id, Age: age(it.confirmed)})
	}
	for _, it := range idle.sorted() {
		v.Idle = append(v.Idle, IdleView{ID: it.w.id, Labels: it.w.names, Age: age(it.confirmed)})
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

// topK keeps the k least items under less.
type topK[T any] struct {
	k     int
	less  func(a, b T) bool
	items []T // a max-heap under less
}

func newTopK[T any](k int, less func(a, b T) bool) *topK[T] {
	return &topK[T]{k: k, less: less}
}

func (t *topK[T]) Len() int           { return len(t.items) }
func (t *topK[T]) Less(i, j int) bool { return t.less(t.items[j], t.items[i]) }
func (t *topK[T]) Swap(i, j int)      { t.items[i], t.items[j] = t.items[j], t.items[i] }
func (t *topK[T]) Push(x any)         { t.items = append(t.items, x.(T)) }
func (t *topK[T]) Pop() any {
	x := t.items[len(t.items)-1]
	t.items = t.items[:len(t.items)-1]
	return x
}

func (t *topK[T]) add(x T) {
	if t.k <= 0 {
		return
	}
	if len(t.items) < t.k {
		heap.Push(t, x)
		return
	}
	if t.less(x, t.items[0]) {
		t.items[0] = x
		heap.Fix(t, 0)
	}
}

func (t *topK[T]) sorted() []T {
	out := slices.Clone(t.items)
	slices.SortFunc(out, func(a, b T) int {
		if t.less(a, b) {
			return -1
		}
		if t.less(b, a) {
			return 1
		}
		return 0
	})
	return out
}
