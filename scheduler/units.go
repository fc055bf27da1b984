package scheduler

import "github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"

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
