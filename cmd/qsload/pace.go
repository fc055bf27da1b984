package main

import (
	"context"
	"math"
	"time"
)

// lateAfter: a call fired later than this after its slot counts as late.
const lateAfter = 10 * time.Millisecond

// pace calls fire for every slot of rate per second during d, open-loop:
// slots are at start + n/rate whatever fire does. It returns early if ctx
// is done.
func pace(ctx context.Context, rate float64, d time.Duration, fire func(slot time.Time, lag time.Duration)) {
	if rate <= 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		return
	}
	start := time.Now()
	total := int64(math.Floor(d.Seconds() * rate))
	per := float64(time.Second) / rate
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for n := int64(0); n < total; {
		next := start.Add(time.Duration(float64(n) * per))
		if w := time.Until(next); w > 0 {
			timer.Reset(w)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		now := time.Now()
		for ; n < total; n++ {
			slot := start.Add(time.Duration(float64(n) * per))
			if slot.After(now) {
				break
			}
			fire(slot, now.Sub(slot))
		}
	}
	if w := time.Until(start.Add(d)); w > 0 {
		timer.Reset(w)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
}
