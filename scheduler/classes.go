package scheduler

import (
	"cmp"
	"slices"
	"strings"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"
)

// Waiting requests are indexed so that a pass reads only what some idle
// worker (or victim) can serve, and decides per class rather than per
// request:
//
//	baseIndex    everything waiting with one base label set; a node of the
//	             trie (trie.go), found by walking a worker's labels
//	 ├ acctBase     one per account with classes there: its classes in a
//	 │              heap by head, whose top is the account's earliest
//	 │              request of the base set (sub-pass b, preemption units)
//	 └ provVariant  one per provisionable set: its classes, one per account
//	                (sub-pass a tests the set once against the worker)
//	class        the requests of one (account, base set, provisionable
//	             set), a FIFO queue; interchangeable but for their place
//
// A class is in exactly one acctBase heap and one provVariant list, and
// holds its index in each. Every decision reads only class heads. Enqueue
// and dequeue fix the acctBase heap only when the head changes, O(log
// classes). An emptied class stays in all indexes (every reader skips
// empty classes) until gc reclaims it and the acctBase, provVariant and
// baseIndex (with its trie path) it leaves empty; a class emptied and
// refilled within one call is reused.

// classKey identifies a class in Scheduler.classes.
type classKey struct {
	acct       *account
	base, prov *labelSet
}

// class is the waiting requests of one (account, base labels, provisionable
// labels) in FIFO order, (enqueue time, id).
//
// The queue is a slice whose live part is queue[start:]. Popping the head
// advances start, O(1); the slice is compacted once the dead prefix is at
// least 32 entries and half the slice. Inserting binary-searches and
// appends in O(1) when the request is the newest, as new requests usually
// are; an insertion elsewhere shifts, reusing the popped prefix when there
// is one. Removing from the middle (a request reported absent) is a binary
// search and a shift; firstAfter is a binary search.
type class struct {
	acct *account
	base *labelSet
	prov *labelSet
	fan  *labelSet // union of base and prov: the fanout group's labels

	queue   []queueEntry // live part is queue[start:], sorted FIFO
	start   int
	headKey fifoKey // key of the head (empty when the class is empty)

	acctBase   *acctBase    // the heap of its account's classes of its base set
	heapIdx    int          // its index in acctBase.byHead
	variant    *provVariant // the classes of its base and provisionable sets
	variantIdx int          // its index in variant.classes

	blockedEpoch uint64 // the pass in which a limit refused it (it joins that pass's L[5])
	onGCList     bool   // on Scheduler.gcClasses
}

// len is the number of requests waiting in c.
func (c *class) len() int { return len(c.queue) - c.start }

// head is c's earliest request, or nil.
func (c *class) head() *request {
	if c.start < len(c.queue) {
		return c.queue[c.start].r
	}
	return nil
}

// queueEntry is a request in a class's queue with its enqueue time, so that
// searching a queue reads the queue, going through to a request only when
// enqueue times tie.
type queueEntry struct {
	enq int64
	r   *request
}

// cmpEntry is cmpFIFO(e.r, r).
func cmpEntry(e queueEntry, r *request) int {
	if e.enq != r.enqueue {
		return cmp.Compare(e.enq, r.enqueue)
	}
	return strings.Compare(string(e.r.id), string(r.id))
}

// headBefore orders classes by their heads; empty classes go last.
func headBefore(a, b *class) bool { return a.headKey.before(b.headKey) }

// insert adds the waiting request r to c in FIFO order.
func (c *class) insert(r *request) {
	live := c.queue[c.start:]
	i, _ := slices.BinarySearchFunc(live, r, cmpEntry)
	e := queueEntry{r.enqueue, r}
	if i == len(live) {
		c.queue = append(c.queue, e)
	} else {
		if c.start > 0 { // reuse the popped prefix
			copy(c.queue[c.start-1:], c.queue[c.start:c.start+i])
			c.start--
			c.queue[c.start+i] = e
		} else {
			c.queue = slices.Insert(c.queue, i, e)
		}
	}
	r.cls = c
	c.headKey = keyOf(c.head())
}

// remove takes r out of c.
func (c *class) remove(r *request) {
	if c.head() == r {
		c.queue[c.start] = queueEntry{}
		c.start++
		if c.start == len(c.queue) {
			c.queue, c.start = c.queue[:0], 0
		} else if c.start >= 32 && c.start*2 >= len(c.queue) {
			n := copy(c.queue, c.queue[c.start:])
			clear(c.queue[n:])
			c.queue, c.start = c.queue[:n], 0
		}
	} else {
		live := c.queue[c.start:]
		i, ok := slices.BinarySearchFunc(live, r, cmpEntry)
		if !ok {
			panic("scheduler: request not in its class")
		}
		copy(live[i:], live[i+1:])
		c.queue[len(c.queue)-1] = queueEntry{}
		c.queue = c.queue[:len(c.queue)-1]
	}
	r.cls = nil
	c.headKey = keyOf(c.head())
}

// firstAfter returns the earliest request of c that comes after r in FIFO
// order (all of them when r is nil).
func (c *class) firstAfter(r *request) *request {
	live := c.queue[c.start:]
	if len(live) == 0 {
		return nil
	}
	// The ends first: the head's key is cached, and a request after the
	// last needs one look.
	if r == nil || keyOf(r).before(c.headKey) {
		return live[0].r
	}
	if cmpEntry(live[len(live)-1], r) <= 0 {
		return nil
	}
	i, ok := slices.BinarySearchFunc(live, r, cmpEntry)
	if ok {
		i++
	}
	if i < len(live) {
		return live[i].r
	}
	return nil
}

// baseIndex gathers the waiting requests whose base labels are one set. It
// exists while some class of the set does, and is then the set's
// labelSet.base and the bi of its trie node.
type baseIndex struct {
	set   *labelSet
	accts []*acctBase    // one per account with classes of the set, in no order
	provs []*provVariant // one per provisionable set with classes, in no order
	node  *trieNode      // where the set ends in the trie

	// Per preemption step.
	victimEpoch uint64
	victimBits  []uint64 // victims (by victimSet index) this base set is eligible for
	victimCur   int      // words before this have no free victim
}

// acctBase is one account's classes of one base set, as a heap by head.
type acctBase struct {
	acct   *account
	bi     *baseIndex // the base set's index
	idx    int        // in bi.accts
	byHead heap.Heap[*class]
}

// provVariant is the classes (one per account) of one base set and one
// provisionable set.
type provVariant struct {
	prov    *labelSet
	bi      *baseIndex // the base set's index
	idx     int        // in bi.provs
	classes []*class   // in no order; each holds its index (variantIdx)

	// Per preemption step: no victim before matchFrom is a free provision
	// match (victims are only taken during a step, so this only grows).
	matchEpoch uint64
	matchFrom  int
}

// classFor returns the class of (a, base, prov), creating it and the
// indexes it needs.
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
		count(s.labels.inProv, prov.ids, 1)
	}
	c := &class{
		acct: a, base: s.sets.ref(base), prov: s.sets.ref(prov), fan: s.sets.refUnion(base, prov),
		acctBase: ab, variant: pv, variantIdx: len(pv.classes), headKey: fifoKey{empty: true},
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
