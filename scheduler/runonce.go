package scheduler

import (
	"slices"
	"strings"
	"time"
)

// assignment is one decision of a scheduling pass.
type assignment struct {
	Worker   WorkerID
	Request  RequestID
	Priority Priority
	Time     time.Time
	// Preempted is the request the worker must abort ("" for an idle worker).
	Preempted RequestID
	// ProvisionRequired: the worker lacks a provisionable label of Request.
	ProvisionRequired bool
}

// runOnce performs one scheduling pass at the clock (algorithm.md §2.4):
// for each paid level, a provision-matching and an any-label sub-pass over
// idle workers, reprioritization and preemption; then the FreeBucket
// sub-passes. It returns the assignments in the order made; the state is
// already updated and what the pass emptied is reclaimed (gc). Without a
// clock there is no pass.
func (s *Scheduler) runOnce() []assignment {
	if !s.hasClock {
		s.gc()
		return nil
	}
	p := s.startPass()
	for l := Priority(0); l < FreeBucket; l++ {
		p.match(l, true)
		p.match(l, false)
		p.reprioritize(l)
		if !s.cfg.disablePreemption {
			p.preempt(l)
		}
	}
	p.match(FreeBucket, true)
	p.match(FreeBucket, false)
	p.finish()
	s.lastPassOut = len(p.out)
	s.gc()
	return p.out
}

// pass is the scratch state of one runOnce.
//
// The pass numbers itself (epoch); per-pass marks (class.blockedEpoch,
// fanoutGroup.startEpoch, baseIndex.victimEpoch) compare against it, so
// that nothing is cleared between passes. Each account's level is computed
// once at the start (account.level), never per request. For one idle
// worker, choose looks only at the base indexes its labels contain,
// biggest first, and stops at the first smaller than the best found: a
// sub-pass costs, per idle worker, the accounts and provisionable variants
// of the base indexes it can serve, never the requests of a class nor base
// sets no idle worker can serve.
type pass struct {
	s      *Scheduler
	epoch  uint64
	active [NumPaidLevels + 1]bool // some account may have requests in L[l]
	idle   []*worker               // idle workers that can serve a base set, by id, those still idle
	cands  []limitedCand           // choose's scratch
	out    []assignment            // the assignments so far, in order
	steps  uint64                  // preemption steps so far (a step's epoch is epoch<<8 | steps)
}

// limitedCand is a class of a limited account that a worker may take, with
// the number of its base labels.
type limitedCand struct {
	c    *class
	size int
}

// startPass starts a pass: the accounts' levels from their balances
// (algorithm.md §2.2), which lists may be non-empty (active), and, when
// something waits, the idle workers whose labels contain some base set, in
// id order, each with those base sets, most labels first. It costs O(I)
// for the I idle workers (most served from their kept results, trie.go)
// plus O(E log E) to sort the E of them that can serve something.
func (s *Scheduler) startPass() *pass {
	s.epoch++
	p := &pass{s: s, epoch: s.epoch, out: make([]assignment, 0, s.lastPassOut)}
	// Priorities per account, from the balances at the start (algorithm.md §2.2).
	for _, a := range s.sortedAccounts() {
		a.level = a.priority()
		if a.waiting == 0 {
			continue
		}
		if a.level < FreeBucket {
			p.active[a.level] = true
		}
		if !a.disableFree && (a.level == FreeBucket || a.limited()) {
			p.active[FreeBucket] = true
		}
	}
	if s.nWaiting == 0 {
		return p // nothing to match; preemption needs no idle workers
	}
	// The idle workers with the base sets each one's labels contain. A
	// worker whose labels contain none can take nothing in a sub-pass
	// (choose would find no candidate), so only the others take part, in
	// id order: a pass sorts the workers that can serve something, not
	// every idle bot.
	ws := append(s.passIdle[:0], s.idle.Items...)
	s.eligible(ws)
	n := 0
	for _, w := range ws {
		if len(w.elig) > 0 {
			ws[n] = w
			n++
		}
	}
	clear(ws[n:])
	p.idle = ws[:n]
	slices.SortFunc(p.idle, func(a, b *worker) int { return strings.Compare(string(a.id), string(b.id)) })
	for _, w := range p.idle {
		// Most base labels first (algorithm.md §2.4 step 3).
		w.passElig = w.elig
		slices.SortFunc(w.passElig, func(a, b *baseIndex) int { return len(b.set.ids) - len(a.set.ids) })
	}
	return p
}

// finish forgets the pass's per-worker lists and hands its list of idle
// workers back to the Scheduler's scratch.
func (p *pass) finish() {
	for _, w := range p.idle {
		w.passElig = nil
	}
	clear(p.idle)
	if cap(p.idle) > 0 {
		p.s.passIdle = p.idle[:0]
	}
}

// inList reports whether the non-empty class c of a limited account is in
// this pass's L[l] (design.md: fanout groups full at the start and blocked
// classes join L[5]).
func (p *pass) inList(c *class, l Priority) bool {
	a := c.acct
	if l < FreeBucket {
		return a.level == l && !p.fullAtStart(c)
	}
	if a.disableFree {
		return false
	}
	return a.level == FreeBucket || p.fullAtStart(c) || c.blockedEpoch == p.epoch
}

// fullAtStart: c's fanout group was at its limit when the pass started and
// its account is at a paid level.
func (p *pass) fullAtStart(c *class) bool {
	a := c.acct
	if a.level == FreeBucket || a.maxFanout <= 0 {
		return false
	}
	g := a.fanout[c.fan]
	if g == nil {
		return false
	}
	n := g.paid
	if g.startEpoch == p.epoch {
		n = g.startPaid
	}
	return n >= a.maxFanout
}

// allowed reports whether the limits let a request of class c start on w at
// level l (algorithm.md §2.7).
func (p *pass) allowed(c *class, w *worker, l Priority) bool {
	a := c.acct
	if l < FreeBucket && a.maxFanout > 0 {
		if g := a.fanout[c.fan]; g != nil && g.paid >= a.maxFanout {
			return false
		}
	}
	return p.labelsAllow(a, w)
}

// labelsAllow reports whether a's per-label limits let one more of its
// tasks run on w.
func (p *pass) labelsAllow(a *account, w *worker) bool {
	if len(a.limits) == 0 {
		return true
	}
	keys := p.s.labels.keys
	for _, l := range w.labelIDs {
		k := keys[l]
		if k == "" {
			continue
		}
		if n, ok := a.limits[k]; ok && a.labelCount[l] >= n {
			return false
		}
	}
	return true
}

// block records that a limit refused c in this pass: it joins this pass's
// L[5] if its account allows free tasks.
func (p *pass) block(c *class) { c.blockedEpoch = p.epoch }

// match runs sub-pass a (provision) or b (any label) of level l.
func (p *pass) match(l Priority, provision bool) {
	if !p.active[l] {
		return
	}
	n := 0
	for _, w := range p.idle {
		if !w.idleNow() {
			continue
		}
		if c := p.choose(w, l, provision); c != nil {
			p.assign(w, c, l)
			continue
		}
		p.idle[n] = w
		n++
	}
	clear(p.idle[n:])
	p.idle = p.idle[:n]
}

// choose returns the class whose head w takes in this sub-pass, or nil.
//
// It reads w's base indexes most labels first and stops at the first with
// fewer labels than the best choice found. For accounts without limits,
// sub-pass a reads each provVariant whose provisionable set w has (one
// membership test per variant) and then its classes, one per account;
// sub-pass b reads the top of each acctBase heap, the account's earliest
// request of the base set whatever its provisionable set. The best is the
// most base labels, then FIFO. For accounts with limits, every non-empty
// class in this pass's list (inList) is a candidate; the candidates are
// sorted by (base labels descending, FIFO) and walked while they beat the
// best choice without limits. The first that the limits allow (allowed)
// wins, and each one refused before it is blocked (block).
func (p *pass) choose(w *worker, l Priority, provision bool) *class {
	s := p.s
	s.labels.mark(w.labelIDs)
	var best *class
	bestSize := -1
	p.cands = p.cands[:0]
	for _, bi := range w.passElig {
		size := len(bi.set.ids)
		if size < bestSize {
			break
		}
		if provision {
			for _, pv := range bi.provs {
				if !s.labels.hasAll(pv.prov.ids) {
					continue
				}
				for _, c := range pv.classes {
					a := c.acct
					if a.level != l || a.limited() || c.len() == 0 || (l == FreeBucket && a.disableFree) {
						continue
					}
					if best == nil || size > bestSize || c.headKey.before(best.headKey) {
						best, bestSize = c, size
					}
				}
			}
		}
		for _, ab := range bi.accts {
			a := ab.acct
			if a.limited() {
				for _, c := range ab.byHead.Items {
					if c.len() > 0 && p.inList(c, l) && (!provision || s.labels.hasAll(c.prov.ids)) {
						p.cands = append(p.cands, limitedCand{c, size})
					}
				}
				continue
			}
			if provision || a.level != l || (l == FreeBucket && a.disableFree) {
				continue
			}
			c := ab.byHead.Top()
			if c.len() == 0 {
				continue
			}
			if best == nil || size > bestSize || c.headKey.before(best.headKey) {
				best, bestSize = c, size
			}
		}
	}
	if len(p.cands) == 0 {
		return best
	}
	// Walk the limited accounts' candidates that beat best, in preference
	// order; a refused one blocks its class.
	slices.SortFunc(p.cands, func(x, y limitedCand) int {
		if x.size != y.size {
			return y.size - x.size
		}
		return cmpFIFO(x.c.head(), y.c.head())
	})
	for _, lc := range p.cands {
		if best != nil && (lc.size < bestSize || (lc.size == bestSize && best.headKey.before(lc.c.headKey))) {
			break
		}
		if p.allowed(lc.c, w, l) {
			return lc.c
		}
		p.block(lc.c)
	}
	return best
}

// assign starts the head of c on the idle worker w at level l.
func (p *pass) assign(w *worker, c *class, l Priority) {
	s := p.s
	r := c.head()
	s.dequeue(r)
	s.startTask(w, r, l, Vector{})
	provReq := !subsetOf(r.prov.ids, w.labelIDs)
	e := s.event(EventAssigned, s.now, r, w, false)
	e.Level, e.ProvisionRequired = l, provReq
	p.out = append(p.out, assignment{Worker: w.id, Request: r.id, Priority: l, Time: Time(s.now), ProvisionRequired: provReq})
}
