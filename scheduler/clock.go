package scheduler

import (
	"math"
	"time"
)

// setClock sets the clock from the first time-carrying input
// (algorithm.md §1.6).
func (s *Scheduler) setClock(t int64) {
	if !s.hasClock {
		s.touchClock()
		s.hasClock, s.now = true, t
	}
}

// UpdateTime advances the clock to t (algorithm.md §2.1): balances recharge
// and pay for running tasks, idle workers not confirmed within
// bot_expiration and old tombstones are forgotten. A t before the clock does
// nothing; the first time ever only sets the clock.
func (s *Scheduler) UpdateTime(t time.Time) error {
	ns, err := nanos("time", t)
	if err != nil {
		return err
	}
	s.updateTime(ns)
	s.gc()
	return nil
}

func (s *Scheduler) updateTime(t int64) {
	if !s.hasClock {
		s.setClock(t)
		return
	}
	if t < s.now {
		return
	}
	e := seconds(s.now, t)
	for _, a := range s.accounts {
		if a.cfg == nil {
			if a.hasBalance {
				s.touchBalance(a.id)
				a.balance, a.hasBalance = Vector{}, false
				s.gcAccts = append(s.gcAccts, a)
			}
			continue
		}
		if e == 0 {
			continue
		}
		s.touchBalance(a.id)
		for p := range NumPaidLevels {
			v := float64(a.balance[p] - float64(e*float64(len(a.running[p]))))
			if c := a.cap[p]; v < c {
				v = math.Min(float64(v+float64(e*a.rate[p])), c)
			}
			a.balance[p] = v
		}
		a.hasBalance = true
	}
	s.touchClock()
	s.now = t
	s.expireIdle()
	s.expireTombstones()
	s.enforceMaxTombstones()
}

// Clock returns the scheduler clock and whether it is set.
func (s *Scheduler) Clock() (time.Time, bool) {
	if !s.hasClock {
		return time.Time{}, false
	}
	return Time(s.now), true
}
