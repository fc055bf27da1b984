package scheduler

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/btree"
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

	// The oldest entries after the page's cursor (by confirmed time, then
	// id), at most maxItems each.
	Running []RunningView
	Waiting []WaitingView
	Idle    []IdleView

	// Excess lists limits that running tasks exceed (caused from outside:
	// Swarming starting tasks, or an operator lowering a limit).
	Excess []LimitExcess

	// Next is where the next page starts: after the last entry of each
	// list on this page (where this page started, for a list without
	// entries on it). More reports whether any list has entries after
	// Next.
	Next ViewCursor
	More bool
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

// ViewPos is a position in one list of a PoolView: the entries after the
// one confirmed at Confirmed (Unix nanoseconds) with id ID, in the list's
// order (confirmed time, then id, bytewise). The zero value (Set false)
// is before the first entry.
type ViewPos struct {
	Set       bool
	Confirmed int64
	ID        string
}

// ViewCursor is where each list of a page of View starts. The zero value
// starts every list at its oldest entry.
type ViewCursor struct {
	Running, Waiting, Idle ViewPos
}

// View returns the pool as operators see it, with the first maxItems
// entries of each list (maxItems <= 0: no entries): ViewPage from the
// start.
func (s *Scheduler) View(maxItems int) PoolView {
	return s.ViewPage(ViewCursor{}, maxItems)
}

// ViewPage returns the pool as operators see it: the counts, balances and
// excesses of the whole pool, and of each list the first maxItems entries
// after from's position for that list (maxItems <= 0: no entries). The
// page's Next continues each list after its last entry.
//
// Pages read a pool that may change between them. Each page lists what
// follows its position at the time it is read, so a walk from the zero
// cursor lists, exactly once and in order, every entry present and not
// re-confirmed from its first page to its last. Entries that arrive with a
// place after a list's position appear on a later page; entries that
// arrive before it, or leave, do not; an entry that moves to another list
// (a waiting request that starts) counts as leaving one and arriving in
// the other. Confirmed times only increase: a re-confirmed entry moves
// later in its list, and one already listed is listed again if that takes
// it past the list's position.
//
// The counts come from counters and the lists from the orders kept by
// confirmed time (confirmedOrder): a page costs O(accounts + log n +
// maxItems), plus the fanout groups and limited labels of accounts with
// limits for the excesses, never a pass over the tasks or workers.
func (s *Scheduler) ViewPage(from ViewCursor, maxItems int) PoolView {
	v := PoolView{HasClock: s.hasClock, Balances: map[AccountID]Vector{}, Next: from}
	if s.hasClock {
		v.Now = Time(s.now)
	}
	age := func(confirmed int64) time.Duration {
		if !s.hasClock || confirmed >= s.now {
			return 0
		}
		return time.Duration(s.now - confirmed)
	}
	v.NumWaiting, v.NumRunning, v.NumIdle = s.nWaiting, s.byConf.running.Len(), s.byConf.idle.Len()
	for _, a := range s.accounts {
		if a.hasBalance {
			v.Balances[a.id] = a.balance
		}
		v.WaitingByLevel[a.priority()] += a.waiting
		for l, ws := range a.running {
			v.RunningByLevel[l] += len(ws)
		}
	}
	var more [3]bool
	v.Next.Running, more[0] = page(&s.byConf.running, from.Running, maxItems, func(k viewKey, w *worker) {
		v.Running = append(v.Running, RunningView{ID: w.req.id, Worker: w.id, Priority: w.level, Account: w.req.acct.id, Age: age(k.t)})
	})
	v.Next.Waiting, more[1] = page(&s.byConf.waiting, from.Waiting, maxItems, func(k viewKey, r *request) {
		v.Waiting = append(v.Waiting, WaitingView{ID: r.id, Account: r.acct.id, Age: age(k.t)})
	})
	v.Next.Idle, more[2] = page(&s.byConf.idle, from.Idle, maxItems, func(k viewKey, w *worker) {
		v.Idle = append(v.Idle, IdleView{ID: w.id, Labels: w.names, Age: age(k.t)})
	})
	v.More = more[0] || more[1] || more[2]
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

// confirmedOrder holds the waiting requests, running tasks and idle
// workers each in a B-tree by (confirmed time, id), the order of View and
// Callbacks: a waiting request by its confirmed time and id, a running task
// by its worker's latestConfirmed and the request's id, an idle worker by
// its confirmed time and id. The functions that change an entry's list or
// confirmed time keep them exact: enqueue and dequeue, attach and detach,
// pushIdle and removeIdle, and the confirmations of addRequest, markIdle
// and confirm (an entry moves by a deletion and an insertion, O(log n)
// each). An entry costs its key and pointer (32 bytes) and about half of
// that in unused node space. Reading the k oldest entries after any
// position costs O(log n + k), so a page of View and Callbacks never scan.
type confirmedOrder struct {
	waiting btree.Set[viewKey, *request]
	running btree.Set[viewKey, *worker]
	idle    btree.Set[viewKey, *worker]
}

func (o *confirmedOrder) init() {
	o.waiting.Cmp, o.running.Cmp, o.idle.Cmp = cmpViewKey, cmpViewKey, cmpViewKey
}

// viewKey is an entry's place in a confirmedOrder: confirmed time, then id
// (bytewise).
type viewKey struct {
	t  int64
	id string
}

func newViewKey(t int64, id string) viewKey { return viewKey{t, id} }

func cmpViewKey(a, b viewKey) int {
	if a.t != b.t {
		return cmp.Compare(a.t, b.t)
	}
	return strings.Compare(a.id, b.id)
}

func waitingKey(r *request) viewKey { return newViewKey(r.confirmed, string(r.id)) }
func runningKey(w *worker) viewKey  { return newViewKey(w.latestConfirmed(), string(w.req.id)) }
func idleKey(w *worker) viewKey     { return newViewKey(w.confirmed, string(w.id)) }

// page calls add on the first max entries of set after from, and returns
// the position after the last of them (from when there is none) and
// whether more entries follow.
func page[V any](set *btree.Set[viewKey, V], from ViewPos, max int, add func(viewKey, V)) (next ViewPos, more bool) {
	next, n := from, 0
	f := func(k viewKey, x V) bool {
		if n >= max {
			more = true
			return false
		}
		add(k, x)
		n++
		next = ViewPos{Set: true, Confirmed: k.t, ID: k.id}
		return true
	}
	if from.Set {
		set.AscendAfter(newViewKey(from.Confirmed, from.ID), f)
	} else {
		set.Ascend(f)
	}
	return next, more
}
