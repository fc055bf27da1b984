package state

import (
	"errors"
	"sync"
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
type queue struct {
	mu       sync.Mutex
	urgent   []*op // notifications and admin changes
	polls    []*op // AssignTasks
	closed   bool
	maxPolls int
	maxOther int
	// wake holds a token while something is queued that the batcher has
	// not seen, or after the queue closed.
	wake chan struct{}
}

func newQueue(maxPolls, maxOther int) *queue {
	return &queue{maxPolls: maxPolls, maxOther: maxOther, wake: make(chan struct{}, 1)}
}

// push queues o. It fails with errQueueClosed, or errQueueFull when o's
// list is at its bound.
func (q *queue) push(o *op) error {
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return errQueueClosed
	case o.kind == opAssign:
		if len(q.polls) >= q.maxPolls {
			q.mu.Unlock()
			return errQueueFull
		}
		q.polls = append(q.polls, o)
	default:
		if len(q.urgent) >= q.maxOther {
			q.mu.Unlock()
			return errQueueFull
		}
		q.urgent = append(q.urgent, o)
	}
	q.mu.Unlock()
	q.signal()
	return nil
}

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

// lens returns the lengths of both lists.
func (q *queue) lens() (urgent, polls int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.urgent), len(q.polls)
}

// take removes up to max requests: queued notifications and admin changes
// first, then polls. done reports that the queue is closed and empty.
func (q *queue) take(max int) (batch []*op, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(max, len(q.urgent))
	batch = append(batch, q.urgent[:n]...)
	q.urgent = shift(q.urgent, n)
	m := min(max-n, len(q.polls))
	batch = append(batch, q.polls[:m]...)
	q.polls = shift(q.polls, m)
	if len(q.urgent)+len(q.polls) > 0 {
		q.signal() // the rest makes the next batch
	}
	return batch, len(batch) == 0 && q.closed
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
		full := q.closed || len(q.urgent)+len(q.polls) >= max
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

var (
	errQueueClosed = errors.New("queue closed")
	errQueueFull   = errors.New("queue full")
)
