package state

import (
	"fmt"
	"sync/atomic"
	"time"
)

// pollDoor bounds the AssignTasks calls of the whole process: those
// admitted at the door (AdmitPoll, before their request is read, so before
// anyone knows their pool) and not yet answered. Since the door cannot tell
// pools apart, the bound is shared among the pools that poll: while n pools
// have polled within pollerWindow, a pool may hold at most 1/n of it
// (queued or in a running batch), and its polls beyond that are shed once
// their pool is known. A pool that overloads the process alone therefore
// fills the door, and its excess is refused there at no cost; a pool that
// starts polling meanwhile gets in with the places a finished batch frees,
// and from then on the overloaded pool is held to its share, which leaves
// the door open to the other.
type pollDoor struct {
	max      int64 // 0: no door and no shares
	inFlight atomic.Int64
	refused  atomic.Int64
	log      rateLog

	// Pools that polled within pollerWindow, counted again at most every
	// pollerRecount.
	countedAt atomic.Int64 // UnixNano
	pollers   atomic.Int64
}

const (
	pollerWindow  = 10 * time.Second
	pollerRecount = 100 * time.Millisecond
)

// AdmitPoll admits an AssignTasks call at the door, before its request is
// read: it fails with ErrOverloaded when the process already has
// Options.MaxPollsInFlight of them in flight. Otherwise release must be
// called once the call is answered (it may be called more than once).
// AdmitPoll never blocks: the transports call it from their I/O goroutines.
func (p *Pipeline) AdmitPoll() (release func(), err error) {
	d := &p.polls
	if d.max <= 0 {
		return func() {}, nil
	}
	if n := d.inFlight.Add(1); n > d.max {
		d.inFlight.Add(-1)
		d.refused.Add(1)
		err := fmt.Errorf("%w: %d AssignTasks calls in flight, the most the process takes", ErrOverloaded, n-1)
		if held, ok := d.log.allow(time.Now()); ok {
			p.opts.Logger.Warn("polls refused at the door: the process has as many AssignTasks calls in flight as it takes",
				"refused", held, "in_flight", n-1, "err", err)
		}
		return nil, err
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			d.inFlight.Add(-1)
		}
	}, nil
}

// overShare notes that pool pl polls and returns an error if it already
// holds its share of the door's bound.
func (d *pollDoor) overShare(p *Pipeline, pl *pool) error {
	now := time.Now().UnixNano()
	pl.lastPoll.Store(now)
	if d.max <= 0 {
		return nil
	}
	n := d.countPollers(p, now)
	if n <= 1 {
		return nil
	}
	share := max(1, d.max/n)
	if held := pl.pollsHeld.Load(); held >= share {
		return &fullError{fmt.Sprintf("%d polls held, its share of the %d the process takes while %d pools poll", held, d.max, n)}
	}
	return nil
}

// countPollers returns how many pools polled within pollerWindow.
func (d *pollDoor) countPollers(p *Pipeline, now int64) int64 {
	at := d.countedAt.Load()
	if now-at < int64(pollerRecount) || !d.countedAt.CompareAndSwap(at, now) {
		return d.pollers.Load()
	}
	since := now - int64(pollerWindow)
	var n int64
	p.mu.Lock()
	for _, pl := range p.pools {
		if pl.lastPoll.Load() >= since {
			n++
		}
	}
	p.mu.Unlock()
	d.pollers.Store(n)
	return n
}

// DoorStatus describes the door of AssignTasks calls.
type DoorStatus struct {
	// Max is the bound (0: none); InFlight the calls admitted and not yet
	// answered; Refused the calls refused since the start; Pollers the
	// pools that polled lately, which share the bound.
	Max, InFlight, Refused, Pollers int64
}

// Door describes the door of AssignTasks calls.
func (p *Pipeline) Door() DoorStatus {
	d := &p.polls
	return DoorStatus{Max: d.max, InFlight: d.inFlight.Load(), Refused: d.refused.Load(), Pollers: d.pollers.Load()}
}
