package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"
)

// The corpus random states draw labels from: a few keys with two values
// each (so that per-label limits have something to count), one label without
// a colon, and a key that is a prefix of another (exact key matching).
var propLabels = []string{"a:1", "a:2", "b:1", "b:2", "c:1", "x", "a-x:1"}

const propT = int64(1_000_000_000_000)

func genLabels(t *rapid.T, name string, maxN int) []string {
	ls := rapid.SliceOfNDistinct(rapid.SampledFrom(propLabels), 0, maxN, rapid.ID[string]).Draw(t, name)
	slices.Sort(ls)
	return ls
}

func genVector(t *rapid.T, name string, lo, hi int) []float64 {
	v := make([]float64, NumPaidLevels)
	for i := range v {
		// Mostly small integers (ties and exact zeros matter), sometimes
		// fractions.
		x := float64(rapid.IntRange(lo, hi).Draw(t, fmt.Sprintf("%s[%d]", name, i)))
		if rapid.IntRange(0, 3).Draw(t, name+"frac") == 0 {
			x += 0.5
		}
		v[i] = x
	}
	return v
}

// genState draws a small valid pool state in canonical form (as ToProto
// would write it).
func genState(t *rapid.T) *statev1.PoolState {
	st := &statev1.PoolState{
		Config:              &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{}},
		LastUpdateUnixNanos: proto.Int64(propT),
	}
	cfg := st.Config
	// Preemption-heavy states: rich accounts, tasks below P0, requests of
	// configured accounts with few labels, so that bans, refunds and
	// wake-ups happen often.
	heavy := rapid.IntRange(0, 2).Draw(t, "heavy") == 0
	cfg.DisablePreemption = rapid.IntRange(0, 4).Draw(t, "disablePreemption") == 0
	if rapid.Bool().Draw(t, "thresholds") {
		cfg.PromoteThreshold = proto.Float32(float32(rapid.IntRange(-5, 5).Draw(t, "promote")))
		cfg.DemoteThreshold = proto.Float32(float32(rapid.IntRange(-5, 5).Draw(t, "demote")))
	}
	nAccts := rapid.IntRange(0, 3).Draw(t, "accounts")
	acctIDs := []string{"", "ghost"} // accountless, and an account without config
	for i := range nAccts {
		id := fmt.Sprintf("a%d", i)
		acctIDs = append(acctIDs, id)
		ac := &statev1.AccountConfig{MaxChargeSeconds: float32(rapid.IntRange(0, 100).Draw(t, "window"))}
		for range rapid.IntRange(0, NumPaidLevels).Draw(t, "nrates") {
			r := float32(rapid.IntRange(0, 3).Draw(t, "rate"))
			if rapid.IntRange(0, 3).Draw(t, "ratefrac") == 0 {
				r += 0.5
			}
			ac.ChargeRate = append(ac.ChargeRate, r)
		}
		if rapid.IntRange(0, 2).Draw(t, "hasFanout") == 0 {
			ac.MaxFanout = int32(rapid.IntRange(1, 2).Draw(t, "fanout"))
		}
		if rapid.IntRange(0, 2).Draw(t, "hasLimits") == 0 {
			ac.PerLabelTaskLimits = map[string]int32{}
			for _, k := range rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"a", "b", "a-x", "x"}), 1, 2, rapid.ID[string]).Draw(t, "limitKeys") {
				ac.PerLabelTaskLimits[k] = int32(rapid.IntRange(0, 2).Draw(t, "limit"))
			}
		}
		ac.DisableFreeTasks = rapid.IntRange(0, 3).Draw(t, "disableFree") == 0
		cfg.AccountConfigs[id] = ac
		bal := genVector(t, "balance", -3, 3)
		if heavy {
			bal[0] = float64(rapid.IntRange(1, 20).Draw(t, "richP0"))
		}
		st.Balances = append(st.Balances, &statev1.AccountBalance{AccountId: id, Value: bal})
	}
	reqN := 0
	// Request ids of unequal lengths, some the prefix of others ("r1",
	// "r10"), and sometimes behind a long shared prefix, so that id order
	// differs from creation order.
	reqFmt := rapid.SampledFrom([]string{"r%d", "swarming-task-%d", "r%02d"}).Draw(t, "reqIDs")
	newReq := func() *statev1.Request {
		reqN++
		accts, maxBase := acctIDs, 2
		if heavy && len(acctIDs) > 2 {
			accts, maxBase = acctIDs[2:], 1
		}
		return &statev1.Request{
			Id:                     fmt.Sprintf(reqFmt, reqN),
			AccountId:              rapid.SampledFrom(accts).Draw(t, "account"),
			EnqueueTimeUnixNanos:   propT - int64(rapid.IntRange(0, 3).Draw(t, "enqueue"))*1e9,
			BaseLabels:             genLabels(t, "base", maxBase),
			ProvisionableLabels:    genLabels(t, "prov", 1),
			ConfirmedTimeUnixNanos: propT - int64(rapid.IntRange(0, 3).Draw(t, "confirmed"))*1e9,
		}
	}
	nWorkers := rapid.IntRange(0, 6).Draw(t, "workers")
	for i := range nWorkers {
		w := &statev1.Worker{
			Id:                     fmt.Sprintf("w%d", i),
			Labels:                 genLabels(t, "labels", 4),
			ConfirmedTimeUnixNanos: propT - int64(rapid.IntRange(0, 3).Draw(t, "wconfirmed"))*1e9,
		}
		if rapid.Bool().Draw(t, "running") {
			w.Running = &statev1.RunningTask{
				Request:             newReq(),
				Priority:            int32(rapid.IntRange(btoi(heavy), 5).Draw(t, "priority")),
				Cost:                genVector(t, "cost", 0, 3),
				LevelSinceUnixNanos: propT - int64(rapid.IntRange(0, 2).Draw(t, "since"))*1e9,
			}
		}
		st.Workers = append(st.Workers, w)
	}
	for range rapid.IntRange(0, 10).Draw(t, "waiting") {
		st.Waiting = append(st.Waiting, newReq())
	}
	// In the order ToProto writes.
	slices.SortFunc(st.Waiting, func(a, b *statev1.Request) int { return strings.Compare(a.Id, b.Id) })
	return st
}

func fromRef(as []refAssignment) []assignment {
	var out []assignment
	for _, a := range as {
		out = append(out, assignment{Worker: WorkerID(a.Worker), Request: RequestID(a.Request), Priority: Priority(a.Priority), Preempted: RequestID(a.Aborted)})
	}
	return out
}

// decisions strips what the reference does not compute.
func decisions(as []assignment) []assignment {
	var out []assignment
	for _, a := range as {
		out = append(out, assignment{Worker: a.Worker, Request: a.Request, Priority: a.Priority, Preempted: a.Preempted})
	}
	return out
}

// TestRunOnceMatchesReference: on random small states (300, or 3,000 with
// QSCHEDULER_SOAK=1: see TestMain) the indexed pass makes the same
// assignments, in the same order, and leaves the same state as the naive
// reference written from docs/algorithm.md.
func TestRunOnceMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		s, err := FromProto(st)
		if err != nil {
			t.Fatalf("FromProto: %v", err)
		}
		s.elig.mode = drawRowMode(t, "rows")
		if diff := cmp.Diff(st, s.ToProto(), protocmp.Transform()); diff != "" {
			t.Fatalf("state -> proto is not lossless (-in +out):\n%s", diff)
		}
		wantState, wantAs := refRunOnce(st)
		got := s.runOnce()
		if diff := cmp.Diff(fromRef(wantAs), decisions(got)); diff != "" {
			t.Fatalf("assignments differ from the reference (-ref +indexed):\n%s", diff)
		}
		if diff := cmp.Diff(wantState, s.ToProto(), protocmp.Transform()); diff != "" {
			t.Fatalf("state after the pass differs from the reference (-ref +indexed):\n%s", diff)
		}
	})
}

// TestUpdateTimeMatchesReference compares UpdateTime with the reference.
func TestUpdateTimeMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		st := genState(t)
		st.Config.BotExpirationNanos = proto.Int64(int64(rapid.IntRange(0, 3).Draw(t, "expiry")) * 1e9)
		for i := range rapid.IntRange(0, 4).Draw(t, "tombstones") {
			st.Tombstones = append(st.Tombstones, &statev1.Tombstone{
				RequestId:           fmt.Sprintf("t%d", i),
				FinishTimeUnixNanos: propT - int64(rapid.IntRange(0, 700).Draw(t, "finish"))*1e9,
			})
		}
		if rapid.Bool().Draw(t, "maxTombstones") {
			st.Config.MaxTombstones = proto.Int32(int32(rapid.IntRange(0, 3).Draw(t, "max")))
		}
		s, err := FromProto(st)
		if err != nil {
			t.Fatalf("FromProto: %v", err)
		}
		to := propT + int64(rapid.IntRange(-1, 5).Draw(t, "advance"))*5e8
		want := refUpdateTime(st, to)
		s.updateTime(to)
		s.gc()
		if diff := cmp.Diff(want, s.ToProto(), protocmp.Transform()); diff != "" {
			t.Fatalf("state after UpdateTime differs from the reference (-ref +indexed):\n%s", diff)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
