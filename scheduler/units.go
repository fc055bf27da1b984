package scheduler

import "github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"

// unit is a set of requests that succeed or fail together in the preemption
// loop: all requests of one (account, base set) for an account without
// limits, or one class for an account with limits. Within a unit, requests
// are identical for the loop except for their FIFO place, so when the
// earliest fails, all fail. Units of banned accounts wait until the ban is
// lifted; a unit of an unbanned account that fails is dropped, since its
// account cannot gain balance or lose tasks below the level in the step.
//
// The units of one base index form a unitGroup, a heap by head in FIFO
// order, and the groups wait in the step's heap by their first unit, so
// that popping walks L[l] in list order while visiting only requests some
// victim could serve, and a base index whose victims are all taken leaves
// with all its units at once. A step's units live in one slab, and each
// group's heap starts in its own part of one slice.
//
// A woken class unit resumes after the request that lifted the ban
// (cursor, firstAfter: a binary search). A woken (account, base set) unit
// whose classes' heads all come after it continues as it was; otherwise it
// continues over each class's first request after it (cands, refreshed as
// they are taken) and stays one unit, since without limits whether a
// victim exists does not depend on the class. The candidates of the units
// woken in a step are cut from one slab of the step (preemptScratch.cands).
type unit struct {
	acct     *account
	bi       *baseIndex // the base set's index
	acctBase *acctBase  // accounts without limits: the account's classes of the set
	cls      *class     // accounts with limits
	cursor   *request   // after a wake-up: only requests after this count
	// After a wake-up, an (account, base set) whose classes' heads are not
	// all after cursor: each class's first request after cursor.
	cands   []wakeCand
	head    *request
	headKey fifoKey // key of head
	group   *unitGroup
	idx     int // in group.units
}

// unitGroup is the units of one base set in a preemption step.
type unitGroup struct {
	bi         *baseIndex
	units      heap.Heap[*unit] // by head, FIFO
	start, end int              // its units' range in the step's slab
	idx        int              // in the step's heap of groups, -1 when out of it
}

// wakeCand is one class of a woken (account, base set) unit with its first
// request after the unit's cursor.
type wakeCand struct {
	cls     *class
	next    *request // cls's first request after the unit's cursor, or nil
	nextKey fifoKey  // key of next
}

// setHead makes r the unit's head and reports whether there is one.
func (u *unit) setHead(r *request) bool {
	u.head, u.headKey = r, keyOf(r)
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
			if x.next != nil && x.next.cls != x.cls {
				x.next = x.cls.firstAfter(u.cursor)
				x.nextKey = keyOf(x.next)
			}
			if x.next != nil && (best < 0 || x.nextKey.before(u.cands[best].nextKey)) {
				best = i
			}
		}
		if best < 0 {
			return u.setHead(nil)
		}
		u.head, u.headKey = u.cands[best].next, u.cands[best].nextKey
		return true
	}
	if u.acctBase.byHead.Len() == 0 {
		return u.setHead(nil)
	}
	c := u.acctBase.byHead.Top()
	u.head, u.headKey = c.head(), c.headKey
	return u.head != nil
}
