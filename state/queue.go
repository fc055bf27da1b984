package state

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// queue holds a pool's requests until its batcher takes them. Notifications
// and admin changes wait in one list (in arrival order, applied in that
// order) and polls in another, so that a flood of polls never delays or
// sheds a notification: a batch takes every queued notification before any
// poll. The two lists have separate bounds: a full poll list sheds polls
// (ErrOverloaded, which costs Swarming nothing: the bot polls again), a full
// notification list means the process cannot take more (ErrUnavailable,
// which Swarming's client retries once).
//
// Polls are bounded per pool by count and by bytes (each request's encoded
// size); notifications and admin changes by count per pool and by bytes
// across the process (budget), since what bounds them is the process's
// memory.
//
// A request whose caller leaves (its deadline passes, or it cancels) while
// it is queued is abandoned: it stops counting against every bound at once
// and is dropped unapplied; take drops those whose caller left but did not
// get to abandon them yet.
type queue struct {
	mu     sync.Mutex
	urgent []*op // notifications and admin changes
	polls  []*op // AssignTasks
	closed bool
	limits queueLimits
	budget *budget // bytes of notifications and admin calls, process-wide

	// What is queued and live: abandoned requests stay in the lists,
	// marked, until take or compact removes them (dead counts them).
	nUrgent, nPolls        int
	urgentBytes, pollBytes int64
	dead                   int
	// wake holds a token while something is queued that the batcher has
	// not seen, or after the queue closed.
	wake chan struct{}
}

// queueLimits bound one pool's queue.
type queueLimits struct {
	polls     int   // polls queued
	pollBytes int64 // bytes of polls queued
	urgent    int   // notifications and admin changes queued
}

// Where a request is. Only the queue's lock guards it.
const (
	opQueued uint8 = iota // in a list
	opTaken               // in a batch
	opGone                // abandoned or expired: never applied
)

func newQueue(l queueLimits, b *budget) *queue {
	return &queue{limits: l, budget: b, wake: make(chan struct{}, 1)}
}

// push queues o. It fails with errQueueClosed, or a *fullError when o's
// list is at one of its bounds.
func (q *queue) push(o *op) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return errQueueClosed
	}
	var full *fullError
	if o.kind == opAssign {
		switch {
		case q.nPolls >= q.limits.polls:
			full = &fullError{fmt.Sprintf("%d polls queued", q.nPolls)}
		case q.nPolls > 0 && q.pollBytes+o.size > q.limits.pollBytes:
			full = &fullError{fmt.Sprintf("%d polls of %d bytes queued, and this one has %d", q.nPolls, q.pollBytes, o.size)}
		default:
			q.polls = append(q.polls, o)
			q.nPolls++
			q.pollBytes += o.size
		}
	} else {
		switch {
		case q.nUrgent >= q.limits.urgent:
			full = &fullError{fmt.Sprintf("%d notifications and admin calls queued", q.nUrgent)}
		case !q.budget.take(o.size):
			full = &fullError{fmt.Sprintf("the process holds %d bytes of notifications and admin calls, and this one has %d", q.budget.used(), o.size)}
		default:
			q.urgent = append(q.urgent, o)
			q.nUrgent++
			q.urgentBytes += o.size
		}
	}
	q.mu.Unlock()
	if full != nil {
		return full
	}
	q.signal()
	return nil
}

// fullError says which bound a request met.
type fullError struct{ what string }

func (e *fullError) Error() string { return e.what }

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// close makes push fail; the batcher still takes what is queued.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// queueLens is what a queue holds.
type queueLens struct {
	Urgent, Polls          int
	UrgentBytes, PollBytes int64
}

func (q *queue) state() queueLens {
	q.mu.Lock()
	defer q.mu.Unlock()
	return queueLens{q.nUrgent, q.nPolls, q.urgentBytes, q.pollBytes}
}

// unqueue removes a live request from the counts. A notification's bytes
// stay taken from the budget while it is in a batch: done releases them.
// q.mu is held.
func (q *queue) unqueue(o *op, gone bool) {
	if o.kind == opAssign {
		q.nPolls--
		q.pollBytes -= o.size
	} else {
		q.nUrgent--
		q.urgentBytes -= o.size
		if gone {
			q.budget.release(o.size)
		}
	}
	if gone {
		o.where = opGone
		// Nothing reads an abandoned request again: let its payload go.
		o.notify, o.assign, o.mutate = NotifyInput{}, AssignInput{}, nil
	} else {
		o.where = opTaken
	}
}

// done releases what the requests of a finished batch held.
func (q *queue) done(batch []*op) {
	var n int64
	for _, o := range batch {
		if o.kind != opAssign {
			n += o.size
		}
	}
	q.budget.release(n)
}

// abandon drops o, whose caller left, if it is still queued; it reports
// whether it did.
func (q *queue) abandon(o *op) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if o.where != opQueued {
		return false
	}
	q.unqueue(o, true)
	q.dead++
	if q.dead > 64 && q.dead > q.nUrgent+q.nPolls {
		q.urgent, q.polls = compact(q.urgent), compact(q.polls)
		q.dead = 0
	}
	return true
}

// compact returns s without the requests that are gone.
func compact(s []*op) []*op {
	var out []*op
	for _, o := range s {
		if o.where == opQueued {
			out = append(out, o)
		}
	}
	return out
}

// take removes up to max live requests: queued notifications and admin
// changes first, then polls. Requests whose caller already left are
// removed too, unapplied, and returned as expired. done reports that the
// queue is closed and empty.
func (q *queue) take(max int) (batch, expired []*op, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, list := range []*[]*op{&q.urgent, &q.polls} {
		s := *list
		i := 0
		for ; i < len(s) && len(batch) < max; i++ {
			o := s[i]
			switch {
			case o.where == opGone:
				q.dead--
			case o.ctx != nil && o.ctx.Err() != nil:
				q.unqueue(o, true)
				expired = append(expired, o)
			default:
				q.unqueue(o, false)
				batch = append(batch, o)
			}
		}
		*list = shift(s, i)
	}
	if q.nUrgent+q.nPolls > 0 {
		q.signal() // the rest makes the next batch
	}
	return batch, expired, len(batch) == 0 && len(expired) == 0 && q.closed && q.nUrgent+q.nPolls == 0
}

// shift drops the first n elements, releasing the array once it is empty.
func shift(s []*op, n int) []*op {
	if n == len(s) {
		return nil
	}
	clear(s[:n])
	return s[n:]
}

// wait blocks until something may be queued or the queue closed (true), or
// until timeout fires (false). With window > 0 it then waits up to window
// more, or until max requests are queued, so that one batch gathers more.
// A true result can be spurious: take then returns an empty batch.
func (q *queue) wait(timeout <-chan time.Time, window time.Duration, max int) bool {
	select {
	case <-q.wake:
	case <-timeout:
		return false
	}
	if window <= 0 {
		return true
	}
	deadline := time.NewTimer(window)
	defer deadline.Stop()
	for {
		q.mu.Lock()
		full := q.closed || q.nUrgent+q.nPolls >= max
		q.mu.Unlock()
		if full {
			return true
		}
		select {
		case <-q.wake:
		case <-deadline.C:
			return true
		}
	}
}

// budget bounds bytes across the process: what every pool's queued
// notifications and admin calls (and those of running batches) hold.
type budget struct {
	max int64 // 0: no bound
	n   atomic.Int64
}

// take counts n more bytes unless that would pass the bound; a request
// larger than the bound is taken when nothing else is held, so that every
// request the transports accept can be served.
func (b *budget) take(n int64) bool {
	for {
		cur := b.n.Load()
		if b.max > 0 && cur > 0 && cur+n > b.max {
			return false
		}
		if b.n.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (b *budget) release(n int64) { b.n.Add(-n) }
func (b *budget) used() int64     { return b.n.Load() }

var errQueueClosed = errors.New("queue closed")
