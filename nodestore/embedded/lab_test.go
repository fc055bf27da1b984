package embedded

import (
	"sync"
	"testing"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
)

// labPool is a production-sized pool, benchdata.Lab(1, 5000, 100000), with
// the scheduler that makes its deltas. It is built once per test binary and
// shared: callers lock it, take its current state and continue from there.
type labPool struct {
	mu  sync.Mutex
	w   *benchdata.Workload
	s   *scheduler.Scheduler
	now time.Time
}

var (
	labOnce sync.Once
	lab     labPool
	labErr  error
)

func getLab(tb testing.TB) *labPool {
	tb.Helper()
	labOnce.Do(func() { labErr = lab.build() })
	if labErr != nil {
		tb.Fatal(labErr)
	}
	return &lab
}

func (l *labPool) build() error {
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

// state returns the current state; later deltas apply to it. l.mu must be
// held.
func (l *labPool) state() *statev1.PoolState {
	l.s.TakeDelta() // forget changes the state already holds
	return l.s.ToProto()
}

// delta adds n new requests a second later and returns the change. l.mu
// must be held.
func (l *labPool) delta(tb testing.TB, n int) *statev1.PoolDelta {
	l.now = l.now.Add(time.Second)
	for _, t := range l.w.NewTasks(n, l.now) {
		if err := l.s.AddRequest(task(t), l.now, false); err != nil {
			tb.Fatal(err)
		}
	}
	l.s.DiscardEvents()
	return l.s.TakeDelta()
}
