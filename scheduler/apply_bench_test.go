package scheduler

// Benchmarks of catching up with other writers' commits (ApplyDelta) and of
// taking back a batch (UndoDelta) on the lab workload at 5,000 bots and
// 100,000 waiting requests; figures are recorded in docs/performance.md.
// Run:
//
//	go test ./scheduler -run '^$' -bench 'ApplyDelta' -benchtime 1x -count 3

import (
	"slices"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
	"google.golang.org/protobuf/proto"
)

// playSteady runs the cold pass of the steady lab workload with changes
// tracked from then on, and then n steady steps, one batch each (a step's
// completions and arrivals, its AssignTasks and the notifications of its
// assignments), calling each with the batch's delta after its TakeDelta. It
// returns the state after the cold pass.
func playSteady(tb testing.TB, n int, each func(s *Scheduler, d *statev1.PoolDelta)) *statev1.PoolState {
	w := benchdata.Lab(benchSeed, 5000, 100000)
	l := newSteadyLoad(tb, w, loadWorkload(tb, w, nil).ToProto())
	l.s.SettleOrders()
	l.s.TrackChanges()
	start := l.s.ToProto()
	for range n {
		l.prepare(tb)
		_, err := l.s.AssignTasks(l.now, l.bots)
		must(tb, err)
		l.apply(tb, l.s.TakeEvents())
		each(l.s, l.s.TakeDelta())
		l.s.SettleOrders()
	}
	return start
}

// steadyDeltas returns the state after the cold pass and the deltas of the
// next n steady steps, each encoded and decoded as a store returns it.
func steadyDeltas(tb testing.TB, n int) (*statev1.PoolState, []*statev1.PoolDelta) {
	deltas := make([]*statev1.PoolDelta, 0, n)
	start := playSteady(tb, n, func(_ *Scheduler, d *statev1.PoolDelta) {
		data, err := proto.Marshal(d)
		must(tb, err)
		d = &statev1.PoolDelta{}
		must(tb, proto.Unmarshal(data, d))
		deltas = append(deltas, d)
	})
	return start, deltas
}

// BenchmarkApplyDelta: a replica at the state after the cold pass applies
// the deltas of 1,000 steady steps in order, each timed (per_delta: p50,
// p99 and max over the 1,000) and all together (catch_up_1000). undo_redo
// times, on the writer's side, UndoDelta of each step's batch after its
// TakeDelta and ApplyDelta of the same delta again, which is what a
// conflict costs beyond the other writers' deltas and the replay.
func BenchmarkApplyDelta(b *testing.B) {
	const steps = 1000
	start, deltas := steadyDeltas(b, steps)
	b.Run("per_delta", func(b *testing.B) {
		var lat []time.Duration
		var records int
		for range b.N {
			s, err := FromProto(start)
			must(b, err)
			s.TrackChanges()
			for _, d := range deltas {
				t0 := time.Now()
				err := s.ApplyDelta(d)
				lat = append(lat, time.Since(t0))
				must(b, err)
				records += len(d.Waiting) + len(d.DeletedWaiting) + len(d.Workers) + len(d.DeletedWorkers) +
					len(d.Tombstones) + len(d.DeletedTombstones) + len(d.Pending) + len(d.DeletedPending)
			}
			s.SettleOrders()
		}
		slices.Sort(lat)
		b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
		b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		b.ReportMetric(float64(records)/float64(len(lat)), "records/delta")
	})
	// catchUp times f, given a replica at the start, bringing it up to date.
	catchUp := func(b *testing.B, f func(s *Scheduler)) {
		var total time.Duration
		for range b.N {
			s, err := FromProto(start)
			must(b, err)
			s.TrackChanges()
			t0 := time.Now()
			f(s)
			total += time.Since(t0)
		}
		b.ReportMetric(ms(total/time.Duration(b.N)), "ms")
	}
	b.Run("catch_up_1000", func(b *testing.B) {
		catchUp(b, func(s *Scheduler) {
			for _, d := range deltas {
				must(b, s.ApplyDelta(d))
			}
			s.SettleOrders()
		})
	})
	// What the pipeline does instead when deltas touch many times more
	// records than the pool holds (state.rebuildCheaper): one rebuild from
	// the state with every delta applied.
	b.Run("catch_up_1000_rebuild", func(b *testing.B) {
		catchUp(b, func(s *Scheduler) {
			sh := nodestore.NewShadow(s.ToProto())
			for _, d := range deltas {
				sh.Apply(d)
			}
			r, err := FromProto(sh.State())
			must(b, err)
			r.TrackChanges()
		})
	})
	b.Run("undo_redo", func(b *testing.B) {
		var undo, redo []time.Duration
		for range b.N {
			playSteady(b, steps, func(s *Scheduler, d *statev1.PoolDelta) {
				t0 := time.Now()
				must(b, s.UndoDelta())
				t1 := time.Now()
				must(b, s.ApplyDelta(d))
				undo, redo = append(undo, t1.Sub(t0)), append(redo, time.Since(t1))
			})
		}
		slices.Sort(undo)
		slices.Sort(redo)
		b.ReportMetric(ms(percentile(undo, 50)), "undo-p50-ms")
		b.ReportMetric(ms(percentile(undo, 99)), "undo-p99-ms")
		b.ReportMetric(ms(percentile(redo, 50)), "redo-p50-ms")
		b.ReportMetric(ms(percentile(redo, 99)), "redo-p99-ms")
	})
}
