package scheduler

// Benchmarks on the lab workload (see
// scheduler/benchdata); figures are recorded in docs/performance.md. Run:
//
//	go test ./scheduler -run '^$' -bench . -benchtime 1x
//
// Seed 1 is used for the recorded figures. QS_BENCH_TRACE=1 prints every
// steady pass slower than 3 ms with its event counts. Steady passes carry
// the profiler label pass=N, so that a profile of the heavy ones alone is
//
//	go test ./scheduler -run '^$' -bench RunOnce/steady_lab -benchtime 1x -count 40 -cpuprofile cpu.prof
//	go tool pprof -top -cum -tagfocus 'pass=^(158|223|224|283)$' scheduler.test cpu.prof

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
	"google.golang.org/protobuf/proto"
)

const benchSeed = 1

// loadWorkload builds a pool: accounts, the clock started at ClockStart, the
// bots idle and the requests waiting, then the clock advanced to FirstPass
// (preemption enabled, defaults otherwise).
func loadWorkload(tb testing.TB, w *benchdata.Workload, extra []benchdata.Task) *Scheduler {
	s, err := New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range w.Accounts {
		if err := s.AddAccount(AccountID(a.ID), &statev1.AccountConfig{ChargeRate: a.ChargeRate, MaxChargeSeconds: a.MaxChargeSeconds}, nil); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.UpdateTime(w.ClockStart); err != nil {
		tb.Fatal(err)
	}
	for _, b := range w.Bots {
		if err := s.MarkIdle(WorkerID(b.ID), b.Labels, w.FirstPass, false); err != nil {
			tb.Fatal(err)
		}
	}
	for _, tasks := range [][]benchdata.Task{w.Tasks, extra} {
		for _, t := range tasks {
			if err := s.AddRequest(benchTask(t), t.Enqueue, false); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := s.UpdateTime(w.FirstPass); err != nil {
		tb.Fatal(err)
	}
	s.DiscardEvents()
	return s
}

func benchTask(t benchdata.Task) Task {
	return Task{ID: RequestID(t.ID), Account: AccountID(t.Account), EnqueueTime: t.Enqueue, BaseLabels: t.BaseLabels, ProvisionableLabels: t.ProvisionableLabels}
}

func BenchmarkRunOnce(b *testing.B) {
	b.Run("cold_lab_5000x100000", func(b *testing.B) {
		benchCold(b, benchdata.Lab(benchSeed, 5000, 100000))
	})
	b.Run("cold_random_5000x100000", func(b *testing.B) {
		benchCold(b, benchdata.Random(benchSeed, 5000, 100000))
	})
	b.Run("steady_lab_5000x100000", func(b *testing.B) {
		benchSteady(b, benchdata.Lab(benchSeed, 5000, 100000), 0)
	})
	b.Run("steady_unmatchable", func(b *testing.B) {
		benchSteady(b, benchdata.Lab(benchSeed, 5000, 100000), 100000)
	})
}

func benchCold(b *testing.B, w *benchdata.Workload) {
	st := loadWorkload(b, w, nil).ToProto()
	b.ResetTimer()
	var n int
	for range b.N {
		b.StopTimer()
		s, err := FromProto(st)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		b.StartTimer()
		n = len(s.runOnce())
	}
	b.StopTimer()
	b.ReportMetric(float64(n), "assignments")
}

// steadyPasses is how many steady-state passes one benchmark iteration times.
const steadyPasses = 300

type benchRun struct {
	task  RequestID
	start int64
}

// steadyLoad plays the steady state of benchSteady on one scheduler: the
// cold pass with every bot polling, then one simulated second per step.
type steadyLoad struct {
	w       *benchdata.Workload
	s       *Scheduler
	now     time.Time
	labels  map[WorkerID][]string
	running map[WorkerID]benchRun
	bots    []IdleWorker // the bots polling in this step
	notes   []Notification
	all     []steadyKV

	preemptions, reprios int
}

type steadyKV struct {
	w WorkerID
	r benchRun
}

// newSteadyLoad rebuilds st (a loadWorkload state of w) and runs the cold
// pass, every assignment confirmed RUNNING.
func newSteadyLoad(tb testing.TB, w *benchdata.Workload, st *statev1.PoolState) *steadyLoad {
	s, err := FromProto(st)
	if err != nil {
		tb.Fatal(err)
	}
	l := &steadyLoad{w: w, s: s, now: w.FirstPass, labels: map[WorkerID][]string{}, running: map[WorkerID]benchRun{}}
	for _, bot := range w.Bots {
		l.labels[WorkerID(bot.ID)] = bot.Labels
		l.bots = append(l.bots, IdleWorker{ID: WorkerID(bot.ID), Labels: bot.Labels})
	}
	_, err = s.AssignTasks(l.now, l.bots)
	must(tb, err)
	l.apply(tb, s.TakeEvents())
	l.preemptions, l.reprios = 0, 0 // the cold pass does not count
	return l
}

// apply plays out a pass's decisions; like the service's pipeline, it
// hands the events' memory back before the next changes. Preemptions are
// played out as Swarming would: the victim is reported absent and the
// preemptor running on the bot.
func (l *steadyLoad) apply(tb testing.TB, events []Event) {
	l.notes = l.notes[:0]
	for _, e := range events {
		switch e.Type {
		case EventAssigned:
			l.running[e.Worker] = benchRun{e.Task, e.Time}
			if e.Preempting {
				l.preemptions++
				l.notes = append(l.notes, Notification{Kind: NotifyAbsent, Time: l.now, Task: Task{ID: e.PreemptedTask}})
			}
			l.notes = append(l.notes, Notification{Kind: NotifyRunning, Time: l.now, Task: Task{ID: e.Task}, Worker: e.Worker})
		case EventReprioritized:
			l.reprios++
		}
	}
	l.s.ReuseEvents(events)
	for _, n := range l.notes {
		must(tb, l.s.Notify(n, false))
	}
}

// prepare starts the next step: the clock advances 1 s, the 100
// longest-running tasks complete (their bots poll, l.bots) and 100 new
// requests arrive. (It reuses its buffers so that its own garbage does
// not add GC cycles to what is measured.)
func (l *steadyLoad) prepare(tb testing.TB) {
	l.now = l.now.Add(time.Second)
	l.all = l.all[:0]
	for wid, r := range l.running {
		l.all = append(l.all, steadyKV{wid, r})
	}
	sort.Slice(l.all, func(i, j int) bool {
		if l.all[i].r.start != l.all[j].r.start {
			return l.all[i].r.start < l.all[j].r.start
		}
		return l.all[i].w < l.all[j].w
	})
	l.bots = l.bots[:0]
	for _, x := range l.all[:min(100, len(l.all))] {
		must(tb, l.s.Notify(Notification{Kind: NotifyAbsent, Time: l.now, Task: Task{ID: x.r.task}}, false))
		delete(l.running, x.w)
		l.bots = append(l.bots, IdleWorker{ID: x.w, Labels: l.labels[x.w]})
	}
	slices.SortFunc(l.bots, func(a, b IdleWorker) int { return strings.Compare(string(a.ID), string(b.ID)) })
	for _, t := range l.w.NewTasks(100, l.now) {
		must(tb, l.s.AddRequest(benchTask(t), l.now, false))
	}
	l.s.DiscardEvents()
}

// benchSteady: after the cold pass (all assignments confirmed RUNNING), each
// pass advances the clock 1 s, completes the 100 longest-running tasks
// (their bots poll idle), adds 100 new requests, and times the reconciler's
// AssignTasks for those 100 bots (steadyLoad). Reports p50/p99 per pass
// and preemptions and reprioritizations per pass.
func benchSteady(b *testing.B, w *benchdata.Workload, unmatchable int) {
	var extra []benchdata.Task
	if unmatchable > 0 {
		extra = w.UnmatchableTasks(unmatchable)
	}
	st := loadWorkload(b, w, extra).ToProto()
	var lat, settle []time.Duration
	var preemptions, reprios, passes int
	ctx := context.Background()
	b.ResetTimer()
	b.StopTimer()
	n := b.N
	if benchCapture != nil {
		n = 1
	}
	for range n {
		l := newSteadyLoad(b, w, st)
		s := l.s
		for range steadyPasses {
			l.prepare(b)
			if c, ok := benchCapture[passes]; ok {
				*c = capturedPass{s.ToProto(), l.now, slices.Clone(l.bots)}
			}
			// Under -cpuprofile, the timed pass's samples carry its number,
			// so that -tagfocus can single out the heavy passes.
			pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("pass", strconv.Itoa(passes))))
			b.StartTimer()
			t0 := time.Now()
			_, err := s.AssignTasks(l.now, l.bots)
			d := time.Since(t0)
			b.StopTimer()
			pprof.SetGoroutineLabels(ctx)
			must(b, err)
			lat = append(lat, d)
			// What the pipeline does after answering the batch's callers.
			t1 := time.Now()
			s.SettleOrders()
			settle = append(settle, time.Since(t1))
			evs := s.TakeEvents()
			if os.Getenv("QS_BENCH_TRACE") != "" && d > 3*time.Millisecond {
				counts := map[EventType]int{}
				for _, e := range evs {
					counts[e.Type]++
				}
				fmt.Fprintf(os.Stderr, "pass %d: %v %v\n", passes, d, counts)
			}
			l.apply(b, evs)
			passes++
		}
		preemptions += l.preemptions
		reprios += l.reprios
	}
	slices.Sort(lat)
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	slices.Sort(settle)
	b.ReportMetric(ms(percentile(settle, 50)), "settle-p50-ms")
	b.ReportMetric(ms(percentile(settle, 99)), "settle-p99-ms")
	b.ReportMetric(float64(preemptions)/float64(passes), "preemptions/pass")
	b.ReportMetric(float64(reprios)/float64(passes), "reprioritizations/pass")
}

// percentile is the nearest-rank percentile of sorted: the smallest value
// that at least p % of the values do not exceed.
func percentile(sorted []time.Duration, p int) time.Duration {
	return sorted[(len(sorted)*p+99)/100-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkSnapshot serializes and deserializes the cold_lab state.
func BenchmarkSnapshot(b *testing.B) {
	s := loadWorkload(b, benchdata.Lab(benchSeed, 5000, 100000), nil)
	var size int
	b.Run("serialize", func(b *testing.B) {
		for range b.N {
			data, err := proto.Marshal(s.ToProto())
			if err != nil {
				b.Fatal(err)
			}
			size = len(data)
		}
		b.ReportMetric(float64(size), "bytes")
	})
	data, err := proto.Marshal(s.ToProto())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("deserialize", func(b *testing.B) {
		for range b.N {
			st := &statev1.PoolState{}
			if err := proto.Unmarshal(data, st); err != nil {
				b.Fatal(err)
			}
			if _, err := FromProto(st); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(data)), "bytes")
	})
}

// BenchmarkHeapPerWaitingRequest reports the heap the cold_lab state holds
// per waiting request (bots included).
func BenchmarkHeapPerWaitingRequest(b *testing.B) {
	w := benchdata.Lab(benchSeed, 5000, 100000)
	var perReq float64
	for range b.N {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		s := loadWorkload(b, w, nil)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		perReq = float64(m1.HeapAlloc-m0.HeapAlloc) / float64(len(w.Tasks))
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perReq, "heap-bytes/request")
}

// A captured steady-state pass, for profiling one heavy pass in isolation.
type capturedPass struct {
	st   *statev1.PoolState
	now  time.Time
	bots []IdleWorker
}

// benchCapture, when set, makes benchSteady run one iteration and capture
// the state before the passes it names.
var benchCapture map[int]*capturedPass

func TestPercentile(t *testing.T) {
	lat := make([]time.Duration, 300)
	for i := range lat {
		lat[i] = time.Duration(i + 1)
	}
	// Of 300 values, 297 do not exceed the 297th: three lie above p99.
	if got := percentile(lat, 99); got != 297 {
		t.Errorf("p99 of 1..300 = %d, want 297", got)
	}
	if got := percentile(lat, 50); got != 150 {
		t.Errorf("p50 of 1..300 = %d, want 150", got)
	}
	if got := percentile(lat[:1], 99); got != 1 {
		t.Errorf("p99 of one value = %d, want it", got)
	}
}
