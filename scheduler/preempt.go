package scheduler

import (
	"math"
	"slices"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/bitset"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/rank"
)

// preempt is step d at level l (algorithm.md §2.6): the waiting requests of
// the accounts at l, in list order, each take the cheapest task running below
// l that their account can afford, refunding it to the victim's account.
//
// The loop of algorithm.md §2.6 visits every waiting request of L[l] and
// scans every victim. A step here costs in proportion to its victims, its
// units and its preemptions instead:
//
//   - Victims (collectVictims): every task running below l, except those
//     no account at l could ever afford (victimBound), sorted once by
//     (cost, worker id) and numbered in that order (victimSet, victims.go).
//   - Eligibility (indexVictims): one trie walk over the victims gives each
//     base index reached a bitset of the victims whose labels contain its
//     set, so "the first victim not taken" is a word scan from a cursor.
//   - Units (makeUnits, units.go): the requests that succeed or fail
//     together, per (account, base index) without limits, per class with
//     limits; only base indexes some victim can serve get any.
//   - Loop (run): the first unit in list order takes a victim (findVictim,
//     preemptOne) and advances to its next request, or leaves.
//
// Why dropping and sleeping are exact: inside one step a unit's outcome
// depends on its account's balance, ban and limit counters and on the set
// of untaken victims. The victim set only shrinks; the preemptor's account
// only pays and gains tasks at l. Only the preemption of one of an
// account's own tasks can raise its balance, lower its counters or lift
// its ban (no task below l), and that needs the account to be banned. So a
// failed unit of an unbanned account never succeeds later, an unbanned
// account that cannot afford a base index's cheapest victim never will,
// and a banned account's units matter only once its ban is lifted
// (dormant until wake). The loop walks L[l] once, so on waking only the
// requests after the one that lifted the ban count. All requests of a unit
// behave alike except for their FIFO place (and, for provision
// preference, the class), so testing the head decides for all.
func (p *pass) preempt(l Priority) {
	if !p.mayPreempt(l) {
		return
	}
	st := step{p: p, l: l, sc: &p.s.stepScratch}
	if !st.collectVictims(p.victimBound(l)) {
		return
	}
	defer st.release()
	st.indexVictims()
	st.makeUnits()
	st.queueUnits()
	st.run()
}

// mayPreempt reports whether a step at l can preempt anything: unless a
// configured, unbanned account at l with waiting requests has a balance
// above zero, nothing is affordable (costs are never negative) and nothing
// can become affordable (refunds only follow a preemption).
func (p *pass) mayPreempt(l Priority) bool {
	for _, a := range p.s.sortedAccounts() {
		if a.cfg != nil && a.level == l && a.waiting > 0 && a.runningBelow(l) == 0 && (Vector{}).Less(a.balance) {
			return true
		}
	}
	return false
}

// victimBound is a cost no account at l can afford during the step: every
// balance one may reach is at most its balance plus the refunds of all its
// tasks below l (balances otherwise only fall), in each component. A
// margin covers the rounding of summing in another order.
func (p *pass) victimBound(l Priority) Vector {
	s := p.s
	var bound Vector
	hasBound := false
	for _, a := range s.sortedAccounts() {
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
	for i := range bound {
		bound[i] += 1e-6 * (math.Abs(bound[i]) + 1)
	}
	return bound
}

// step is one preemption step at level l: its victims and the units of
// requests that may take them (see units.go). Its memory is the
// Scheduler's preemptScratch, kept from step to step.
type step struct {
	p  *pass
	l  Priority
	sc *preemptScratch
	vs *victimSet
	// groups is the unit groups with units waiting, by their first unit.
	groups heap.Heap[*unitGroup]
	// sleepers is the accounts with dormant units.
	sleepers []*account
}

// collectVictims gathers every task running below l whose cost is Less
// than bound, sorts them by (cost, worker id) and numbers them in that
// order (st.vs). It reports whether there is any.
func (st *step) collectVictims(bound Vector) bool {
	p, s, sc := st.p, st.p.s, st.sc
	keys := sc.keys[:0]
	for _, a := range s.sortedAccounts() {
		for pl := st.l + 1; pl <= FreeBucket; pl++ {
			for _, w := range a.running[pl] {
				if c := w.costAt(s.now); c.Less(bound) {
					keys = append(keys, victimKey{w: w, c: c})
				}
			}
		}
	}
	sc.keys = keys
	if len(keys) == 0 {
		return false
	}
	s.rankWorkers()
	sc.sortVictims(len(s.rankOf))
	keys = sc.keys
	p.steps++
	vs := &sc.vset
	vs.costs = slices.Grow(vs.costs[:0], len(keys))[:len(keys)]
	vs.ws = slices.Grow(vs.ws[:0], len(keys))[:len(keys)]
	for i := range keys {
		v := &keys[i]
		vs.costs[i] = v.c
		vs.ws[i] = v.w
	}
	vs.words = bitset.Words(len(keys))
	vs.epoch = p.epoch<<8 | p.steps
	vs.taken = slices.Grow(vs.taken[:0], vs.words)[:vs.words]
	clear(vs.taken)
	st.vs = vs
	return true
}

// indexVictims gives every base index some victim's labels contain a
// bitset of those victims (baseIndex.victimBits) and lists the base
// indexes reached (sc.touched). The eligibility call leaves its rows of
// the provisionable labels over the victims in place for the
// provision-match queries of the step, until release.
func (st *step) indexVictims() {
	s, sc, vs := st.p.s, st.sc, st.vs
	touched := sc.touched[:0]
	s.eligibleKeep(vs.ws)
	for i, v := range vs.ws {
		for _, bi := range v.elig {
			if bi.victimEpoch != vs.epoch {
				bi.victimEpoch = vs.epoch
				if cap(bi.victimBits) >= vs.words {
					bi.victimBits = bi.victimBits[:vs.words]
					clear(bi.victimBits)
				} else {
					bi.victimBits = make([]uint64, vs.words)
				}
				bi.victimCur = 0
				touched = append(touched, bi)
			}
			bitset.Add(bi.victimBits, i)
		}
	}
	sc.touched = touched
}

// makeUnits makes the units of accounts at l with requests some victim
// could serve, one group per base index reached, in one slab. An account
// that is not banned never gains balance during the step (refunds go to
// victims' accounts, which are banned), so one that cannot afford the
// cheapest victim of a base index now never will.
func (st *step) makeUnits() {
	p, sc, l := st.p, st.sc, st.l
	slab := sc.slab[:0]
	groups := slices.Grow(sc.groups[:0], len(sc.touched))[:len(sc.touched)]
	for gi, bi := range sc.touched {
		g := &groups[gi]
		*g = unitGroup{bi: bi, start: len(slab), idx: -1}
		cheapest := st.vs.costs[st.vs.firstFree(bi)]
		for _, ab := range bi.accts {
			a := ab.acct
			if a.cfg == nil || a.level != l {
				continue
			}
			if a.runningBelow(l) == 0 && !cheapest.Less(a.balance) {
				continue // cannot afford any victim of bi, now or later
			}
			if !a.limited() {
				u := unit{acct: a, bi: bi, acctBase: ab, group: g}
				if u.advance() {
					slab = append(slab, u)
				}
				continue
			}
			for _, c := range ab.byHead.Items {
				if c.len() > 0 && !p.fullAtStart(c) {
					slab = append(slab, unit{acct: a, bi: bi, cls: c, head: c.head(), headKey: c.headKey, group: g})
				}
			}
		}
		g.end = len(slab)
	}
	sc.slab, sc.groups = slab, groups
}

// queueUnits puts the units of banned accounts to sleep (account.dormant)
// and the others in a heap per group by head, and the groups with units in
// st.groups by their first unit. Each group's heap starts in its own part
// of one slice (a unit woken later may grow it elsewhere).
func (st *step) queueUnits() {
	sc := st.sc
	uh := slices.Grow(sc.unitHeaps[:0], len(sc.slab))[:len(sc.slab)]
	sc.unitHeaps = uh
	st.groups = heap.Heap[*unitGroup]{
		Items:    sc.groupHeap[:0],
		Less:     func(a, b *unitGroup) bool { return a.units.Items[0].headKey.before(b.units.Items[0].headKey) },
		SetIndex: func(g *unitGroup, i int) { g.idx = i },
	}
	for gi := range sc.groups {
		g := &sc.groups[gi]
		g.units = heap.Heap[*unit]{
			Items:    uh[g.start:g.start:g.end],
			Less:     func(a, b *unit) bool { return a.headKey.before(b.headKey) },
			SetIndex: func(u *unit, i int) { u.idx = i },
		}
		for i := g.start; i < g.end; i++ {
			u := &sc.slab[i]
			if u.acct.runningBelow(st.l) > 0 {
				if len(u.acct.dormant) == 0 {
					st.sleepers = append(st.sleepers, u.acct)
				}
				u.acct.dormant = append(u.acct.dormant, u)
				continue
			}
			u.idx = len(g.units.Items)
			g.units.Items = append(g.units.Items, u)
		}
		if g.units.Len() > 0 {
			g.units.Init()
			g.idx = len(st.groups.Items)
			st.groups.Items = append(st.groups.Items, g)
		}
	}
	st.groups.Init()
}

// run is the preemption loop: the first unit's head takes a victim, or
// the unit (or its whole group, when its base index has no victim left)
// leaves, until no unit is left.
func (st *step) run() {
	p, vs, l := st.p, st.vs, st.l
	for st.groups.Len() > 0 {
		g := st.groups.Top()
		u := g.units.Top()
		r := u.head
		vi, refused := p.findVictim(vs, u.bi, r.cls, u.acct, l)
		if vi < 0 {
			st.drop(g, u, r, refused)
			continue
		}
		v := vs.ws[vi]
		b := v.req.acct
		vs.take(vi)
		p.preemptOne(v, r, l, vs.costs[vi])
		if u.advance() {
			g.units.Fix(u.idx)
		} else {
			g.units.Remove(u.idx)
		}
		st.settle(g)
		// The victim's account may have lost its ban: its requests after r
		// take part from now on.
		if len(b.dormant) > 0 && b.runningBelow(l) == 0 {
			st.wake(b, r)
		}
	}
}

// drop removes u, of group g, whose head r found no victim, blocking r's
// class if a limit refused one. A unit of an unbanned account that fails
// once fails for good; when every victim of g's base index is taken, none
// of g's units can succeed and they all leave.
func (st *step) drop(g *unitGroup, u *unit, r *request, refused bool) {
	if refused {
		st.p.block(r.cls)
	}
	if st.vs.firstFree(g.bi) < 0 {
		g.units.Items = g.units.Items[:0]
	} else {
		g.units.Remove(u.idx)
	}
	st.settle(g)
}

// settle puts g back in order in st.groups after its heap changed.
func (st *step) settle(g *unitGroup) {
	switch {
	case g.units.Len() == 0 && g.idx >= 0:
		st.groups.Remove(g.idx)
		g.idx = -1
	case g.units.Len() > 0 && g.idx < 0:
		st.groups.Push(g)
	case g.units.Len() > 0:
		st.groups.Fix(g.idx)
	}
}

// wake queues the dormant units of b, whose ban r's preemption lifted,
// from their first request after r (the loop walks the list once, so the
// requests before r have had their turn).
func (st *step) wake(b *account, r *request) {
	sc, vs := st.sc, st.vs
	woken := b.dormant
	b.dormant = nil
	rk := keyOf(r)
	for _, d := range woken {
		// Unbanned, b gains nothing more in this step: a unit it cannot
		// afford now never succeeds.
		if f := vs.firstFree(d.bi); f < 0 || !vs.costs[f].Less(b.balance) {
			continue
		}
		if d.cls != nil {
			d.cursor = r
			if d.advance() {
				d.group.units.Push(d)
				st.settle(d.group)
			}
			continue
		}
		// A woken (account, base set) continues from its first request
		// after r: as it was if all its classes' heads come after r, else
		// from each class's first request after r. It stays one unit:
		// without limits, whether a victim is found does not depend on the
		// class.
		if !d.advance() {
			continue
		}
		if !rk.before(d.headKey) {
			d.cursor = r
			start := len(sc.cands)
			for _, c := range d.acctBase.byHead.Items {
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
		d.group.units.Push(d)
		st.settle(d.group)
	}
}

// release forgets the step: dormant units, the eligibility call's rows,
// and every pointer its scratch memory holds, which the next step reuses.
func (st *step) release() {
	sc := st.sc
	for _, a := range st.sleepers {
		a.dormant = nil
	}
	clear(sc.unitHeaps[:cap(sc.unitHeaps)])
	sc.unitHeaps = sc.unitHeaps[:0]
	clear(st.groups.Items[:cap(st.groups.Items)])
	sc.groupHeap = st.groups.Items[:0]
	clear(sc.groups)
	st.p.s.elig.release()
	clear(sc.keys)
	clear(sc.sorted)
	clear(sc.vset.ws)
	clear(sc.touched)
	clear(sc.slab)
	clear(sc.cands)
	sc.cands = sc.cands[:0]
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
		s.touchBalance(b.id)
		b.balance = b.balance.Add(cost)
	}
	s.touchBalance(a.id)
	a.balance = a.balance.Sub(cost)
	a.hasBalance = true
	s.dequeue(r)
	pe := s.event(EventPreempted, s.now, victim, v, false)
	pe.Level, pe.PreemptorTask = l, r.id
	s.detach(v)
	s.dropRequest(victim)
	s.attach(v, r, l, cost)
	provReq := !subsetOf(r.prov.ids, v.labelIDs)
	e := s.event(EventAssigned, s.now, r, v, false)
	e.Level, e.ProvisionRequired = l, provReq
	e.Preempting, e.PreemptionCost, e.PreemptedTask = true, cost, victim.id
	p.out = append(p.out, assignment{
		Worker: v.id, Request: r.id, Priority: l, Time: Time(s.now),
		Preempted: victim.id, ProvisionRequired: provReq,
	})
}

// preemptScratch is the memory of a preemption step, kept for the next so
// that a storm's arrays are allocated once. release clears every pointer
// it holds at the step's end.
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
