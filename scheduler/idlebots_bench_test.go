package scheduler

import (
	"context"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"testing"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
)

// idleFleet returns n bots with Swarming-like dimensions, a pure function
// of n: a unique id:bot-NNNNNN each, one pool, os (three families, two
// versions each, with Swarming's nested values os:Linux, os:Ubuntu,
// os:Ubuntu-22.04), cpu (x86-64 or arm64, nested the same way), gpu (none,
// or an NVIDIA or Intel model), one of 36 models, kvm, python, zone and
// cores: about 20 labels per bot. Mac bots are arm64 and carry no NVIDIA
// GPU.
func idleFleet(n int) []IdleWorker {
	out := make([]IdleWorker, n)
	for i := range out {
		h := splitmix(uint64(i))
		pick := func(k int) int { // the next draw in [0, k)
			v := int(h % uint64(k))
			h /= uint64(k)
			return v
		}
		ls := []string{
			"id:bot-" + pad6(i),
			"pool:chromium.tests",
			"model:m" + pad2(pick(36)),
			"python:3",
			[]string{"python:3.8", "python:3.11"}[pick(2)],
			[]string{"zone:us", "zone:eu"}[pick(2)],
			[]string{"cores:8", "cores:16", "cores:32", "cores:64"}[pick(4)],
			[]string{"kvm:0", "kvm:1"}[pick(2)],
		}
		ls = append(ls, "zone:"+[]string{"us-central1", "europe-west4"}[pick(2)]+"-"+[]string{"a", "b", "c"}[pick(3)])
		mac := false
		switch pick(3) {
		case 0:
			ls = append(ls, "os:Linux", "os:Ubuntu", []string{"os:Ubuntu-20.04", "os:Ubuntu-22.04"}[pick(2)])
		case 1:
			ls = append(ls, "os:Windows", "os:Windows-10", []string{"os:Windows-10-19045", "os:Windows-11-22631"}[pick(2)])
		default:
			mac = true
			ls = append(ls, "os:Mac", []string{"os:Mac-13", "os:Mac-14"}[pick(2)])
		}
		if mac || pick(4) == 0 {
			ls = append(ls, "cpu:arm", "cpu:arm64", "cpu:arm64-64")
		} else {
			ls = append(ls, "cpu:x86", "cpu:x86-64", "cpu:x86-64-avx2")
		}
		switch g := pick(5); {
		case g < 3:
			ls = append(ls, "gpu:none")
		case g == 3 && !mac:
			ls = append(ls, "gpu:10de", "gpu:10de:"+[]string{"2184", "1cb3", "2489"}[pick(3)])
		default:
			ls = append(ls, "gpu:8086", "gpu:8086:"+[]string{"9bc5", "3e92"}[pick(2)])
		}
		slices.Sort(ls)
		out[i] = IdleWorker{ID: WorkerID("bot-" + pad6(i)), Labels: ls}
	}
	return out
}

// splitmix is SplitMix64's finalizer: a fixed mixing of i.
func splitmix(i uint64) uint64 {
	z := i*0x9e3779b97f4a7c15 + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func pad6(i int) string { return pad(i, 6) }
func pad2(i int) string { return pad(i, 2) }

func pad(i, width int) string {
	s := strconv.Itoa(i)
	for len(s) < width {
		s = "0" + s
	}
	return s
}

// unmatchedTask asks for an Ubuntu x86-64 bot with an NVIDIA GPU of a
// model no bot of idleFleet has: every label but the last is common.
var unmatchedTask = Task{
	ID:         "unmatched",
	Account:    "acct",
	BaseLabels: []string{"cpu:x86-64", "gpu:10de:ffff", "os:Ubuntu", "pool:chromium.tests"},
}

// newIdleBotsPool returns a pool with one configured account and
// unmatchedTask waiting, the clock at t.
func newIdleBotsPool(tb testing.TB, t time.Time) *Scheduler {
	cfg := &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{
		"acct": {ChargeRate: []float32{1, 1}, MaxChargeSeconds: 600},
	}}
	s, err := New(cfg)
	must(tb, err)
	must(tb, s.UpdateTime(t))
	task := unmatchedTask
	task.EnqueueTime = t
	must(tb, s.AddRequest(task, t, false))
	s.DiscardEvents()
	return s
}

// idleLaterPasses is how many passes after the first BenchmarkIdleBots
// times per iteration.
const idleLaterPasses = 15

// BenchmarkIdleBots: n idle bots with Swarming-like dimensions (idleFleet)
// and one waiting request that no bot matches. The first AssignTasks
// creates the workers and walks the trie for all of them; heap-MB is the
// heap in use after it (after a collection, net of the heap before the
// pool was built), first-ms its time. Then every bot polls again, once a
// second, the request still unmatched: pass-ms is the median and max-ms
// the slowest of those AssignTasks calls, alloc-MB/pass what each
// allocates on average. Half a second after each, one bot polls alone:
// pass1-ms is the median of those calls, a pass over every idle bot
// without the cost of marking them all idle. settle-ms is the median time
// SettleOrders takes after a pass where every bot polled (each bot moves in
// the idle order). Run:
//
//	go test ./scheduler -run '^$' -bench IdleBots -benchtime 1x -count 3
func BenchmarkIdleBots(b *testing.B) {
	for _, n := range []int{20000, 50000, 100000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchIdleBots(b, n) })
	}
}

func benchIdleBots(b *testing.B, n int) {
	bots := idleFleet(n)
	t0 := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	var heapMB, firstMS, allocMB float64
	var lat, lat1, settle []time.Duration
	b.ResetTimer()
	b.StopTimer()
	for range b.N {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		s := newIdleBotsPool(b, t0)
		t := t0
		start := time.Now()
		out, err := s.AssignTasks(t, bots)
		firstMS = ms(time.Since(start))
		must(b, err)
		if len(out) != 0 {
			b.Fatalf("%d assignments, want none", len(out))
		}
		s.DiscardEvents()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heapMB = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / (1 << 20)
		var alloc uint64
		// Under -cpuprofile, -tagfocus idle=later singles out these passes.
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("idle", "later")))
		for i := range idleLaterPasses {
			t = t.Add(time.Second)
			var ma, mb runtime.MemStats
			runtime.ReadMemStats(&ma)
			b.StartTimer()
			start := time.Now()
			out, err := s.AssignTasks(t, bots)
			d := time.Since(start)
			b.StopTimer()
			runtime.ReadMemStats(&mb)
			must(b, err)
			if len(out) != 0 {
				b.Fatalf("%d assignments, want none", len(out))
			}
			s.DiscardEvents()
			lat = append(lat, d)
			start = time.Now()
			s.SettleOrders()
			settle = append(settle, time.Since(start))
			alloc += mb.TotalAlloc - ma.TotalAlloc
			// Half a second later, one bot polls: the pass still serves
			// every idle bot.
			start = time.Now()
			out, err = s.AssignTasks(t.Add(time.Second/2), bots[i:i+1])
			lat1 = append(lat1, time.Since(start))
			must(b, err)
			if len(out) != 0 {
				b.Fatalf("%d assignments, want none", len(out))
			}
			s.DiscardEvents()
		}
		pprof.SetGoroutineLabels(context.Background())
		allocMB = float64(alloc) / idleLaterPasses / (1 << 20)
		runtime.KeepAlive(s)
	}
	slices.Sort(lat)
	slices.Sort(lat1)
	slices.Sort(settle)
	b.ReportMetric(heapMB, "heap-MB")
	b.ReportMetric(firstMS, "first-ms")
	b.ReportMetric(ms(percentile(lat, 50)), "pass-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(allocMB, "alloc-MB/pass")
	b.ReportMetric(ms(percentile(lat1, 50)), "pass1-ms")
	b.ReportMetric(ms(percentile(settle, 50)), "settle-ms")
}
