package scheduler

import (
	"cmp"
	"strings"
)

// request is a Swarming task the scheduler knows: waiting (in a class,
// cls set) or running (on a worker, w set), never both. Requests are held
// by Scheduler.requests, an idtable.Table keyed by id whose hash each
// request keeps (hash), so that dropping thousands of requests in a storm
// neither hashes nor compares ids. Its label sets are interned and shared
// (labels.go); it holds one reference to each, and one to its account
// (account.refs), released by dropRequest.
//
// A request is made waiting by enqueue (into the class of its account,
// base and provisionable sets, which classFor creates) and leaves by
// dequeue; it runs from attach to detach (workers.go). dropRequest
// forgets one that is neither.
type request struct {
	id        RequestID
	acct      *account
	enqueue   int64 // enqueue time: its FIFO place
	confirmed int64 // last time Swarming reported it in this state
	base      *labelSet
	prov      *labelSet
	fan       *labelSet    // union of base and prov: the fanout group's labels
	grp       *fanoutGroup // cache of acct.fanout[fan]

	cls *class  // while waiting
	w   *worker // while running

	hash uint64 // of id, under which Scheduler.requests holds it

	// Its place in the waiting order by confirmed time (confirmedOrder):
	// filed at (ordT, id) when ordIn; marked for settling when ordPending.
	ordT              int64
	ordIn, ordPending bool
}

// cmpFIFO is the FIFO order: (enqueue time, id).
func cmpFIFO(a, b *request) int {
	if c := cmp.Compare(a.enqueue, b.enqueue); c != 0 {
		return c
	}
	return strings.Compare(string(a.id), string(b.id))
}

// fifoKey is a request's place in FIFO order, copied into the structures
// that compare heads often (class heaps, preemption units) so that a heap
// operation reads its own nodes instead of chasing pointers to requests.
type fifoKey struct {
	enq   int64
	id    RequestID
	empty bool // no request: after every key
}

// keyOf is r's place in FIFO order (empty for nil).
func keyOf(r *request) fifoKey {
	if r == nil {
		return fifoKey{empty: true}
	}
	return fifoKey{enq: r.enqueue, id: r.id}
}

// before reports whether a comes before b in FIFO order.
func (a fifoKey) before(b fifoKey) bool {
	if a.empty || b.empty {
		return b.empty && !a.empty
	}
	if a.enq != b.enq {
		return a.enq < b.enq
	}
	return a.id < b.id
}

// newRequest creates a request object (not yet waiting or running).
func (s *Scheduler) newRequest(id RequestID, acct AccountID, enqueue, confirmed int64, base, prov []string) *request {
	a := s.account(acct)
	a.refs++
	r := &request{id: id, acct: a, enqueue: enqueue, confirmed: confirmed}
	r.base = s.sets.refNames(base)
	r.prov = s.sets.refNames(prov)
	r.fan = s.sets.refUnion(r.base, r.prov)
	r.hash = s.requests.Hash(id)
	s.requests.Add(r, r.hash)
	return r
}

// dropRequest removes a request that is neither waiting nor running.
func (s *Scheduler) dropRequest(r *request) {
	s.touchRequest(r.id)
	s.requests.Delete(r, r.hash)
	s.sets.unref(r.base)
	s.sets.unref(r.prov)
	s.sets.unref(r.fan)
	r.acct.refs--
	s.maybeDropAccount(r.acct)
}

// enqueue makes r waiting.
func (s *Scheduler) enqueue(r *request) {
	s.touchRequest(r.id)
	c := s.classFor(r.acct, r.base, r.prov)
	wasEmpty := c.len() == 0
	oldHead := c.head()
	c.insert(r)
	if wasEmpty || c.head() != oldHead {
		c.acctBase.byHead.Fix(c.heapIdx)
	}
	r.acct.waiting++
	s.nWaiting++
	s.byConf.markRequest(r)
}

// dequeue makes a waiting r neither waiting nor running.
func (s *Scheduler) dequeue(r *request) {
	s.touchRequest(r.id)
	c := r.cls
	wasHead := c.head() == r
	c.remove(r)
	if wasHead {
		c.acctBase.byHead.Fix(c.heapIdx)
	}
	if c.len() == 0 && !c.onGCList {
		c.onGCList = true
		s.gcClasses = append(s.gcClasses, c)
	}
	r.acct.waiting--
	s.nWaiting--
	s.byConf.markRequest(r)
}
