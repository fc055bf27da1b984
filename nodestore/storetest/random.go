package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// gen draws random pool states and deltas. Ids come from small universes so
// that deltas upsert and delete entities that exist; every list is sorted
// by id and no id is both upserted and deleted, as in the deltas the
// scheduler produces. Values are arbitrary: stores do not interpret them.
type gen struct {
	r     *rand.Rand
	clock int64
}

const (
	numRequests = 120
	numWorkers  = 40
	numAccounts = 8
)

func newGen(seed uint64) *gen {
	return &gen{r: rand.New(rand.NewPCG(seed, 0x73746f7265)), clock: 1_767_225_600_000_000_000}
}

func id(prefix string, i int) string { return fmt.Sprintf("%s-%03d", prefix, i) }

var labelCorpus = []string{"cpu:x86-64", "os:linux", "os:mac", "pool:lab", "model:m00", "model:m01", "board:b7", "image:i03", "image:i12", "gpu:none", "dut_state:ready"}

func (g *gen) labels(max int) []string {
	n := g.r.IntN(max + 1)
	set := map[string]bool{}
	for range n {
		set[labelCorpus[g.r.IntN(len(labelCorpus))]] = true
	}
	out := make([]string, 0, len(set))
	for l := range set {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

func (g *gen) vector() []float64 {
	v := make([]float64, 5)
	for i := range v {
		v[i] = float64(g.r.IntN(1_000_000))/16 - 20_000
	}
	return v
}

func (g *gen) text(max int) string {
	b := make([]byte, g.r.IntN(max+1))
	for i := range b {
		b[i] = byte(' ' + g.r.IntN(95))
	}
	return string(b)
}

func (g *gen) time() int64 { return g.clock - g.r.Int64N(3_600_000_000_000) }

func (g *gen) config() *statev1.PoolConfig {
	c := &statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{}, DisablePreemption: g.r.IntN(2) == 0}
	for i := range numAccounts {
		if g.r.IntN(3) == 0 {
			continue
		}
		ac := &statev1.AccountConfig{
			ChargeRate:       []float32{float32(g.r.IntN(100)), float32(g.r.IntN(200)), 0.5},
			MaxChargeSeconds: float32(g.r.IntN(1000)),
			MaxFanout:        int32(g.r.IntN(4)),
			DisableFreeTasks: g.r.IntN(4) == 0,
			Description:      g.text(20),
		}
		if g.r.IntN(3) == 0 {
			ac.PerLabelTaskLimits = map[string]int32{"model": int32(g.r.IntN(10)), "board": int32(g.r.IntN(10))}
		}
		c.AccountConfigs[id("acct", i)] = ac
	}
	if g.r.IntN(2) == 0 {
		c.BotExpirationNanos = proto.Int64(g.r.Int64N(1e12))
	}
	if g.r.IntN(2) == 0 {
		c.PromoteThreshold = proto.Float32(float32(g.r.IntN(1000)))
	}
	if g.r.IntN(3) == 0 {
		c.MaxTombstones = proto.Int32(int32(g.r.IntN(1000)))
	}
	return c
}

func (g *gen) request(i int) *statev1.Request {
	return &statev1.Request{
		Id:                     id("req", i),
		AccountId:              id("acct", g.r.IntN(numAccounts)),
		EnqueueTimeUnixNanos:   g.time(),
		BaseLabels:             g.labels(4),
		ProvisionableLabels:    g.labels(1),
		ConfirmedTimeUnixNanos: g.time(),
	}
}

func (g *gen) worker(i int) *statev1.Worker {
	w := &statev1.Worker{Id: id("bot", i), Labels: g.labels(7), ConfirmedTimeUnixNanos: g.time()}
	if g.r.IntN(2) == 0 {
		w.Running = &statev1.RunningTask{
			Request:             g.request(numRequests + g.r.IntN(1000)),
			Priority:            int32(g.r.IntN(6)),
			Cost:                g.vector(),
			LevelSinceUnixNanos: g.time(),
		}
	}
	return w
}

func (g *gen) balance(i int) *statev1.AccountBalance {
	return &statev1.AccountBalance{AccountId: id("acct", i), Value: g.vector()}
}

func (g *gen) tombstone(i int) *statev1.Tombstone {
	return &statev1.Tombstone{RequestId: id("req", i), FinishTimeUnixNanos: g.time()}
}

func (g *gen) pending(i int) *statev1.PendingAssignment {
	p := &statev1.PendingAssignment{WorkerId: id("bot", i), TimeUnixNanos: g.time(), TaskToAssign: id("req", g.r.IntN(numRequests))}
	if g.r.IntN(3) == 0 {
		p.TaskToAbort = id("req", g.r.IntN(numRequests))
	}
	return p
}

func (g *gen) taskError(i int) *statev1.TaskError {
	// Occasionally long, so that log entries exceed small shard limits.
	n := 40
	if g.r.IntN(40) == 0 {
		n = 3000
	}
	return &statev1.TaskError{TaskId: id("req", i), Error: g.text(n)}
}

// some returns the indexes in [0, n) each with probability p, in order.
func (g *gen) some(n int, p float64) []int {
	var out []int
	for i := range n {
		if g.r.Float64() < p {
			out = append(out, i)
		}
	}
	return out
}

// state returns a random pool state in canonical form.
func (g *gen) state() *statev1.PoolState {
	st := &statev1.PoolState{Config: g.config(), LastUpdateUnixNanos: proto.Int64(g.clock)}
	for _, i := range g.some(numAccounts, 0.7) {
		st.Balances = append(st.Balances, g.balance(i))
	}
	for _, i := range g.some(numRequests, 0.5) {
		st.Waiting = append(st.Waiting, g.request(i))
	}
	for _, i := range g.some(numWorkers, 0.6) {
		st.Workers = append(st.Workers, g.worker(i))
	}
	for _, i := range g.some(numRequests, 0.2) {
		st.Tombstones = append(st.Tombstones, g.tombstone(i))
	}
	for _, i := range g.some(numWorkers, 0.2) {
		st.Pending = append(st.Pending, g.pending(i))
	}
	for _, i := range g.some(numRequests, 0.05) {
		st.TaskErrors = append(st.TaskErrors, g.taskError(i))
	}
	return st
}

// upsertsAndDeletes picks ids of one kind to upsert (any in [0, n)) and to
// delete (among those present), disjoint, both sorted.
func upsertsAndDeletes[T any](g *gen, n int, present []string, name func(int) string, mk func(int) T) (ups []T, dels []string) {
	if g.r.IntN(3) == 0 {
		return nil, nil // this kind unchanged
	}
	del := map[string]bool{}
	for _, p := range present {
		if g.r.IntN(6) == 0 {
			del[p] = true
		}
	}
	for i := range n {
		if !del[name(i)] && g.r.IntN(12) == 0 {
			ups = append(ups, mk(i))
		}
	}
	for _, p := range present {
		if del[p] {
			dels = append(dels, p)
		}
	}
	return ups, dels
}

func ids[T any](xs []T, key func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = key(x)
	}
	return out
}

// delta returns a random delta to apply to st.
func (g *gen) delta(st *statev1.PoolState) *statev1.PoolDelta {
	d := &statev1.PoolDelta{}
	if g.r.IntN(40) == 0 {
		// Wipe: the state is discarded, the config kept, some entities follow.
		d.Wipe = true
		st = &statev1.PoolState{}
	}
	if g.r.IntN(8) == 0 {
		d.Config = g.config()
	}
	if g.r.IntN(4) != 0 {
		g.clock += 1 + g.r.Int64N(10_000_000_000)
		d.LastUpdateUnixNanos = proto.Int64(g.clock)
	}
	acct := func(i int) string { return id("acct", i) }
	req := func(i int) string { return id("req", i) }
	bot := func(i int) string { return id("bot", i) }
	d.Balances, d.DeletedBalances = upsertsAndDeletes(g, numAccounts, ids(st.Balances, (*statev1.AccountBalance).GetAccountId), acct, g.balance)
	d.Waiting, d.DeletedWaiting = upsertsAndDeletes(g, numRequests, ids(st.Waiting, (*statev1.Request).GetId), req, g.request)
	d.Workers, d.DeletedWorkers = upsertsAndDeletes(g, numWorkers, ids(st.Workers, (*statev1.Worker).GetId), bot, g.worker)
	d.Tombstones, d.DeletedTombstones = upsertsAndDeletes(g, numRequests, ids(st.Tombstones, (*statev1.Tombstone).GetRequestId), req, g.tombstone)
	d.Pending, d.DeletedPending = upsertsAndDeletes(g, numWorkers, ids(st.Pending, (*statev1.PendingAssignment).GetWorkerId), bot, g.pending)
	d.TaskErrors, d.DeletedTaskErrors = upsertsAndDeletes(g, numRequests, ids(st.TaskErrors, (*statev1.TaskError).GetTaskId), req, g.taskError)
	return d
}
