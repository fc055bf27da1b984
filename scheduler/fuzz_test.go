package scheduler

// Fuzz targets of the scheduler's input validation: whatever a caller
// passes, the entry points never panic, reject bad input with
// ErrInvalidArgument (ErrNotFound for an unconfigured account) and a
// message, and a rejected call changes nothing: not the state (ToProto
// before and after), not the change set (TakeDelta), not the events. An
// accepted call keeps the indexes consistent, its delta applied to the
// state before it gives the state after it, and the state round-trips
// through its encoding and FromProto.
//
//	go test -run '^$' -fuzz FuzzSchedulerInputs -fuzztime 60s ./scheduler
//	go test -run '^$' -fuzz FuzzFromProto -fuzztime 60s ./scheduler

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// fuzzBytes reads a fuzzer's bytes as choices; past the end every choice
// is 0.
type fuzzBytes struct{ b []byte }

func (r *fuzzBytes) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzBytes) pick(n int) int { return int(r.next()) % n }

var (
	fuzzEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// fuzzIDs: valid ids and every way an id is invalid.
	fuzzIDs = []string{"a", "b", "c", "w1", "w2", "r1", "r2", "ü", strings.Repeat("z", MaxIDLength),
		"", "\xff", "a\xc3", strings.Repeat("y", MaxIDLength+1)}
	fuzzLabels = []string{"pool:lab", "os:linux", "os:mac", "gpu:1", "model:x", "", "id:w1", "pool:other"}
	fuzzFloats = []float32{0, 1, 2.5, 5, 600, 1e30, -1, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.Copysign(0, -1))}
)

func (r *fuzzBytes) id() string { return fuzzIDs[r.pick(len(fuzzIDs))] }

// time is mostly a small step from the last one, sometimes a time out of
// the scheduler's range, unset, far ahead or behind.
func (r *fuzzBytes) time(clock *time.Time) time.Time {
	switch c := r.next(); c % 32 {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	case 2:
		return time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	case 3:
		return time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC)
	case 4:
		return time.Unix(maxTime/1_000_000_000, 0)
	case 5:
		return time.Unix(maxTime/1_000_000_000+1, 0)
	case 6:
		return time.Unix(minTime/1_000_000_000, 0)
	case 7:
		return time.Unix(minTime/1_000_000_000-1, 0)
	case 8:
		return clock.Add(-time.Hour)
	default:
		*clock = clock.Add(time.Duration(c) * 100 * time.Millisecond)
		return *clock
	}
}

func (r *fuzzBytes) labels() []string {
	var out []string
	for mask, i := r.next(), 0; mask != 0; mask, i = mask>>1, i+1 {
		if mask&1 != 0 {
			out = append(out, fuzzLabels[i%len(fuzzLabels)])
		}
	}
	return out
}

func (r *fuzzBytes) floats() []float32 {
	out := make([]float32, r.pick(7))
	for i := range out {
		out[i] = fuzzFloats[r.pick(len(fuzzFloats))]
	}
	return out
}

func (r *fuzzBytes) accountConfig() *statev1.AccountConfig {
	if r.pick(16) == 0 {
		return nil
	}
	c := &statev1.AccountConfig{
		ChargeRate:       r.floats(),
		MaxChargeSeconds: fuzzFloats[r.pick(len(fuzzFloats))],
		MaxFanout:        int32(r.pick(5)) - 1,
		DisableFreeTasks: r.pick(2) == 0,
	}
	if n := r.pick(3); n > 0 {
		c.PerLabelTaskLimits = map[string]int32{}
		for range n {
			c.PerLabelTaskLimits[strings.TrimPrefix(fuzzLabels[r.pick(len(fuzzLabels))], "model:")] = int32(r.pick(4)) - 1
		}
	}
	return c
}

func (r *fuzzBytes) poolConfig() *statev1.PoolConfig {
	c := &statev1.PoolConfig{}
	durations := []int64{-1, 0, 1, int64(time.Second), int64(time.Minute), math.MaxInt64}
	for _, f := range []**int64{&c.BotExpirationNanos, &c.WorkerQueueTimeoutNanos, &c.MaxQueueingAgeNanos, &c.TombstoneTtlNanos} {
		if i := r.pick(len(durations) + 1); i < len(durations) {
			*f = proto.Int64(durations[i])
		}
	}
	for _, f := range []**float32{&c.PromoteThreshold, &c.DemoteThreshold} {
		if i := r.pick(len(fuzzFloats) + 1); i < len(fuzzFloats) {
			*f = proto.Float32(fuzzFloats[i])
		}
	}
	if i := r.pick(5); i < 4 {
		c.MaxTombstones = proto.Int32(int32(i) - 1)
	}
	if r.pick(2) == 0 {
		c.DisablePreemption = true
	}
	if r.pick(4) == 0 {
		c.AccountConfigs = map[string]*statev1.AccountConfig{r.id(): r.accountConfig()}
	}
	return c
}

func (r *fuzzBytes) task(clock *time.Time) Task {
	return Task{
		ID:                  RequestID(r.id()),
		Account:             AccountID(fuzzIDs[r.pick(len(fuzzIDs))%4]), // "a", "b", "c" or "w1": mostly valid
		EnqueueTime:         r.time(clock),
		BaseLabels:          r.labels(),
		ProvisionableLabels: r.labels(),
		Tags:                r.labels(),
	}
}

// fuzzOp is one call on the scheduler; notFound says whether ErrNotFound is
// an expected rejection.
type fuzzOp struct {
	name     string
	notFound bool
	do       func(s *Scheduler) error
}

func (r *fuzzBytes) op(clock *time.Time) fuzzOp {
	switch r.pick(15) {
	case 0, 1:
		n := Notification{Kind: NotifyWaiting, Time: r.time(clock), Task: r.task(clock)}
		if r.pick(8) == 0 {
			n.Task.Account = AccountID(r.id())
		}
		cb := r.pick(2) == 0
		return fuzzOp{name: "Notify waiting", do: func(s *Scheduler) error { return s.Notify(n, cb) }}
	case 2:
		n := Notification{Kind: NotifyRunning, Time: r.time(clock), Task: Task{ID: RequestID(r.id())}, Worker: WorkerID(r.id())}
		cb := r.pick(2) == 0
		return fuzzOp{name: "Notify running", do: func(s *Scheduler) error { return s.Notify(n, cb) }}
	case 3:
		n := Notification{Kind: NotifyAbsent, Time: r.time(clock), Task: Task{ID: RequestID(r.id())}}
		cb := r.pick(2) == 0
		return fuzzOp{name: "Notify absent", do: func(s *Scheduler) error { return s.Notify(n, cb) }}
	case 4:
		n := Notification{Kind: NotificationKind(r.pick(6) - 1), Time: r.time(clock), Task: r.task(clock), Worker: WorkerID(r.id())}
		return fuzzOp{name: "Notify of any kind", do: func(s *Scheduler) error { return s.Notify(n, false) }}
	case 5, 6, 7:
		t := r.time(clock)
		bots := make([]IdleWorker, r.pick(4))
		for i := range bots {
			bots[i] = IdleWorker{ID: WorkerID(r.id()), Labels: r.labels()}
		}
		return fuzzOp{name: "AssignTasks", do: func(s *Scheduler) error {
			out, err := s.AssignTasks(t, bots)
			if err != nil && out != nil {
				return errors.New("AssignTasks returned assignments with an error")
			}
			for _, a := range out {
				found := false
				for _, b := range bots {
					found = found || b.ID == a.Worker
				}
				if !found {
					return errors.New("AssignTasks assigned a task to a worker that did not poll")
				}
			}
			return err
		}}
	case 8:
		id, msg := RequestID(r.id()), fuzzLabels[r.pick(len(fuzzLabels))]
		return fuzzOp{name: "SetTaskError", do: func(s *Scheduler) error { return s.SetTaskError(id, msg) }}
	case 9:
		t := r.time(clock)
		return fuzzOp{name: "UpdateTime", do: func(s *Scheduler) error { return s.UpdateTime(t) }}
	case 10:
		id, cfg, bal := AccountID(r.id()), r.accountConfig(), r.floats()
		if r.pick(2) == 0 {
			bal = nil
		}
		return fuzzOp{name: "AddAccount", do: func(s *Scheduler) error { return s.AddAccount(id, cfg, bal) }}
	case 11:
		id, cfg := AccountID(r.id()), r.accountConfig()
		if r.pick(2) == 0 {
			return fuzzOp{name: "DeleteAccount", notFound: true, do: func(s *Scheduler) error { return s.DeleteAccount(id) }}
		}
		return fuzzOp{name: "UpdateAccount", notFound: true, do: func(s *Scheduler) error { return s.UpdateAccount(id, cfg) }}
	case 12:
		c := r.poolConfig()
		return fuzzOp{name: "SetTunables", do: func(s *Scheduler) error { return s.SetTunables(c) }}
	case 13:
		id, labels, t, cb := WorkerID(r.id()), r.labels(), r.time(clock), r.pick(2) == 0
		return fuzzOp{name: "MarkIdle", do: func(s *Scheduler) error { return s.MarkIdle(id, labels, t, cb) }}
	default:
		task, t, cb := r.task(clock), r.time(clock), r.pick(2) == 0
		return fuzzOp{name: "AddRequest", do: func(s *Scheduler) error { return s.AddRequest(task, t, cb) }}
	}
}

// fuzzCheckState checks the indexes and the round trip of the state
// through its encoding and FromProto.
func fuzzCheckState(t *testing.T, s *Scheduler, where string) {
	t.Helper()
	if err := s.checkIndexes(); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	st := s.ToProto()
	b, err := proto.Marshal(st)
	if err != nil {
		t.Fatalf("%s: the state cannot be encoded: %v", where, err)
	}
	decoded := &statev1.PoolState{}
	if err := proto.Unmarshal(b, decoded); err != nil {
		t.Fatalf("%s: the state's encoding does not decode: %v", where, err)
	}
	again, err := FromProto(decoded)
	if err != nil {
		t.Fatalf("%s: FromProto of an accepted state: %v", where, err)
	}
	if err := again.checkIndexes(); err != nil {
		t.Fatalf("%s: reloaded: %v", where, err)
	}
	if back := again.ToProto(); !proto.Equal(st, back) {
		t.Fatalf("%s: the round trip is not lossless (-before +after):\n%s", where, cmp.Diff(st, back, protocmp.Transform()))
	}
}

func FuzzSchedulerInputs(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		// A waiting task, a bot polling for it, it runs, it completes.
		{0, 0, 10, 10, 0, 3, 1, 0, 0, 5, 11, 1, 3, 1, 3, 2, 12, 5, 3, 12, 5},
		// Bad ids, times and kinds.
		{0, 9, 2, 9, 0, 0, 0, 4, 0, 3, 4, 3, 2, 10, 5, 1, 2, 7, 0, 9, 10, 5, 10, 0, 0, 3, 40, 0},
		// Accounts with bad configs and balances, tunables.
		{10, 0, 1, 3, 6, 7, 8, 2, 1, 0, 11, 0, 1, 1, 10, 6, 1, 3, 1, 1, 0, 12, 0, 0, 0, 0, 4, 4, 4, 0, 1, 2, 11, 9, 11, 1, 0, 0},
		// A worker polls twice, labels change, time goes backwards.
		{5, 20, 2, 0, 3, 1, 255, 5, 8, 2, 0, 9, 1, 3, 13, 3, 9, 1, 6, 8},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := New(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddAccount("a", &statev1.AccountConfig{ChargeRate: []float32{2, 1}, MaxChargeSeconds: 600, MaxFanout: 2}, []float32{100}); err != nil {
			t.Fatal(err)
		}
		s.TrackChanges()
		r := &fuzzBytes{b: data}
		clock := fuzzEpoch
		for step := 0; len(r.b) > 0 && step < 64; step++ {
			op := r.op(&clock)
			_ = s.TakeDelta()
			s.DiscardEvents()
			before := s.ToProto()
			err := func() (err error) {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("step %d %s panicked: %v", step, op.name, p)
					}
				}()
				return op.do(s)
			}()
			delta, events := s.TakeDelta(), s.TakeEvents()
			after := s.ToProto()
			if err != nil {
				switch {
				case !errors.Is(err, ErrInvalidArgument) && !(op.notFound && errors.Is(err, ErrNotFound)):
					t.Fatalf("step %d %s: error %v is neither ErrInvalidArgument nor an expected ErrNotFound", step, op.name, err)
				case len(err.Error()) > 4096:
					t.Fatalf("step %d %s: an error of %d bytes", step, op.name, len(err.Error()))
				case !proto.Equal(before, after):
					t.Fatalf("step %d %s: rejected (%v), yet the state changed:\n%s", step, op.name, err,
						cmp.Diff(before, after, protocmp.Transform()))
				case !DeltaEmpty(delta):
					t.Fatalf("step %d %s: rejected (%v), yet the change set holds %v", step, op.name, err, delta)
				case len(events) != 0:
					t.Fatalf("step %d %s: rejected (%v), yet %d events were recorded", step, op.name, err, len(events))
				}
				continue
			}
			if err := s.checkIndexes(); err != nil {
				t.Fatalf("step %d %s: %v", step, op.name, err)
			}
			if rebuilt := nodestore.ApplyDelta(before, delta); !proto.Equal(after, rebuilt) {
				t.Fatalf("step %d %s: the state rebuilt from the delta differs (-live +rebuilt):\n%s", step, op.name,
					cmp.Diff(after, rebuilt, protocmp.Transform()))
			}
		}
		fuzzCheckState(t, s, "after the calls")
	})
}

// fuzzStates are valid states reached by ordinary calls, as seeds of
// FuzzFromProto.
func fuzzStates(tb testing.TB) []*statev1.PoolState {
	s, err := New(&statev1.PoolConfig{MaxTombstones: proto.Int32(10)})
	if err != nil {
		tb.Fatal(err)
	}
	var out []*statev1.PoolState
	out = append(out, s.ToProto())
	mustOK := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	mustOK(s.AddAccount("a", &statev1.AccountConfig{ChargeRate: []float32{1, 2}, MaxChargeSeconds: 60, MaxFanout: 2,
		PerLabelTaskLimits: map[string]int32{"model": 1}}, []float32{5}))
	at := func(sec int) time.Time { return fuzzEpoch.Add(time.Duration(sec) * time.Second) }
	for i, id := range []RequestID{"r1", "r2", "r3", "r4"} {
		mustOK(s.Notify(Notification{Kind: NotifyWaiting, Time: at(i), Task: Task{ID: id, Account: "a", EnqueueTime: at(0),
			BaseLabels: []string{"pool:lab"}, ProvisionableLabels: []string{"model:x"}, Tags: []string{"t"}}}, false))
	}
	out = append(out, s.ToProto())
	_, err = s.AssignTasks(at(10), []IdleWorker{{ID: "w1", Labels: []string{"pool:lab", "model:x"}}, {ID: "w2", Labels: []string{"pool:lab"}}, {ID: "w3"}})
	mustOK(err)
	out = append(out, s.ToProto())
	mustOK(s.Notify(Notification{Kind: NotifyRunning, Time: at(11), Task: Task{ID: "r1"}, Worker: "w1"}, false))
	mustOK(s.Notify(Notification{Kind: NotifyAbsent, Time: at(12), Task: Task{ID: "r2"}}, false))
	mustOK(s.SetTaskError("r9", "bad slices"))
	out = append(out, s.ToProto())
	return out
}

func FuzzFromProto(f *testing.F) {
	for _, st := range fuzzStates(f) {
		b, err := proto.Marshal(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, op uint8) {
		st := &statev1.PoolState{}
		if proto.Unmarshal(data, st) != nil {
			return
		}
		s, err := FromProto(st)
		if err != nil {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("FromProto error %v is not ErrInvalidArgument", err)
			}
			return
		}
		fuzzCheckState(t, s, "loaded")
		// What the pipeline does next with a loaded pool: catch up to the
		// clock with a pass, then take a poll and a notification.
		now, ok := s.Clock()
		if !ok {
			now = fuzzEpoch
		}
		s.TrackChanges()
		switch op % 4 {
		case 0:
			_, err = s.AssignTasks(now, nil)
		case 1:
			_, err = s.AssignTasks(now.Add(time.Second), []IdleWorker{{ID: "w1", Labels: []string{"pool:lab", "model:x"}}, {ID: "fresh"}})
		case 2:
			err = s.Notify(Notification{Kind: NotifyAbsent, Time: now.Add(time.Minute), Task: Task{ID: "r1"}}, false)
		case 3:
			err = s.Notify(Notification{Kind: NotifyWaiting, Time: now.Add(time.Hour), Task: Task{ID: "new", Account: "a", EnqueueTime: now,
				BaseLabels: []string{"pool:lab"}}}, true)
		}
		if err != nil {
			t.Fatalf("a valid call on a loaded state: %v", err)
		}
		live, rebuilt := s.ToProto(), nodestore.ApplyDelta(proto.CloneOf(st), s.TakeDelta())
		if !proto.Equal(live, rebuilt) && fuzzNormalized(st) {
			t.Fatalf("the state rebuilt from the delta differs (-live +rebuilt):\n%s", cmp.Diff(live, rebuilt, protocmp.Transform()))
		}
		fuzzCheckState(t, s, "after a call")
	})
}

// fuzzNormalized reports whether st is already in ToProto's form, so that a
// delta applied to it must give the live state.
func fuzzNormalized(st *statev1.PoolState) bool {
	s, err := FromProto(st)
	return err == nil && proto.Equal(st, s.ToProto())
}
