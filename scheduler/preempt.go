package scheduler

import (
	"math"
	"math/bits"
	"slices"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/bitset"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/rank"
)

// unit is a set of requests that succeed or fail together in the preemption
// loop: all requests of one (account, base set) for an account without
// limits, or one class for an account with limits. Within a unit, requests
// are identical for the loop except for their FIFO place, so when the
// earliest fails, all fail. Units of banned accounts wait until the ban is
// lifted; a unit of an unbanned account that fails is dropped, since its
// account cannot gain balance or lose tasks below the level in the step.
type unit struct {
	acct   *account
	bi     *baseIndex
	ab     *acctBase // accounts without limits
	cls    *class    // accounts with limits
	cursor *request  // after a wake-up: only requests after this count
	// After a wake-up, an (account, base set) whose classes' heads are not
	// all after cursor: each class's first request after cursor.
	cands []wakeCand
	head  *request
	hk    fifoKey // key of head
	g     *unitGroup
	idx   int // in g's heap
}

// unitGroup is the units of one base set in a preemption step.
type unitGroup struct {
	bi         *baseIndex
	h          heap.Heap[*unit]
	start, end int // its units' range in the step's slab
	idx        int // in the step's heap of groups, -1 when out of it
}

type wakeCand struct {
	c  *class
	h  *request // c's first request after the unit's cursor, or nil
	hk fifoKey
}

// setHead makes r the unit's head and reports whether there is one.
func (u *unit) setHead(r *request) bool {
	u.head, u.hk = r, keyOf(r)
	return r != nil
}

// advance makes the unit's next request its head and reports whether
// there is one. A unit of an (account, base set) takes the head of its
// earliest class, whose key the class caches.
func (u *unit) advance() bool {
	if u.cls != nil {
		return u.setHead(u.cls.firstAfter(u.cursor))
	}
	if u.cands != nil {
		// The candidate taken last left its class: that class continues
		// from its next request after the cursor.
		best := -1
		for i := range u.cands {
			x := &u.cands[i]
			if x.h != nil && x.h.cls != x.c {
				x.h = x.c.firstAfter(u.cursor)
				x.hk = keyOf(x.h)
			}
			if x.h != nil && (best < 0 || x.hk.before(u.cands[best].hk)) {
				best = i
			}
		}
		if best < 0 {
			return u.setHead(nil)
		}
		u.head, u.hk = u.cands[best].h, u.cands[best].hk
		return true
	}
	if u.ab.byHead.Len() == 0 {
		return u.setHead(nil)
	}
	c := u.ab.byHead.Top()
	u.head, u.hk = c.head(), c.hk
	return u.head != nil
}

// preempt is step d at level l (§2.6 and design.md).
func (p *pass) preempt(l Priority) {
	s := p.s
	accts := s.sortedAccounts()
	// Without an unbanned account at l that can afford something, nothing
	// happens: refunds only follow a first preemption.
	possible := false
	for _, a := range accts {
		if a.cfg != nil && a.level == l && a.waiting > 0 && a.runningBelow(l) == 0 && (Vector{}).Less(a.balance) {
			possible = true
			break
		}
	}
	if !possible {
		return
	}
	// No account at l can ever afford a victim whose cost is not Less than
	// the largest balance one may reach during the step: its balance plus
	// the refunds of all its tasks below l (balances only otherwise fall).
	// Such victims are left out.
	var bound Vector
	hasBound := false
	for _, a := range accts {
		if a.cfg == nil || a.level != l || a.waiting == 0 {
			continue
		}
		m := a.balance
		for pl := l + 1; pl <= FreeBucket; pl++ {
			for _, w := range a.running[pl] {
				m = m.Add(w.costAt(s.now))
			}
		}
		if !hasBound || bound.Less(m) {
			bound, hasBound = m, true
		}
	}
	// Every reachable balance is at most the bound in each component; the
	// margin covers the rounding of summing in another order.
	for i := range bound {
		bound[i] += 1e-6 * (math.Abs(bound[i]) + 1)
	}
	sc := &s.pscratch
	keys := sc.keys[:0]
	for _, a := range accts {
		for pl := l + 1; pl <= FreeBucket; pl++ {
			for _, w := range a.running[pl] {
				if c := w.costAt(s.now); c.Less(bound) {
					keys = append(keys, victimKey{w: w, c: c})
				}
			}
		}
	}
	sc.keys = keys
	if len(keys) == 0 {
		return
	}
	s.rankWorkers()
	sc.sortVictims(len(s.rankOf))
	keys = sc.keys
	p.step++
	stepEpoch := p.epoch<<8 | p.step
	vset := &sc.vset
	vset.costs = slices.Grow(vset.costs[:0], len(keys))[:len(keys)]
	vset.ws = slices.Grow(vset.ws[:0], len(keys))[:len(keys)]
	for i := range keys {
		v := &keys[i]
		vset.costs[i] = v.c
		vset.ws[i] = v.w
	}
	vset.words = bitset.Words(len(keys))
	vset.epoch = stepEpoch
	vset.taken = slices.Grow(vset.taken[:0], vset.words)[:vset.words]
	clear(vset.taken)
	defer func() {
		clear(sc.keys)
		clear(sc.sorted)
		clear(vset.ws)
		clear(sc.touched)
		clear(sc.slab)
		clear(sc.cands)
		sc.cands = sc.cands[:0]
	}()
	touched := sc.touched[:0]
	// The eligibility walk leaves its per-label bitsets over the victims in
	// place for the provision-match queries of this step.
	for i, elig := range s.eligibleKeep(vset.ws) {
		for _, bi := range elig {
			if bi.victimEpoch != stepEpoch {
				bi.victimEpoch = stepEpoch
				if cap(bi.victimBits) >= vset.words {
					bi.victimBits = bi.victimBits[:vset.words]
					clear(bi.victimBits)
				} else {
					bi.victimBits = make([]uint64, vset.words)
				}
				bi.victimCur = 0
				touched = append(touched, bi)
			}
			bitset.Add(bi.victimBits, i)
		}
	}
	sc.touched = touched
	defer s.elig.release()
	// Units of accounts at level l with requests some victim could serve.
	// An account that is not banned never gains balance during the step
	// (refunds go to victims' accounts, which are banned), so one that
	// cannot afford the cheapest victim now never will; and a unit of it
	// that fails once fails for good. A banned account's units wait until
	// its ban is lifted.
	//
	// The units wait in a heap per base set, and the base sets in a heap by
	// their earliest unit, so that when a base set's victims are all taken,
	// its units leave at once.
	var sleepers []*account
	slab := sc.slab[:0]
	groups := slices.Grow(sc.groups[:0], len(touched))[:len(touched)]
	for gi, bi := range touched {
		g := &groups[gi]
		*g = unitGroup{bi: bi, start: len(slab), idx: -1}
		cheapest := vset.costs[vset.firstFree(bi)]
		for _, ab := range bi.accts {
			a := ab.acct
			if a.cfg == nil || a.level != l {
				continue
			}
			if a.runningBelow(l) == 0 && !cheapest.Less(a.balance) {
				continue // cannot afford any victim of bi, now or later
			}
			if !a.limited() {
				u := unit{acct: a, bi: bi, ab: ab, g: g}
				if u.advance() {
					slab = append(slab, u)
				}
				continue
			}
			for _, c := range ab.byHead.Items {
				if c.len() > 0 && !p.fullAtStart(c) {
					slab = append(slab, unit{acct: a, bi: bi, cls: c, head: c.head(), hk: c.hk, g: g})
				}
			}
		}
		g.end = len(slab)
	}
	sc.slab, sc.groups = slab, groups
	// Each group's heap starts in its own part of one slice (a unit woken
	// later may grow it elsewhere).
	uh := slices.Grow(sc.unitHeaps[:0], len(slab))[:len(slab)]
	gh := heap.Heap[*unitGroup]{
		Items:    sc.groupHeap[:0],
		Less:     func(a, b *unitGroup) bool { return a.h.Items[0].hk.before(b.h.Items[0].hk) },
		SetIndex: func(g *unitGroup, i int) { g.idx = i },
	}
	for gi := range groups {
		g := &groups[gi]
		g.h = heap.Heap[*unit]{
			Items:    uh[g.start:g.start:g.end],
			Less:     func(a, b *unit) bool { return a.hk.before(b.hk) },
			SetIndex: func(u *unit, i int) { u.idx = i },
		}
		for i := g.start; i < g.end; i++ {
			u := &slab[i]
			if u.acct.runningBelow(l) > 0 {
				if len(u.acct.dormant) == 0 {
					sleepers = append(sleepers, u.acct)
				}
				u.acct.dormant = append(u.acct.dormant, u)
				continue
			}
			u.idx = len(g.h.Items)
			g.h.Items = append(g.h.Items, u)
		}
		if g.h.Len() > 0 {
			g.h.Init()
			g.idx = len(gh.Items)
			gh.Items = append(gh.Items, g)
		}
	}
	gh.Init()
	defer func() {
		clear(uh[:cap(uh)])
		sc.unitHeaps = uh[:0]
		clear(gh.Items[:cap(gh.Items)])
		sc.groupHeap = gh.Items[:0]
		clear(sc.groups)
	}()
	// settle puts g back in order after its heap changed.
	settle := func(g *unitGroup) {
		switch {
		case g.h.Len() == 0 && g.idx >= 0:
			gh.Remove(g.idx)
			g.idx = -1
		case g.h.Len() > 0 && g.idx < 0:
			gh.Push(g)
		case g.h.Len() > 0:
			gh.Fix(g.idx)
		}
	}
	for gh.Len() > 0 {
		g := gh.Top()
		u := g.h.Top()
		r := u.head
		a := u.acct
		vi, refused := p.findVictim(vset, u.bi, r.cls, a, l)
		if vi < 0 {
			if refused {
				p.block(r.cls)
			}
			if vset.firstFree(g.bi) < 0 {
				// Every victim of this base set is taken: none of its
				// units can succeed.
				g.h.Items = g.h.Items[:0]
				settle(g)
				continue
			}
			g.h.Remove(u.idx)
			settle(g)
			continue
		}
		v := vset.ws[vi]
		b := v.req.acct
		vset.take(vi)
		p.preemptOne(v, r, l, vset.costs[vi])
		if u.advance() {
			g.h.Fix(u.idx)
		} else {
			g.h.Remove(u.idx)
		}
		settle(g)
		// The victim's account may have lost its ban: its requests after r
		// take part from now on.
		if len(b.dormant) > 0 && b.runningBelow(l) == 0 {
			woken := b.dormant
			b.dormant = nil
			rk := keyOf(r)
			for _, d := range woken {
				// Unbanned, b gains nothing more in this step: a unit it
				// cannot afford now never succeeds.
				if f := vset.firstFree(d.bi); f < 0 || !vset.costs[f].Less(b.balance) {
					continue
				}
				if d.cls != nil {
					d.cursor = r
					if d.advance() {
						d.g.h.Push(d)
						settle(d.g)
					}
					continue
				}
				// A woken (account, base set) continues from its first
				// request after r: as it was if all its classes' heads
				// come after r, else from each class's first request after
				// r. It stays one unit: without limits, whether a victim
				// is found does not depend on the class.
				if !d.advance() {
					continue
				}
				if !rk.before(d.hk) {
					d.cursor = r
					start := len(sc.cands)
					for _, c := range d.ab.byHead.Items {
						if h := c.firstAfter(r); h != nil {
							sc.cands = append(sc.cands, wakeCand{c, h, keyOf(h)})
						}
					}
					if len(sc.cands) == start {
						continue // none of its requests comes after r
					}
					d.cands = sc.cands[start:len(sc.cands):len(sc.cands)]
					if !d.advance() {
						continue
					}
				}
				d.g.h.Push(d)
				settle(d.g)
			}
		}
	}
	for _, a := range sleepers {
		a.dormant = nil
	}
}

// victimSet is the victims of one preemption step, indexed in victim order
// (cost, then worker id). Each base index touched holds a bitset of the
// victims its requests are eligible for, and the eligibility scratch holds a
// bitset per label, so that "the first victim not taken" and "the first
// provision match not taken" are word scans from a cursor.
type victimSet struct {
	ws    []*worker
	costs []Vector
	taken []uint64
	words int
	epoch uint64 // of the step
}

func (vs *victimSet) take(i int) { bitset.Add(vs.taken, i) }

// firstFree returns the first victim of bi not taken at or after word j0,
// advancing bi's cursor past fully taken words, or -1.
func (vs *victimSet) firstFree(bi *baseIndex) int {
	for j := bi.victimCur; j < vs.words; j++ {
		if x := bi.victimBits[j] &^ vs.taken[j]; x != 0 {
			bi.victimCur = j
			return j*64 + bits.TrailingZeros64(x)
		}
	}
	bi.victimCur = vs.words
	return -1
}

// firstProvMatch returns the first victim of bi, not taken, from index from
// on, that carries every label of prov, or -1.
func (vs *victimSet) firstProvMatch(s *Scheduler, pv *provVariant, from int) int {
	if pv.matchEpoch == vs.epoch && pv.matchFrom > from {
		from = pv.matchFrom
	}
	m := vs.scanProvMatch(s, pv.bi, pv.prov, from)
	pv.matchEpoch, pv.matchFrom = vs.epoch, m
	if m < 0 {
		pv.matchFrom = vs.words * 64
	}
	return m
}

func (vs *victimSet) scanProvMatch(s *Scheduler, bi *baseIndex, prov *labelSet, from int) int {
	var buf [4][]uint64
	lbits := buf[:0]
	for _, l := range prov.ids {
		b := s.elig.labelBits(l)
		if b == nil {
			return -1 // no victim carries l
		}
		lbits = append(lbits, b)
	}
	for j := from / 64; j < vs.words; j++ {
		x := bi.victimBits[j] &^ vs.taken[j]
		for _, b := range lbits {
			x &= b[j]
		}
		if j == from/64 {
			x &^= (1 << (from % 64)) - 1
		}
		if x != 0 {
			return j*64 + bits.TrailingZeros64(x)
		}
	}
	return -1
}

// findVictim returns the index of the victim the head request of class c
// (account a) takes at level l, or -1 and whether a limit refused an
// otherwise suitable victim. Victims are in cost order, so the first affordable one
// not taken is the cheapest and, without limits, the first provision match
// not taken is the cheapest provision match.
func (p *pass) findVictim(vs *victimSet, bi *baseIndex, c *class, a *account, l Priority) (int, bool) {
	first := vs.firstFree(bi)
	if first < 0 || !vs.costs[first].Less(a.balance) {
		return -1, false
	}
	if !a.limited() {
		if len(c.prov.ids) == 0 {
			return first, false
		}
		if m := vs.firstProvMatch(p.s, c.pv, first); m >= 0 && vs.costs[m].Less(a.balance) {
			return m, false
		}
		return first, false
	}
	fanOK := true
	if a.maxFanout > 0 {
		if g := a.fanout[c.fan]; g != nil && g.paid >= a.maxFanout {
			fanOK = false
		}
	}
	firstOK := -1
	refused := false
	for j := first / 64; j < vs.words; j++ {
		x := bi.victimBits[j] &^ vs.taken[j]
		for x != 0 {
			i := j*64 + bits.TrailingZeros64(x)
			x &= x - 1
			if !vs.costs[i].Less(a.balance) {
				return firstOK, refused && firstOK < 0
			}
			v := vs.ws[i]
			if !fanOK || !p.labelsAllow(a, v) {
				refused = true
				continue
			}
			if subsetOf(c.prov.ids, v.ids) {
				return i, false
			}
			if firstOK < 0 {
				firstOK = i
			}
		}
	}
	return firstOK, refused && firstOK < 0
}

// preemptOne makes request r (waiting, of an account at level l) take the
// worker v, whose task runs below l, at cost: the victim's account is
// refunded if configured, r's account charged, the victim's request leaves
// the state (Swarming re-notifies it) and r runs on v at l.
func (p *pass) preemptOne(v *worker, r *request, l Priority, cost Vector) {
	s := p.s
	victim := v.req
	a, b := r.acct, victim.acct
	if b.cfg != nil {
		b.balance = b.balance.Add(cost)
		s.dirty.balance(b.id)
	}
	a.balance = a.balance.Sub(cost)
	a.hasBalance = true
	s.dirty.balance(a.id)
	s.dequeue(r)
	pe := s.event(EventPreempted, s.now, victim, v, false)
	pe.Level, pe.PreemptorTask = l, r.id
	s.detach(v)
	s.dropRequest(victim)
	s.attach(v, r, l, cost)
	provReq := !subsetOf(r.prov.ids, v.ids)
	e := s.event(EventAssigned, s.now, r, v, false)
	e.Level, e.ProvisionRequired = l, provReq
	e.Preempting, e.PreemptionCost, e.PreemptedTask = true, cost, victim.id
	p.out = append(p.out, assignment{
		Worker: v.id, Request: r.id, Priority: l, Time: Time(s.now),
		Preempted: victim.id, ProvisionRequired: provReq,
	})
}

// preemptScratch is the memory of a preemption step, kept for the next.
type preemptScratch struct {
	keys   []victimKey
	sorted []victimKey // the other buffer of sortVictims
	// sortVictims' scratch.
	costs     rank.Ranker[Vector]
	byRank    []int32
	pos       []int32 // per cost rank
	vset      victimSet
	touched   []*baseIndex
	slab      []unit
	unitHeaps []*unit // the backing of every group's unit heap
	groups    []unitGroup
	groupHeap []*unitGroup
	cands     []wakeCand // of the units woken in the step
}

// victimKey is a victim with its cost.
type victimKey struct {
	w *worker
	c Vector
}

// sortVictims sorts sc.keys by (cost Less, worker id) through each
// victim's cost rank and worker rank, without comparisons. The workers must
// be ranked (rankWorkers), their ranks below nWorkers.
func (sc *preemptScratch) sortVictims(nWorkers int) {
	vs := sc.keys
	costRank := costRanks(&sc.costs, len(vs), func(i int) Vector { return vs[i].c }, false)
	// A counting sort: victims are placed in cost-rank buckets in the
	// order of their workers' ranks, which are distinct and below nWorkers.
	var nRanks int32
	for _, r := range costRank {
		nRanks = max(nRanks, r+1)
	}
	pos := slices.Grow(sc.pos[:0], int(nRanks))[:nRanks]
	clear(pos)
	for _, r := range costRank {
		pos[r]++
	}
	next := int32(0)
	for r, n := range pos {
		pos[r], next = next, next+n
	}
	byRank := slices.Grow(sc.byRank[:0], nWorkers)[:nWorkers]
	clear(byRank)
	for i := range vs {
		byRank[vs[i].w.rank] = int32(i + 1) // 0: no victim
	}
	sorted := slices.Grow(sc.sorted[:0], len(vs))[:len(vs)]
	for _, k := range byRank {
		if k != 0 {
			r := costRank[k-1]
			sorted[pos[r]] = vs[k-1]
			pos[r]++
		}
	}
	sc.byRank, sc.pos = byRank, pos
	sc.keys, sc.sorted = sorted, vs
}
