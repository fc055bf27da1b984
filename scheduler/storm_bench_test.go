package scheduler

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
)

// stormPasses are the heaviest passes of steady_lab with seed 1 (see
// docs/performance.md): 158, 223 and 283 preempt 2,994, 2,933 and 1,977
// tasks, 224 reprioritizes 14,341 (QS_BENCH_TRACE=1 lists them).
var stormPasses = []int{158, 223, 224, 283}

// BenchmarkStormPass replays, in isolation, the heaviest passes of
// steady_lab: the state before each is captured from one steady run, and
// each iteration times one AssignTasks on a fresh copy of it, after a
// collection, so that the figure is the pass's own cost.
func BenchmarkStormPass(b *testing.B) {
	benchCapture = map[int]*capturedPass{}
	for _, p := range stormPasses {
		benchCapture[p] = &capturedPass{}
	}
	benchSteady(b, benchdata.Lab(benchSeed, 5000, 100000), 0)
	captured := benchCapture
	benchCapture = nil
	for _, pass := range stormPasses {
		c := captured[pass]
		if c.st == nil {
			b.Fatalf("pass %d not captured", pass)
		}
		b.Run(fmt.Sprintf("pass%d", pass), func(b *testing.B) {
			var events int
			var settle time.Duration
			for range b.N {
				b.StopTimer()
				s, err := FromProto(c.st)
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				b.StartTimer()
				if _, err := s.AssignTasks(c.now, c.bots); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				t0 := time.Now()
				s.SettleOrders()
				settle += time.Since(t0)
				events = len(s.TakeEvents())
				b.StartTimer()
			}
			b.ReportMetric(float64(events), "events")
			b.ReportMetric(ms(settle/time.Duration(b.N)), "settle-ms")
		})
	}
	// The victim sort of the heaviest storm alone: every task running below
	// P0 before pass 223, shuffled afresh for each sort.
	c := captured[223]
	b.Run("victim_sort_pass223", func(b *testing.B) {
		s, err := FromProto(c.st)
		if err != nil {
			b.Fatal(err)
		}
		var keys []victimKey
		distinct := map[Vector]bool{}
		for _, a := range s.sortedAccounts() {
			for pl := Priority(1); pl <= FreeBucket; pl++ {
				for _, w := range a.running[pl] {
					keys = append(keys, victimKey{w: w, c: w.costAt(s.now)})
					distinct[w.costAt(s.now)] = true
				}
			}
		}
		s.rankWorkers()
		sc := &preemptScratch{}
		r := rand.New(rand.NewPCG(1, 2))
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			sc.keys = append(sc.keys[:0], keys...)
			b.StartTimer()
			sc.sortVictims(len(s.rankOf))
		}
		b.ReportMetric(float64(len(keys)), "victims")
		b.ReportMetric(float64(len(distinct)), "distinct-costs")
	})
}
