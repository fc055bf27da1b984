package main

import (
	"fmt"
	"sync/atomic"
	"time"
)

// stepCounters are a ramp step's assignment counts.
type stepCounters struct {
	assigned, confirmed, aborted     atomic.Int64
	noIdle, noWorker, late, notifyIt atomic.Int64
	rec                              *recorder
}

func (s *sim) rampResult(stepTimes []time.Duration, target func(int) float64) *RampResult {
	r := &RampResult{P99TargetMs: ms(s.cfg.P99Target)}
	for i, sc := range s.steps {
		st := sc.rec.stats("", stepTimes[i])
		assigned, confirmed := sc.assigned.Load(), sc.confirmed.Load()
		step := RampStep{
			Target: target(i), Seconds: stepTimes[i].Seconds(), Calls: st.Calls, OK: st.OK, Errors: st.Errors,
			P50Ms: st.P50Ms, P90Ms: st.P90Ms, P99Ms: st.P99Ms, MaxMs: st.MaxMs,
			Assigned: assigned, Confirmed: confirmed,
			NoIdleBot: sc.noIdle.Load(), NoWorker: sc.noWorker.Load(), Late: sc.late.Load(),
			NotifyPerSec: perSec(sc.notifyIt.Load(), stepTimes[i]),
		}
		useful := st.OK - (assigned - confirmed)
		step.Achieved = perSec(useful, stepTimes[i])
		step.BotsStarved = float64(step.NoIdleBot) > 0.05*step.Target*step.Seconds
		var why []string
		if st.P99Ms > r.P99TargetMs {
			why = append(why, fmt.Sprintf("p99 %s > %s", fmtMs(st.P99Ms), fmtMs(r.P99TargetMs)))
		}
		if step.Achieved < 0.95*step.Target {
			w := fmt.Sprintf("achieved %.0f/s < 95%%", step.Achieved)
			if step.BotsStarved {
				w += " (no idle bot: limited by the workload, not the server)"
			}
			why = append(why, w)
		}
		step.Pass = len(why) == 0
		for i, w := range why {
			if i > 0 {
				step.Why += "; "
			}
			step.Why += w
		}
		if step.Pass && step.Target > r.PeakRate {
			r.PeakRate = step.Target
		}
		r.Steps = append(r.Steps, step)
	}
	return r
}
