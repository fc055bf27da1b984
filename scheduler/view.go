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
// The counts come from counters and the lists from the orders by confirmed
// time (confirmedOrder), settled first (SettleOrders): a settled page costs
// O(accounts + log n + maxItems), plus the fanout groups and limited labels of accounts with
// limits for the excesses, never a pass over the tasks or workers.
func (s *Scheduler) ViewPage(from ViewCursor, maxItems int) PoolView {
	s.SettleOrders()
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
// its confirmed time and id. An entry costs its key and pointer (32 bytes)
// and about half of that in unused node space. Reading the k oldest
// entries after any position costs O(log n + k), so a page of View and
// Callbacks never scan.
//
// The orders are settled, not kept: the functions that change an entry's
// list or confirmed time (enqueue and dequeue, attach and detach, pushIdle
// and removeIdle, and the confirmations of addRequest, markIdle and
// confirm) only mark the entry, once, and settle files each marked entry
// where it now belongs (a deletion and an insertion, O(log n) each, for an
// entry that moved; nothing for one that came back to its place). A pass
// that starts and preempts thousands of tasks therefore costs the orders
// nothing while its callers wait; the moves are paid once per entry when
// the orders are next settled (Scheduler.SettleOrders).
type confirmedOrder struct {
	waiting btree.Set[viewKey, *request]
	running btree.Set[viewKey, *worker]
	idle    btree.Set[viewKey, *worker]

	// The entries marked since the last settle.
	markedRequests []*request
	markedWorkers  []*worker
}

// orderList names the list of a confirmedOrder that holds a worker.
type orderList uint8

const (
	inNoList orderList = iota
	inRunning
	inIdle
)

// markRequest marks r for the next settle.
func (o *confirmedOrder) markRequest(r *request) {
	if !r.ordPending {
		r.ordPending = true
		o.markedRequests = append(o.markedRequests, r)
	}
}

// markWorker marks w for the next settle.
func (o *confirmedOrder) markWorker(w *worker) {
	if !w.ordPending {
		w.ordPending = true
		o.markedWorkers = append(o.markedWorkers, w)
	}
}

// settled reports whether no entry is marked.
func (o *confirmedOrder) settled() bool {
	return len(o.markedRequests) == 0 && len(o.markedWorkers) == 0
}

// settle files every marked entry where it belongs now: a request in the
// waiting list while it waits (it has a class); a worker in the running
// list while it runs a task, in the idle list while it is in the idle
// heap; an entry that is neither (dropped, forgotten, or between lists) in
// no list. It takes every moved entry out before it files any: a key is
// unique among the entries present, but an entry that left may have held
// the key an entry that arrived takes (a task that moved to another bot
// with the same confirmed time, a request re-created under its id).
func (o *confirmedOrder) settle() {
	if o.settled() {
		return // and writes nothing: readers may share a settled order
	}
	for _, r := range o.markedRequests {
		if r.ordIn && (r.cls == nil || r.ordT != r.confirmed) {
			o.waiting.Delete(newViewKey(r.ordT, string(r.id)))
			r.ordIn = false
		}
	}
	for _, w := range o.markedWorkers {
		if want, k := w.place(); w.ordIn != inNoList && (w.ordIn != want || w.ordKey != k) {
			o.list(w.ordIn).Delete(w.ordKey)
			w.ordIn, w.ordKey = inNoList, viewKey{}
		}
	}
	for i, r := range o.markedRequests {
		if r.cls != nil && !r.ordIn {
			o.waiting.Insert(waitingKey(r), r)
			r.ordIn, r.ordT = true, r.confirmed
		}
		r.ordPending = false
		o.markedRequests[i] = nil
	}
	o.markedRequests = o.markedRequests[:0]
	for i, w := range o.markedWorkers {
		if want, k := w.place(); want != inNoList && w.ordIn == inNoList {
			o.list(want).Insert(k, w)
			w.ordIn, w.ordKey = want, k
		}
		w.ordPending = false
		o.markedWorkers[i] = nil
	}
	o.markedWorkers = o.markedWorkers[:0]
}

// place is the list and key w belongs at in a settled confirmedOrder.
func (w *worker) place() (orderList, viewKey) {
	switch {
	case w.req != nil:
		return inRunning, runningKey(w)
	case w.idleIdx >= 0:
		return inIdle, idleKey(w)
	}
	return inNoList, viewKey{}
}

func (o *confirmedOrder) list(l orderList) *btree.Set[viewKey, *worker] {
	if l == inRunning {
		return &o.running
	}
	return &o.idle
}

// SettleOrders files the entries changed since the last call in the
// orders by confirmed time that View and Callbacks read (confirmedOrder):
// O(log n) for each entry that moved, however often it changed. View,
// ViewPage and Callbacks settle first, so a caller that owns s need not
// call it; one whose readers share s under a read lock must settle under
// its exclusive lock before letting them in (OrdersSettled says whether it
// needs to), since settling writes. The service's pipeline settles after
// answering each batch, so that a batch's callers do not wait for it.
func (s *Scheduler) SettleOrders() { s.byConf.settle() }

// OrdersSettled reports whether no change waits to be filed in the orders
// by confirmed time: whether View and Callbacks would only read s.
func (s *Scheduler) OrdersSettled() bool { return s.byConf.settled() }

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
