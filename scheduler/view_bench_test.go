package scheduler

import (
	"testing"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
)

// BenchmarkInspect1M times the reads that run under a pool's read lock, on
// the lab workload with 1,000,000 waiting requests and 5,000 bots after the
// cold pass (5,000 tasks running): View's first page of 1,000 entries per
// list (InspectPool's default), and Callbacks (10,000 waiting and 250
// running tasks). Run:
//
//	go test ./scheduler -run '^$' -bench Inspect1M -benchtime 20x
func BenchmarkInspect1M(b *testing.B) {
	s := loadWorkload(b, benchdata.Lab(benchSeed, 5000, 1_000_000), nil)
	s.recordEntries(s.runOnce())
	s.DiscardEvents()
	b.Run("view_first_page_1000", func(b *testing.B) {
		var n int
		for range b.N {
			v := s.View(1000)
			n = len(v.Waiting) + len(v.Running) + len(v.Idle)
		}
		b.ReportMetric(float64(n), "entries")
	})
	b.Run("callbacks", func(b *testing.B) {
		var n int
		for range b.N {
			n = len(s.Callbacks())
		}
		b.ReportMetric(float64(n), "tasks")
	})
}
