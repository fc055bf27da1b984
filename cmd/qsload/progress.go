package main

import (
	"fmt"
	"time"
)

// progress prints one line about the last interval.
func (s *sim) progress(start time.Time) {
	ac, ae, _, ap50, ap99, ashed := s.rec[kindAssign].interval()
	nc, ne, ni, np50, np99, nshed := s.rec[kindNotifyNew].interval()
	_, se, si, _, sp99, _ := s.rec[kindNotifyStatus].interval()
	per := s.cfg.Report.Seconds()
	s.mu.Lock()
	idle := len(s.idle)
	var busy int
	for _, b := range s.bots {
		if b.state >= botAssigned {
			busy++
		}
	}
	s.mu.Unlock()
	step := ""
	if s.cfg.Ramp {
		step = fmt.Sprintf(" step=%d", s.step.Load()+1)
	}
	s.logf("t=%3.0fs%s assign %.0f/s p50=%s p99=%s err=%d (shed p99=%s) noidle=%d noworker=%d | handed=%d confirmed=%d preempted=%d idle=%d busy=%d | new %.0f items/s (%.0f calls/s) p50=%s p99=%s err=%d (shed p99=%s) | status %.0f items/s p99=%s err=%d",
		time.Since(start).Seconds(), step, float64(ac-ae)/per, fmtMs(ms(ap50)), fmtMs(ms(ap99)), ae, fmtMs(ms(ashed)), s.tNoIdle.Load(), s.tNoWorker.Load(),
		s.handedOut.Load(), s.conf.Load(), s.preempt.Load(), idle, busy,
		float64(ni)/per, float64(nc-ne)/per, fmtMs(ms(np50)), fmtMs(ms(np99)), ne, fmtMs(ms(nshed)),
		float64(si)/per, fmtMs(ms(sp99)), se)
}
