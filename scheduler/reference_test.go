package scheduler

// Naive reference implementation of one scheduling pass and of UpdateTime,
// written straight from algorithm.md §2.1–§2.7 and the decisions in
// docs/design.md ("Decisions where the rules are silent"). It is the
// oracle the property tests compare the indexed implementation against, so it
// is deliberately simple: every question ("is this request still waiting?",
// "how many tasks of this fanout group run at a paid level?", "is this
// account banned?") is answered by scanning the current state, and nothing is
// cached. It shares no code with the real implementation.
//
// Interpretations chosen where the texts leave room (the fast implementation
// must agree):
//   - The account id "" (accountless) is never configured, even if the
//     config map had a "" key.
//   - UpdateTime writes a balance entry (5 values) for every configured
//     account, creating a zero-based one where none existed, even when t
//     equals the clock; it deletes entries of unconfigured accounts.
//     cap = float64(charge_rate[p]) * float64(max_charge_seconds) in float64.
//   - Tombstones: dropped when T - finish > tombstone_ttl (exactly equal is
//     kept, as for workers); then, ordered by (finish, request id) ascending,
//     the first len-max_tombstones are dropped. An explicit max_tombstones <= 0
//     keeps none.
//   - The two "nothing to do" cases of UpdateTime (clock unset, t before the
//     clock) return a plain clone (clock set in the first case) without
//     sorting or padding anything. Otherwise the result's lists are sorted.
//   - A pass refunds a victim's cost to its account when that account is
//     configured, creating its balance entry if missing; it creates the
//     preemptor account's entry if missing. Other balance entries are kept
//     (padded to 5 values); the pass deletes none.
//   - max_fanout <= 0 means unlimited. Per-label limit keys are the text
//     before the first ':' of a worker label; labels without ':' are never
//     limited. Limits of unconfigured accounts do not exist.
//   - Promotion is gated by fanout only (when the task is at FreeBucket);
//     per-label limits do not gate promotion (the task does not move).
//   - Step c's configured-account loop covers every configured account (a
//     missing balance entry is zero), in id order.

import (
	"math"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
)

// refAssignment is one assignment made by a pass, in the order made.
type refAssignment struct {
	Worker   string
	Request  string
	Priority int    // 0..4 paid, 5 FreeBucket
	Aborted  string // request id of the preempted victim; "" for a plain assignment
}

const (
	refFreeBucket = 5
	refLevels     = 5
)

// refVec is a balance or cost vector.
type refVec [refLevels]float64

func refVecOf(v []float64) refVec {
	var out refVec
	for i := 0; i < len(v) && i < refLevels; i++ {
		out[i] = v[i]
	}
	return out
}

func (v refVec) slice() []float64 {
	out := make([]float64, refLevels)
	copy(out, v[:])
	return out
}

// refLess is lexicographic vector order; equal vectors are not Less.
func refLess(a, b refVec) bool {
	for i := 0; i < refLevels; i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// refCurrentCost is a running task's cost at clock T.
func refCurrentCost(rt *statev1.RunningTask, T int64) refVec {
	c := refVecOf(rt.GetCost())
	p := rt.GetPriority()
	if p >= 0 && p < refLevels {
		elapsed := float64(float64(T-rt.GetLevelSinceUnixNanos()) / 1e9)
		c[p] = float64(c[p] + elapsed)
	}
	return c
}

// ---- configuration -------------------------------------------------------

type refTunables struct {
	botExpiration int64
	promote       float64
	demote        float64
	tombstoneTTL  int64
	maxTombstones int64
}

func refGetTunables(cfg *statev1.PoolConfig) refTunables {
	t := refTunables{
		botExpiration: 300 * 1e9,
		promote:       600,
		demote:        -600,
		tombstoneTTL:  10 * 60 * 1e9,
		maxTombstones: 200000,
	}
	if cfg == nil {
		return t
	}
	if cfg.BotExpirationNanos != nil {
		t.botExpiration = *cfg.BotExpirationNanos
	}
	if cfg.PromoteThreshold != nil {
		t.promote = float64(*cfg.PromoteThreshold)
	}
	if cfg.DemoteThreshold != nil {
		t.demote = float64(*cfg.DemoteThreshold)
	}
	if cfg.TombstoneTtlNanos != nil {
		t.tombstoneTTL = *cfg.TombstoneTtlNanos
	}
	if cfg.MaxTombstones != nil {
		t.maxTombstones = int64(*cfg.MaxTombstones)
	}
	return t
}

// refAccount returns the config of account id, nil if it has none.
func refAccount(cfg *statev1.PoolConfig, id string) *statev1.AccountConfig {
	if id == "" {
		return nil
	}
	return cfg.GetAccountConfigs()[id]
}

func refRate(ac *statev1.AccountConfig, p int) float64 {
	r := ac.GetChargeRate()
	if p < len(r) {
		return float64(r[p])
	}
	return 0
}

// refConfiguredAccounts lists the configured account ids in bytewise order.
func refConfiguredAccounts(cfg *statev1.PoolConfig) []string {
	var ids []string
	for id := range cfg.GetAccountConfigs() {
		if id != "" {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// ---- labels --------------------------------------------------------------

func refContains(set []string, s string) bool {
	for _, x := range set {
		if x == s {
			return true
		}
	}
	return false
}

// refHasAll reports have ⊇ need.
func refHasAll(have, need []string) bool {
	for _, n := range need {
		if !refContains(have, n) {
			return false
		}
	}
	return true
}

func refSortedCopy(a []string) []string {
	out := append([]string(nil), a...)
	sort.Strings(out)
	return out
}

func refSameStrings(a, b []string) bool {
	a, b = refSortedCopy(a), refSortedCopy(b)
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// refUnion is the sorted, duplicate-free union of a and b.
func refUnion(a, b []string) []string {
	var out []string
	for _, s := range append(append([]string(nil), a...), b...) {
		if !refContains(out, s) {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func refSameClass(a, b *statev1.Request) bool {
	return a.GetAccountId() == b.GetAccountId() &&
		refSameStrings(a.GetBaseLabels(), b.GetBaseLabels()) &&
		refSameStrings(a.GetProvisionableLabels(), b.GetProvisionableLabels())
}

func refSameFanoutGroup(a, b *statev1.Request) bool {
	return a.GetAccountId() == b.GetAccountId() &&
		refSameStrings(refUnion(a.GetBaseLabels(), a.GetProvisionableLabels()),
			refUnion(b.GetBaseLabels(), b.GetProvisionableLabels()))
}

// ---- ordering ------------------------------------------------------------

func refFIFOLess(a, b *statev1.Request) bool {
	if a.GetEnqueueTimeUnixNanos() != b.GetEnqueueTimeUnixNanos() {
		return a.GetEnqueueTimeUnixNanos() < b.GetEnqueueTimeUnixNanos()
	}
	return a.GetId() < b.GetId()
}

func refSortState(st *statev1.PoolState) {
	sort.SliceStable(st.Balances, func(i, j int) bool { return st.Balances[i].GetAccountId() < st.Balances[j].GetAccountId() })
	sort.SliceStable(st.Waiting, func(i, j int) bool { return st.Waiting[i].GetId() < st.Waiting[j].GetId() })
	sort.SliceStable(st.Workers, func(i, j int) bool { return st.Workers[i].GetId() < st.Workers[j].GetId() })
	sort.SliceStable(st.Tombstones, func(i, j int) bool { return st.Tombstones[i].GetRequestId() < st.Tombstones[j].GetRequestId() })
	sort.SliceStable(st.Pending, func(i, j int) bool { return st.Pending[i].GetWorkerId() < st.Pending[j].GetWorkerId() })
	sort.SliceStable(st.TaskErrors, func(i, j int) bool { return st.TaskErrors[i].GetTaskId() < st.TaskErrors[j].GetTaskId() })
}

// ---- balances ------------------------------------------------------------

// refBalances reads the balance list into a map (first entry per account wins).
func refBalances(st *statev1.PoolState) map[string]refVec {
	m := map[string]refVec{}
	for _, b := range st.GetBalances() {
		if _, ok := m[b.GetAccountId()]; !ok {
			m[b.GetAccountId()] = refVecOf(b.GetValue())
		}
	}
	return m
}

// refWriteBalances replaces the balance list with m, sorted by account id.
func refWriteBalances(st *statev1.PoolState, m map[string]refVec) {
	var ids []string
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	st.Balances = nil
	for _, id := range ids {
		st.Balances = append(st.Balances, &statev1.AccountBalance{AccountId: id, Value: m[id].slice()})
	}
}

// ---- UpdateTime ----------------------------------------------------------

// refUpdateTime applies algorithm.md §2.1 UpdateTime(t) to a deep copy of st
// and returns it: balances (using the running task counts per account and
// paid level), deleting balances of accounts without config, setting the
// clock, forgetting expired idle workers, and dropping tombstones older than
// tombstone_ttl and the oldest beyond max_tombstones (by finish time, ties by
// request id). Costs are derived (see design.md), so running tasks' records do
// not change. If the clock is unset it just sets it. If t is before the clock,
// it returns an unchanged copy.
func refUpdateTime(st *statev1.PoolState, t int64) *statev1.PoolState {
	ns := proto.Clone(st).(*statev1.PoolState)
	if ns.LastUpdateUnixNanos == nil {
		ns.LastUpdateUnixNanos = proto.Int64(t)
		return ns
	}
	last := *ns.LastUpdateUnixNanos
	if t < last {
		return ns
	}
	refSortState(ns)
	cfg := ns.GetConfig()
	tun := refGetTunables(cfg)
	e := float64(float64(t-last) / 1e9)

	// 1. Running counts per account and paid level.
	running := map[string]*[refLevels]int{}
	for _, w := range ns.Workers {
		rt := w.GetRunning()
		if rt == nil {
			continue
		}
		p := rt.GetPriority()
		if p < 0 || p >= refLevels {
			continue
		}
		a := rt.GetRequest().GetAccountId()
		if running[a] == nil {
			running[a] = &[refLevels]int{}
		}
		running[a][p]++
	}

	// 2. + 3. Balances: only configured accounts keep (or get) an entry.
	old := refBalances(ns)
	nb := map[string]refVec{}
	for _, a := range refConfiguredAccounts(cfg) {
		ac := refAccount(cfg, a)
		v := old[a] // zero when missing
		for p := 0; p < refLevels; p++ {
			n := 0
			if running[a] != nil {
				n = running[a][p]
			}
			rate := refRate(ac, p)
			x := float64(v[p] - float64(e*float64(n)))
			limit := float64(rate * float64(ac.GetMaxChargeSeconds()))
			if x < limit {
				x = float64(x + float64(e*rate))
				if x > limit {
					x = limit
				}
			}
			v[p] = x
		}
		nb[a] = v
	}
	refWriteBalances(ns, nb)

	// 4. Clock.
	ns.LastUpdateUnixNanos = proto.Int64(t)

	// 5. Expired idle workers.
	var workers []*statev1.Worker
	for _, w := range ns.Workers {
		if w.GetRunning() == nil && t-w.GetConfirmedTimeUnixNanos() > tun.botExpiration {
			continue
		}
		workers = append(workers, w)
	}
	ns.Workers = workers

	// Tombstones: by age, then by count (oldest first, ties by request id).
	var tombs []*statev1.Tombstone
	for _, tb := range ns.Tombstones {
		if t-tb.GetFinishTimeUnixNanos() > tun.tombstoneTTL {
			continue
		}
		tombs = append(tombs, tb)
	}
	keep := tun.maxTombstones
	if keep < 0 {
		keep = 0
	}
	if int64(len(tombs)) > keep {
		sort.SliceStable(tombs, func(i, j int) bool {
			if tombs[i].GetFinishTimeUnixNanos() != tombs[j].GetFinishTimeUnixNanos() {
				return tombs[i].GetFinishTimeUnixNanos() < tombs[j].GetFinishTimeUnixNanos()
			}
			return tombs[i].GetRequestId() < tombs[j].GetRequestId()
		})
		tombs = tombs[int64(len(tombs))-keep:]
	}
	ns.Tombstones = tombs
	refSortState(ns)
	return ns
}

// ---- RunOnce -------------------------------------------------------------

type refPass struct {
	st      *statev1.PoolState
	cfg     *statev1.PoolConfig
	tun     refTunables
	T       int64
	bal     map[string]refVec
	blocked []*statev1.Request // one representative per blocked class
	taken   map[string]bool    // victim worker ids preempted in this pass
	out     []refAssignment
}

// refRunOnce performs one scheduling pass (algorithm.md §2.4–§2.7 with the
// design.md decisions) at the state's clock T = *st.LastUpdateUnixNanos, on a
// deep copy of st, and returns the new state and the assignments in the order made.
// st is not modified. If the clock is unset it returns a copy and no assignments.
func refRunOnce(st *statev1.PoolState) (*statev1.PoolState, []refAssignment) {
	ns := proto.Clone(st).(*statev1.PoolState)
	if ns.LastUpdateUnixNanos == nil {
		return ns, nil
	}
	refSortState(ns) // workers in id order from here on
	r := &refPass{
		st:    ns,
		cfg:   ns.GetConfig(),
		tun:   refGetTunables(ns.GetConfig()),
		T:     *ns.LastUpdateUnixNanos,
		bal:   refBalances(ns),
		taken: map[string]bool{},
	}

	// 1.-2. Candidate lists, from the balances at the start of the pass.
	var lists [refFreeBucket + 1][]*statev1.Request
	fifo := append([]*statev1.Request(nil), ns.Waiting...)
	sort.SliceStable(fifo, func(i, j int) bool { return refFIFOLess(fifo[i], fifo[j]) })
	for _, req := range fifo {
		p := r.priority(req.GetAccountId())
		ac := refAccount(r.cfg, req.GetAccountId())
		if p < refFreeBucket && !r.fanoutAllows(req) {
			if ac.GetDisableFreeTasks() {
				continue
			}
			lists[refFreeBucket] = append(lists[refFreeBucket], req)
			continue
		}
		if p == refFreeBucket && ac.GetDisableFreeTasks() {
			continue
		}
		lists[p] = append(lists[p], req)
	}

	// 4. Paid levels.
	for p := 0; p < refLevels; p++ {
		r.subPass(lists[p], p, true)
		r.subPass(lists[p], p, false)
		r.reprioritize(p)
		if !r.cfg.GetDisablePreemption() {
			r.preempt(lists[p], p)
		}
	}

	// FreeBucket pass: L[5] plus every still-waiting request of a blocked
	// class whose account allows free tasks, in FIFO order, each once.
	var free []*statev1.Request
	for _, req := range fifo {
		if !r.isWaiting(req.GetId()) {
			continue
		}
		inL5 := false
		for _, x := range lists[refFreeBucket] {
			if x.GetId() == req.GetId() {
				inL5 = true
			}
		}
		if inL5 || (r.isBlocked(req) && !refAccount(r.cfg, req.GetAccountId()).GetDisableFreeTasks()) {
			free = append(free, req)
		}
	}
	r.subPass(free, refFreeBucket, true)
	r.subPass(free, refFreeBucket, false)

	refWriteBalances(ns, r.bal)
	refSortState(ns)
	return ns, r.out
}

// priority of an account's waiting requests (algorithm.md §2.2).
func (r *refPass) priority(account string) int {
	if refAccount(r.cfg, account) == nil {
		return refFreeBucket
	}
	b := r.bal[account]
	for p := 0; p < refLevels; p++ {
		if b[p] > 0 {
			return p
		}
	}
	return refFreeBucket
}

func (r *refPass) isWaiting(id string) bool {
	for _, w := range r.st.Waiting {
		if w.GetId() == id {
			return true
		}
	}
	return false
}

func (r *refPass) removeWaiting(id string) {
	var keep []*statev1.Request
	for _, w := range r.st.Waiting {
		if w.GetId() != id {
			keep = append(keep, w)
		}
	}
	r.st.Waiting = keep
}

func (r *refPass) block(req *statev1.Request) {
	if !r.isBlocked(req) {
		r.blocked = append(r.blocked, req)
	}
}

func (r *refPass) isBlocked(req *statev1.Request) bool {
	for _, b := range r.blocked {
		if refSameClass(b, req) {
			return true
		}
	}
	return false
}

// fanoutAllows reports whether one more task of req's fanout group may run at
// a paid level, counting every task of the group running at a paid level now.
func (r *refPass) fanoutAllows(req *statev1.Request) bool {
	ac := refAccount(r.cfg, req.GetAccountId())
	if ac.GetMaxFanout() <= 0 {
		return true
	}
	n := 0
	for _, w := range r.st.Workers {
		rt := w.GetRunning()
		if rt != nil && rt.GetPriority() < refFreeBucket && refSameFanoutGroup(rt.GetRequest(), req) {
			n++
		}
	}
	return n < int(ac.GetMaxFanout())
}

// labelsAllow reports whether the per-label limits let a task of account
// start on worker w.
func (r *refPass) labelsAllow(account string, w *statev1.Worker) bool {
	limits := refAccount(r.cfg, account).GetPerLabelTaskLimits()
	for _, l := range w.GetLabels() {
		i := strings.IndexByte(l, ':')
		if i < 0 {
			continue
		}
		limit, ok := limits[l[:i]]
		if !ok {
			continue
		}
		n := 0
		for _, o := range r.st.Workers {
			if o.GetRunning() != nil && o.GetRunning().GetRequest().GetAccountId() == account && refContains(o.GetLabels(), l) {
				n++
			}
		}
		if n >= int(limit) {
			return false
		}
	}
	return true
}

// limitsAllow reports whether req may start on w at level p.
func (r *refPass) limitsAllow(req *statev1.Request, w *statev1.Worker, p int) bool {
	if p < refFreeBucket && !r.fanoutAllows(req) {
		return false
	}
	return r.labelsAllow(req.GetAccountId(), w)
}

// subPass is sub-pass a (provision) or b (any label) over list at level p.
func (r *refPass) subPass(list []*statev1.Request, p int, provision bool) {
	for _, w := range r.st.Workers {
		if w.GetRunning() != nil {
			continue
		}
		var cands []*statev1.Request
		for _, req := range list {
			if !r.isWaiting(req.GetId()) || !refHasAll(w.GetLabels(), req.GetBaseLabels()) {
				continue
			}
			if provision && !refHasAll(w.GetLabels(), req.GetProvisionableLabels()) {
				continue
			}
			cands = append(cands, req)
		}
		sort.SliceStable(cands, func(i, j int) bool {
			if len(cands[i].GetBaseLabels()) != len(cands[j].GetBaseLabels()) {
				return len(cands[i].GetBaseLabels()) > len(cands[j].GetBaseLabels())
			}
			return refFIFOLess(cands[i], cands[j])
		})
		for _, req := range cands {
			if r.limitsAllow(req, w, p) {
				r.removeWaiting(req.GetId())
				w.Running = &statev1.RunningTask{
					Request:             req,
					Priority:            int32(p),
					Cost:                make([]float64, refLevels),
					LevelSinceUnixNanos: r.T,
				}
				r.out = append(r.out, refAssignment{Worker: w.GetId(), Request: req.GetId(), Priority: p})
				break
			}
			r.block(req)
		}
	}
}

// setLevel moves a running task to level q at T, storing its current cost.
func (r *refPass) setLevel(rt *statev1.RunningTask, q int) {
	c := refCurrentCost(rt, r.T)
	rt.Cost = c.slice()
	rt.Priority = int32(q)
	rt.LevelSinceUnixNanos = r.T
}

// reprioritize is step c at level p (algorithm.md §2.5).
func (r *refPass) reprioritize(p int) {
	// Tasks of unconfigured accounts at paid levels go to FreeBucket.
	var unconf []*statev1.RunningTask
	for _, w := range r.st.Workers {
		rt := w.GetRunning()
		if rt != nil && rt.GetPriority() < refFreeBucket && refAccount(r.cfg, rt.GetRequest().GetAccountId()) == nil {
			unconf = append(unconf, rt)
		}
	}
	sort.SliceStable(unconf, func(i, j int) bool { return unconf[i].GetRequest().GetId() < unconf[j].GetRequest().GetId() })
	for _, rt := range unconf {
		r.setLevel(rt, refFreeBucket)
	}

	for _, a := range refConfiguredAccounts(r.cfg) {
		ac := refAccount(r.cfg, a)
		b := r.bal[a][p]
		var atP, below []*statev1.RunningTask
		for _, w := range r.st.Workers {
			rt := w.GetRunning()
			if rt == nil || rt.GetRequest().GetAccountId() != a {
				continue
			}
			if int(rt.GetPriority()) == p {
				atP = append(atP, rt)
			} else if int(rt.GetPriority()) > p {
				below = append(below, rt)
			}
		}
		n := len(atP)
		net := float64(refRate(ac, p) - float64(n))
		switch {
		case b < r.tun.demote && net < 0:
			k := refMinCeil(len(atP), -net)
			sort.SliceStable(atP, func(i, j int) bool {
				ci, cj := refCurrentCost(atP[i], r.T), refCurrentCost(atP[j], r.T)
				if refLess(ci, cj) {
					return true
				}
				if refLess(cj, ci) {
					return false
				}
				return atP[i].GetRequest().GetId() < atP[j].GetRequest().GetId()
			})
			for _, rt := range atP[:k] {
				r.setLevel(rt, p+1) // from P4: FreeBucket
			}
		case b > r.tun.promote && net > 0:
			k := refMinCeil(len(below), net)
			sort.SliceStable(below, func(i, j int) bool {
				ci, cj := refCurrentCost(below[i], r.T), refCurrentCost(below[j], r.T)
				if refLess(cj, ci) {
					return true
				}
				if refLess(ci, cj) {
					return false
				}
				return below[i].GetRequest().GetId() < below[j].GetRequest().GetId()
			})
			moved := 0
			for _, rt := range below {
				if moved == k {
					break
				}
				if rt.GetPriority() == refFreeBucket && !r.fanoutAllows(rt.GetRequest()) {
					continue
				}
				r.setLevel(rt, p)
				moved++
			}
		}
	}
}

// refMinCeil is min(n, ceil(x)) for x > 0.
func refMinCeil(n int, x float64) int {
	c := math.Ceil(x)
	if c < float64(n) {
		return int(c)
	}
	return n
}

// banned reports whether account has a task running below level p.
func (r *refPass) banned(account string, p int) bool {
	for _, w := range r.st.Workers {
		rt := w.GetRunning()
		if rt != nil && rt.GetRequest().GetAccountId() == account && int(rt.GetPriority()) > p {
			return true
		}
	}
	return false
}

// preempt is step d at level p (algorithm.md §2.6).
func (r *refPass) preempt(list []*statev1.Request, p int) {
	var victims []*statev1.Worker
	for _, w := range r.st.Workers {
		if rt := w.GetRunning(); rt != nil && int(rt.GetPriority()) > p && !r.taken[w.GetId()] {
			victims = append(victims, w)
		}
	}
	sort.SliceStable(victims, func(i, j int) bool {
		ci, cj := refCurrentCost(victims[i].GetRunning(), r.T), refCurrentCost(victims[j].GetRunning(), r.T)
		if refLess(ci, cj) {
			return true
		}
		if refLess(cj, ci) {
			return false
		}
		return victims[i].GetId() < victims[j].GetId()
	})

	for _, req := range list {
		if !r.isWaiting(req.GetId()) {
			continue
		}
		a := req.GetAccountId()
		if refAccount(r.cfg, a) == nil || r.banned(a, p) {
			continue
		}
		balance := r.bal[a]
		var cands []*statev1.Worker
		refusedByLimit := false
		for _, v := range victims {
			if r.taken[v.GetId()] || !refHasAll(v.GetLabels(), req.GetBaseLabels()) {
				continue
			}
			if !refLess(refCurrentCost(v.GetRunning(), r.T), balance) {
				continue
			}
			if !r.limitsAllow(req, v, p) {
				refusedByLimit = true
				continue
			}
			cands = append(cands, v)
		}
		if len(cands) == 0 {
			if refusedByLimit {
				r.block(req)
			}
			continue
		}
		chosen := cands[0]
		for _, v := range cands {
			if refHasAll(v.GetLabels(), req.GetProvisionableLabels()) {
				chosen = v
				break
			}
		}

		victim := chosen.GetRunning()
		c := refCurrentCost(victim, r.T)
		va := victim.GetRequest().GetAccountId()
		if refAccount(r.cfg, va) != nil {
			vb := r.bal[va]
			for i := range vb {
				vb[i] = float64(vb[i] + c[i])
			}
			r.bal[va] = vb
		}
		pb := r.bal[a]
		for i := range pb {
			pb[i] = float64(pb[i] - c[i])
		}
		r.bal[a] = pb

		r.removeWaiting(req.GetId())
		chosen.Running = &statev1.RunningTask{
			Request:             req,
			Priority:            int32(p),
			Cost:                c.slice(),
			LevelSinceUnixNanos: r.T,
		}
		r.taken[chosen.GetId()] = true
		r.out = append(r.out, refAssignment{
			Worker:   chosen.GetId(),
			Request:  req.GetId(),
			Priority: p,
			Aborted:  victim.GetRequest().GetId(),
		})
	}
}
