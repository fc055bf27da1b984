package scheduler

import (
	"math"
	"slices"
	"strings"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/rank"
)

// reprioritized moves w's task to level l and records it.
func (p *pass) reprioritized(w *worker, l Priority) {
	old := w.level
	p.s.setLevel(w, l)
	e := p.s.event(EventReprioritized, p.s.now, w.req, w, false)
	e.Level, e.OldLevel = l, old
}

// reprioritize is step c at level l (algorithm.md §2.5).
//
// At P0 first, the paid tasks of accounts without config move to
// FreeBucket in request id order; nothing can start such a task at a paid
// level later in the pass, so doing this once is the same as doing it at
// every level. Then each configured account, in id order, demotes its
// cheapest tasks at l to l+1 when its balance at l is below
// demote_threshold and it runs more tasks at l than its rate, or promotes
// its most expensive tasks below l to l when its balance is above
// promote_threshold and it runs fewer; a promotion from FreeBucket is
// skipped while the task's fanout group is full. A task demoted to l+1 is
// seen again at step c of l+1 (the cascade).
func (p *pass) reprioritize(l Priority) {
	s := p.s
	accts := s.sortedAccounts()
	if l == 0 {
		// Tasks of accounts without config run at FreeBucket. Nothing can
		// start such a task at a paid level later in the pass.
		var ws []*worker
		for _, a := range accts {
			if a.cfg != nil {
				continue
			}
			for pl := range NumPaidLevels {
				ws = append(ws, a.running[pl]...)
			}
		}
		slices.SortFunc(ws, func(a, b *worker) int { return strings.Compare(string(a.req.id), string(b.req.id)) })
		for _, w := range ws {
			p.reprioritized(w, FreeBucket)
		}
	}
	for _, a := range accts {
		if a.cfg == nil {
			continue
		}
		b := a.balance[l]
		n := len(a.running[l])
		net := float64(a.rate[l] - float64(n))
		switch {
		case b < s.cfg.demoteThreshold && net < 0:
			k := min(n, int(math.Ceil(-net)))
			for _, w := range p.byCost(a.running[l], false)[:k] {
				p.reprioritized(w, l+1)
			}
		case b > s.cfg.promoteThreshold && net > 0:
			below := a.runningBelow(l)
			if below == 0 {
				continue
			}
			k := min(below, int(math.Ceil(net)))
			var ws []*worker
			for pl := l + 1; pl <= FreeBucket; pl++ {
				ws = append(ws, a.running[pl]...)
			}
			for _, w := range p.byCost(ws, true) {
				if k == 0 {
					break
				}
				if w.level == FreeBucket && a.maxFanout > 0 {
					if g := a.fanout[w.req.fan]; g != nil && g.paid >= a.maxFanout {
						continue
					}
				}
				p.reprioritized(w, l)
				k--
			}
		}
	}
}

// byCost returns the workers of ws sorted by current cost, ascending or
// (desc) descending, ties by ascending request id, in memory that the next
// call reuses. It sorts one integer per task: its cost's rank among the
// distinct costs (costRanks), then as many bytes of its request id after
// the prefix all the ids share as fit, then its index; only tasks whose
// rank and id bytes tie are compared by their ids
// (rank.SortByRankAndString).
func (p *pass) byCost(ws []*worker, desc bool) []*worker {
	now := p.s.now
	sc := &p.s.costScratch
	ranks := costRanks(&sc.costs, len(ws), func(i int) Vector { return ws[i].costAt(now) }, desc)
	sc.keys = slices.Grow(sc.keys[:0], len(ws))[:len(ws)]
	sc.out = slices.Grow(sc.out[:0], len(ws))[:len(ws)]
	rank.SortByRankAndString(ws, ranks, runningID, sc.keys, sc.out, 8)
	return sc.out
}

// runningID is the id of the request w runs.
func runningID(w *worker) string { return string(w.req.id) }
