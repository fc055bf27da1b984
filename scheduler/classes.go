package scheduler

import (
	"cmp"
	"slices"
	"strings"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"
)

type classKey struct {
	acct       *account
	base, prov *labelSet
}

// class is the waiting requests of one (account, base labels, provisionable
// labels) in FIFO order.
type class struct {
	acct *account
	base *labelSet
	prov *labelSet
	fan  *labelSet

	q  []qent // live part is q[h:], sorted FIFO
	h  int
	hk fifoKey // key of the head

	ab      *acctBase
	heapIdx int
	pv      *provVariant
	pvIdx   int

	blockedEpoch uint64
	queued       bool // on gcClasses
}

func (c *class) len() int { return len(c.q) - c.h }

func (c *class) head() *request {
	if c.h < len(c.q) {
		return c.q[c.h].r
	}
	return nil
}

// qent is a request in a class's queue with its enqueue time, so that
// searching a queue reads the queue, going through to a request only when
// enqueue times tie.
type qent struct {
	enq int64
	r   *request
}

// cmpQ is cmpFIFO(e.r, r).
func cmpQ(e qent, r *request) int {
	if e.enq != r.enqueue {
		return cmp.Compare(e.enq, r.enqueue)
	}
	return strings.Compare(string(e.r.id), string(r.id))
}

// headBefore orders classes by their heads; empty classes go last.
func headBefore(a, b *class) bool { return a.hk.before(b.hk) }

func (c *class) insert(r *request) {
	live := c.q[c.h:]
	i, _ := slices.BinarySearchFunc(live, r, cmpQ)
	e := qent{r.enqueue, r}
	if i == len(live) {
		c.q = append(c.q, e)
	} else {
		if c.h > 0 { // reuse the popped prefix
			copy(c.q[c.h-1:], c.q[c.h:c.h+i])
			c.h--
			c.q[c.h+i] = e
		} else {
			c.q = slices.Insert(c.q, i, e)
		}
	}
	r.cls = c
	c.hk = keyOf(c.head())
}

func (c *class) remove(r *request) {
	if c.head() == r {
		c.q[c.h] = qent{}
		c.h++
		if c.h == len(c.q) {
			c.q, c.h = c.q[:0], 0
		} else if c.h >= 32 && c.h*2 >= len(c.q) {
			n := copy(c.q, c.q[c.h:])
			clear(c.q[n:])
			c.q, c.h = c.q[:n], 0
		}
	} else {
		live := c.q[c.h:]
		i, ok := slices.BinarySearchFunc(live, r, cmpQ)
		if !ok {
			panic("scheduler: request not in its class")
		}
		copy(live[i:], live[i+1:])
		c.q[len(c.q)-1] = qent{}
		c.q = c.q[:len(c.q)-1]
	}
	r.cls = nil
	c.hk = keyOf(c.head())
}

// firstAfter returns the earliest request of c that comes after r in FIFO
// order (all of them when r is nil).
func (c *class) firstAfter(r *request) *request {
	live := c.q[c.h:]
	if len(live) == 0 {
		return nil
	}
	// The ends first: the head's key is cached, and a request after the
	// last needs one look.
	if r == nil || keyOf(r).before(c.hk) {
		return live[0].r
	}
	if cmpQ(live[len(live)-1], r) <= 0 {
		return nil
	}
	i, ok := slices.BinarySearchFunc(live, r, cmpQ)
	if ok {
		i++
	}
	if i < len(live) {
		return live[i].r
	}
	return nil
}

// baseIndex gathers the waiting requests whose base labels are one set.
type baseIndex struct {
	set   *labelSet
	accts []*acctBase
	provs []*provVariant
	node  *trieNode

	// Per preemption step.
	victimEpoch uint64
	victimBits  []uint64 // victims (by victimSet index) this base set is eligible for
	victimCur   int      // words before this have no free victim
}

// acctBase is one account's classes of one base set, as a heap by head.
type acctBase struct {
	acct   *account
	bi     *baseIndex
	idx    int // in bi.accts
	byHead heap.Heap[*class]
}

// provVariant is the classes (one per account) of one base set and one
// provisionable set.
type provVariant struct {
	prov    *labelSet
	bi      *baseIndex
	idx     int // in bi.provs
	classes []*class

	// Per preemption step: no victim before matchFrom is a free provision
	// match (victims are only taken during a step, so this only grows).
	matchEpoch uint64
	matchFrom  int
}

func (s *Scheduler) classFor(a *account, base, prov *labelSet) *class {
	k := classKey{a, base, prov}
	if c := s.classes[k]; c != nil {
		return c
	}
	bi := base.base
	if bi == nil {
		bi = &baseIndex{set: s.sets.ref(base)}
		base.base = bi
		s.trieInsert(bi)
	}
	var ab *acctBase
	for _, x := range bi.accts {
		if x.acct == a {
			ab = x
			break
		}
	}
	if ab == nil {
		ab = &acctBase{acct: a, bi: bi, idx: len(bi.accts)}
		ab.byHead = heap.Heap[*class]{Less: headBefore, SetIndex: func(c *class, i int) { c.heapIdx = i }}
		bi.accts = append(bi.accts, ab)
	}
	var pv *provVariant
	for _, x := range bi.provs {
		if x.prov == prov {
			pv = x
			break
		}
	}
	if pv == nil {
		pv = &provVariant{prov: s.sets.ref(prov), bi: bi, idx: len(bi.provs)}
		bi.provs = append(bi.provs, pv)
	}
	c := &class{
		acct: a, base: s.sets.ref(base), prov: s.sets.ref(prov), fan: s.sets.refUnion(base, prov),
		ab: ab, pv: pv, pvIdx: len(pv.classes), hk: fifoKey{empty: true},
	}
	pv.classes = append(pv.classes, c)
	ab.byHead.Push(c)
	s.classes[k] = c
	return c
}

// swapRemove removes list[i] by moving the last element into its place;
// setIdx records the moved element's new index.
func swapRemove[T any](list []*T, i int, setIdx func(*T, int)) []*T {
	n := len(list) - 1
	if i != n {
		list[i] = list[n]
		setIdx(list[i], i)
	}
	list[n] = nil
	return list[:n]
}
