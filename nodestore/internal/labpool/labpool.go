// Package labpool is a production-sized pool for the stores' tests and
// benchmarks: benchdata.Lab(1, 5000, 100000) and the scheduler that makes
// its deltas.
package labpool

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
)

// Pool is a production-sized pool, benchdata.Lab(1, 5000, 100000), with
// the scheduler that makes its deltas. It is built once per test binary and
// shared: callers lock it, take its current state and continue from there.
type Pool struct {
	Mu  sync.Mutex
	w   *benchdata.Workload
	s   *scheduler.Scheduler
	now time.Time
}

var (
	labOnce sync.Once
	lab     Pool
	labErr  error
)

// Get returns the pool, built on first use.
func Get(tb testing.TB) *Pool {
	tb.Helper()
	labOnce.Do(func() { labErr = lab.build() })
	if labErr != nil {
		tb.Fatal(labErr)
	}
	return &lab
}

func (l *Pool) build() error {
	w := benchdata.Lab(1, 5000, 100000)
	s, err := scheduler.New(nil)
	if err != nil {
		return err
	}
	for _, a := range w.Accounts {
		if err := s.AddAccount(scheduler.AccountID(a.ID), &statev1.AccountConfig{ChargeRate: a.ChargeRate, MaxChargeSeconds: a.MaxChargeSeconds}, nil); err != nil {
			return err
		}
	}
	if err := s.UpdateTime(w.ClockStart); err != nil {
		return err
	}
	for _, b := range w.Bots {
		if err := s.MarkIdle(scheduler.WorkerID(b.ID), b.Labels, w.FirstPass, false); err != nil {
			return err
		}
	}
	for _, t := range w.Tasks {
		if err := s.AddRequest(task(t), t.Enqueue, false); err != nil {
			return err
		}
	}
	if err := s.UpdateTime(w.FirstPass); err != nil {
		return err
	}
	s.DiscardEvents()
	s.TrackChanges()
	l.w, l.s, l.now = w, s, w.FirstPass
	return nil
}

func task(t benchdata.Task) scheduler.Task {
	return scheduler.Task{ID: scheduler.RequestID(t.ID), Account: scheduler.AccountID(t.Account), EnqueueTime: t.Enqueue, BaseLabels: t.BaseLabels, ProvisionableLabels: t.ProvisionableLabels}
}

// State returns the current state; later deltas apply to it. l.Mu must be
// held.
func (l *Pool) State() *statev1.PoolState {
	l.s.TakeDelta() // forget changes the state already holds
	return l.s.ToProto()
}

// Delta adds n new requests a second later and returns the change. l.Mu
// must be held.
func (l *Pool) Delta(tb testing.TB, n int) *statev1.PoolDelta {
	l.now = l.now.Add(time.Second)
	for _, t := range l.w.NewTasks(n, l.now) {
		if err := l.s.AddRequest(task(t), l.now, false); err != nil {
			tb.Fatal(err)
		}
	}
	l.s.DiscardEvents()
	return l.s.TakeDelta()
}

// Current returns the current state, leaving the changes not yet taken by
// Delta as they are. l.Mu must be held.
func (l *Pool) Current() *statev1.PoolState { return l.s.ToProto() }

// Commits commits b.N deltas of 100 new requests each to pool in s, the
// first on generation 1, with b's timer running only during the commits.
// It returns the commits' latencies, sorted, and the log bytes they wrote.
// l.Mu must be held.
func (l *Pool) Commits(b *testing.B, s nodestore.Store, pool string) (lat []time.Duration, logBytes int) {
	lat = make([]time.Duration, 0, b.N)
	gen := int64(1)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		d := l.Delta(b, 100)
		b.StartTimer()
		t0 := time.Now()
		cs, err := s.Commit(b.Context(), pool, gen, d)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		gen = cs.Generation
		logBytes += cs.LogBytes
	}
	b.StopTimer()
	slices.Sort(lat)
	return lat, logBytes
}

// Snapshotter is a store whose snapshots a benchmark can force.
type Snapshotter interface {
	nodestore.Store
	nodestore.StatsReporter
	SnapshotNow(ctx context.Context, pool string) error
}

// SnapshotAndLoad times a snapshot of pool in s and then a cold Load of
// it, and reports both (snapshot-ms, snapshot-bytes, load-ms) with the
// number of waiting requests loaded.
func SnapshotAndLoad(b *testing.B, s Snapshotter, pool string) {
	t0 := time.Now()
	if err := s.SnapshotNow(b.Context(), pool); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(t0).Milliseconds()), "snapshot-ms")
	b.ReportMetric(float64(s.Stats().SnapshotBytes), "snapshot-bytes")
	t0 = time.Now()
	st, _, err := s.Load(b.Context(), pool)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(t0).Milliseconds()), "load-ms")
	b.ReportMetric(float64(len(st.Waiting)), "waiting")
}
