package scheduler

import (
	"slices"
	"strings"
)

// unit is a set of requests that succeed or fail together in the preemption
// loop: all requests of one (account, base set) for an account without
// limits, or one class for an account with limits. Within a unit, requests
// are identical for the loop except for their FIFO place, so when the
// earliest fails, the unit sleeps until its account's balance rises or its
// ban is lifted (nothing else can make it succeed later in the step).
type unit struct {
	acct   *account
	bi     *baseIndex
	ab     *acctBase // accounts without limits
	cls    *class    // accounts with limits
	cursor *request  // class units after a wake-up: only requests after this count
	head   *request
	idx    int
}

func (u *unit) next() *request {
	if u.cls != nil {
		return u.cls.firstAfter(u.cursor)
	}
	if u.ab.heap.Len() == 0 {
		return nil
	}
	return u.ab.heap.Top().head()
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
	type victim struct {
		w *worker
		c Vector
	}
	var vs []victim
	for _, a := range accts {
		for pl := l + 1; pl <= FreeBucket; pl++ {
			for _, w := range a.running[pl] {
				vs = append(vs, victim{w, w.costAt(s.now)})
			}
		}
	}
	if len(vs) == 0 {
		return
	}
	slices.SortFunc(vs, func(x, y victim) int {
		if x.c.Less(y.c) {
			return -1
		}
		if y.c.Less(x.c) {
			return 1
		}
		return strings.Compare(string(x.w.id), string(y.w.id))
	})
	costs := make([]Vector, len(vs))
	p.step++
	stepEpoch := p.epoch<<8 | p.step
	var touched []*baseIndex
	ws := make([]*worker, len(vs))
	for i, v := range vs {
		v.w.victimIdx = i
		costs[i] = v.c
		ws[i] = v.w
	}
	for i, elig := range s.eligible(ws) {
		for _, bi := range elig {
			if bi.victimEpoch != stepEpoch {
				bi.victimEpoch = stepEpoch
				bi.anyVictims = victimList{ws: bi.anyVictims.ws[:0]}
				touched = append(touched, bi)
			}
			bi.anyVictims.ws = append(bi.anyVictims.ws, ws[i])
		}
	}
	// Units of accounts at level l with requests some victim could serve.
	mh := iheap[*unit]{
		less:   func(a, b *unit) bool { return a.head.before(b.head) },
		setIdx: func(u *unit, i int) { u.idx = i },
	}
	for _, bi := range touched {
		for _, ab := range bi.accts {
			a := ab.acct
			if a.cfg == nil || a.level != l {
				continue
			}
			if !a.limited() {
				u := &unit{acct: a, bi: bi, ab: ab}
				if u.head = u.next(); u.head != nil {
					mh.Push(u)
				}
				continue
			}
			for _, c := range ab.heap.items {
				if c.len() > 0 && !p.fullAtStart(c) {
					mh.Push(&unit{acct: a, bi: bi, cls: c, head: c.head()})
				}
			}
		}
	}
	var sleepers []*account
	sleep := func(u *unit) {
		mh.Remove(u.idx)
		if len(u.acct.dormant) == 0 {
			sleepers = append(sleepers, u.acct)
		}
		u.acct.dormant = append(u.acct.dormant, u)
	}
	for mh.Len() > 0 {
		u := mh.Top()
		r := u.head
		a := u.acct
		if a.runningBelow(l) > 0 { // banned
			sleep(u)
			continue
		}
		v, refused := p.findVictim(u.bi, r.cls, a, l, costs)
		if v == nil {
			if refused {
				p.block(r.cls)
			}
			sleep(u)
			continue
		}
		b := v.req.acct
		p.preemptOne(v, r, l, costs[v.victimIdx])
		if u.head = u.next(); u.head != nil {
			mh.Fix(u.idx)
		} else {
			mh.Remove(u.idx)
		}
		// The victim's account was refunded and may have lost its ban.
		if len(b.dormant) > 0 && (b.cfg != nil || b.runningBelow(l) == 0) {
			woken := b.dormant
			b.dormant = nil
			for _, d := range woken {
				if d.cls != nil {
					d.cursor = r
					if d.head = d.next(); d.head != nil {
						mh.Push(d)
					}
					continue
				}
				// A woken (account, base set) continues class by class,
				// each from its first request after r.
				for _, c := range d.ab.heap.items {
					if h := c.firstAfter(r); h != nil {
						mh.Push(&unit{acct: d.acct, bi: d.bi, cls: c, cursor: r, head: h})
					}
				}
			}
		}
	}
	for _, a := range sleepers {
		a.dormant = nil
	}
	for _, bi := range touched {
		clear(bi.anyVictims.ws)
		bi.anyVictims = victimList{ws: bi.anyVictims.ws[:0]}
		bi.provVictims = nil
		bi.victimsByLabel = nil
	}
}

// victimList is victims in victim order with a cursor past the taken prefix.
type victimList struct {
	ws  []*worker
	pos int
}

// first returns the first victim not taken in this pass, or nil.
func (vl *victimList) first(epoch uint64) *worker {
	for vl.pos < len(vl.ws) && vl.ws[vl.pos].takenEpoch == epoch {
		vl.pos++
	}
	if vl.pos < len(vl.ws) {
		return vl.ws[vl.pos]
	}
	return nil
}

// provVictims returns the victims of bi that are provision matches for
// prov, built on first use in this step.
func (p *pass) provVictims(bi *baseIndex, prov *labelSet) *victimList {
	if len(prov.ids) == 0 {
		return &bi.anyVictims
	}
	if vl := bi.provVictims[prov]; vl != nil {
		return vl
	}
	if bi.provVictims == nil {
		bi.provVictims = make(map[*labelSet]*victimList)
		// Victims by label, so that each provisionable set filters only the
		// victims carrying its first label.
		bi.victimsByLabel = make(map[labelID][]*worker)
		for _, v := range bi.anyVictims.ws {
			for _, l := range v.ids {
				bi.victimsByLabel[l] = append(bi.victimsByLabel[l], v)
			}
		}
	}
	vl := &victimList{}
	for _, v := range bi.victimsByLabel[prov.ids[0]] {
		if len(prov.ids) == 1 || subsetOf(prov.ids, v.ids) {
			vl.ws = append(vl.ws, v)
		}
	}
	bi.provVictims[prov] = vl
	return vl
}

// findVictim returns the victim the head request of class c (account a)
// takes at level l, or nil and whether a limit refused an otherwise
// suitable victim. Victims are sorted by cost, so the first affordable one
// not taken is the cheapest and, without limits, the first provision match
// not taken is the cheapest provision match.
func (p *pass) findVictim(bi *baseIndex, c *class, a *account, l Priority, costs []Vector) (*worker, bool) {
	if !a.limited() {
		first := bi.anyVictims.first(p.epoch)
		if first == nil || !costs[first.victimIdx].Less(a.balance) {
			return nil, false
		}
		if v := p.provVictims(bi, c.prov).first(p.epoch); v != nil && costs[v.victimIdx].Less(a.balance) {
			return v, false
		}
		return first, false
	}
	fanOK := true
	if a.maxFanout > 0 {
		if g := a.fanout[c.fan]; g != nil && g.paid >= a.maxFanout {
			fanOK = false
		}
	}
	var first *worker
	refused := false
	for _, v := range bi.anyVictims.ws[bi.anyVictims.pos:] {
		if v.takenEpoch == p.epoch {
			continue
		}
		if !costs[v.victimIdx].Less(a.balance) {
			break // victims are sorted by cost
		}
		if !fanOK || !p.labelsAllow(a, v) {
			refused = true
			continue
		}
		if subsetOf(c.prov.ids, v.ids) {
			return v, false
		}
		if first == nil {
			first = v
		}
	}
	return first, refused && first == nil
}

// preemptOne makes request r take worker v from its task at level l.
func (p *pass) preemptOne(v *worker, r *request, l Priority, cost Vector) {
	s := p.s
	victim := v.req
	b, a := victim.acct, r.acct
	if b.cfg != nil {
		b.balance = b.balance.Add(cost)
		s.dirty.balance(b.id)
	}
	a.balance = a.balance.Sub(cost)
	a.hasBalance = true
	s.dirty.balance(a.id)
	pe := Event{Type: EventPreempted, Time: s.now, Level: l, PreemptorTask: r.id}
	s.event(pe, victim, v, false)
	s.detach(v)
	s.dropRequest(victim)
	s.dequeue(r)
	s.attach(v, r, l, cost)
	v.takenEpoch = p.epoch
	provReq := !subsetOf(r.prov.ids, v.ids)
	s.event(Event{
		Type: EventAssigned, Time: s.now, Level: l, ProvisionRequired: provReq,
		Preempting: true, PreemptionCost: cost, PreemptedTask: victim.id,
	}, r, v, false)
	p.out = append(p.out, Assignment{
		Worker: v.id, Request: r.id, Priority: l, Time: Time(s.now),
		Preempted: victim.id, ProvisionRequired: provReq,
	})
}
