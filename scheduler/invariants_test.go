package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"pgregory.net/rapid"
)

// checkIndexes recomputes every counter and index from the entities and
// compares: running lists, label and fanout counts, classes, the trie, the
// idle heap, the waiting count, the orders by confirmed time once settled
// and what View and Callbacks read from them (checkViews).
func (s *Scheduler) checkIndexes() error { return s.checkIndexesSettling(true) }

// checkIndexesSettling is checkIndexes, which settles the orders by
// confirmed time and checks them only when settle is true.
func (s *Scheduler) checkIndexesSettling(settle bool) error {
	if err := s.checkKeptEligibility(); err != nil {
		return err
	}
	if settle {
		if err := s.checkViews(); err != nil {
			return err
		}
	}
	if err := s.checkWorkerRanks(); err != nil {
		return err
	}
	if err := s.checkLabelUse(); err != nil {
		return err
	}
	if err := s.checkRefs(); err != nil {
		return err
	}
	if err := s.checkTombstonesAndEntries(); err != nil {
		return err
	}
	type gk struct {
		a   AccountID
		fan string
	}
	paid := map[gk]int32{}
	labels := map[AccountID]map[labelID]int32{}
	running := map[AccountID][NumPaidLevels + 1]int{}
	idle := 0
	for id, w := range s.workers {
		if w.id != id {
			return fmt.Errorf("worker %s filed under %s", w.id, id)
		}
		if w.req == nil {
			idle++
			if w.idleIdx < 0 || s.idle.Items[w.idleIdx] != w {
				return fmt.Errorf("idle worker %s not in the idle heap", id)
			}
			if w.idleKey > w.confirmed {
				return fmt.Errorf("idle worker %s keyed at %d, after its confirmed time %d", id, w.idleKey, w.confirmed)
			}
			if i := w.idleIdx; i > 0 && s.idle.Less(w, s.idle.Items[(i-1)/2]) {
				return fmt.Errorf("idle worker %s precedes its parent in the idle heap", id)
			}
			continue
		}
		r := w.req
		if r.w != w || r.cls != nil || s.requests.Get(r.id) != r {
			return fmt.Errorf("running request %s inconsistent", r.id)
		}
		a := r.acct
		if a.running[w.level][w.levelIdx] != w {
			return fmt.Errorf("worker %s not at its place in %s's running[%d]", id, a.id, w.level)
		}
		rc := running[a.id]
		rc[w.level]++
		running[a.id] = rc
		if labels[a.id] == nil {
			labels[a.id] = map[labelID]int32{}
		}
		for _, l := range w.labelIDs {
			if _, limited := a.limits[s.labels.keys[l]]; limited {
				labels[a.id][l]++
			}
		}
		if w.level < FreeBucket && a.maxFanout > 0 {
			paid[gk{a.id, r.fan.key}]++
		}
	}
	if idle != s.idle.Len() {
		return fmt.Errorf("%d idle workers, idle heap has %d", idle, s.idle.Len())
	}
	waiting := 0
	perAcct := map[AccountID]int{}
	var reqs []*request
	count := 0
	var misfiled error
	s.requests.All(func(r *request) {
		switch {
		case r.hash != s.requests.Hash(r.id):
			misfiled = fmt.Errorf("request %s keeps hash %x, not its id's", r.id, r.hash)
		case s.requests.Lookup(r.hash, r.id) != r || s.requests.Get(r.id) != r:
			misfiled = fmt.Errorf("request %s not found by its id", r.id)
		}
		reqs = append(reqs, r)
		count++
	})
	if misfiled != nil {
		return misfiled
	}
	if count != s.requests.Len() {
		return fmt.Errorf("request index holds %d requests, counts %d", count, s.requests.Len())
	}
	for _, r := range reqs {
		id := r.id
		if r.cls == nil {
			if r.w == nil {
				return fmt.Errorf("request %s neither waiting nor running", id)
			}
			continue
		}
		waiting++
		perAcct[r.acct.id]++
		c := r.cls
		if c.acct != r.acct || c.base != r.base || c.prov != r.prov || s.classes[classKey{c.acct, c.base, c.prov}] != c {
			return fmt.Errorf("request %s in the wrong class", id)
		}
		if i, ok := slices.BinarySearchFunc(c.queue[c.start:], r, cmpEntry); !ok || c.queue[c.start+i].r != r {
			return fmt.Errorf("request %s missing from its class queue", id)
		}
		if c.acctBase.byHead.Items[c.heapIdx] != c {
			return fmt.Errorf("class of %s not in its heap", id)
		}
		if c.base.base == nil || c.base.base.node == nil || c.base.base.node.bi != c.base.base {
			return fmt.Errorf("base set of %s not in the trie", id)
		}
	}
	if waiting != s.nWaiting {
		return fmt.Errorf("%d waiting requests, counter says %d", waiting, s.nWaiting)
	}
	for _, c := range s.gcClasses[s.gcHead:] {
		if !c.onGCList || s.classes[classKey{c.acct, c.base, c.prov}] != c {
			return fmt.Errorf("class of %s %v %v queued for gc is not a class of the state", c.acct.id, c.base.names, c.prov.names)
		}
	}
	for key, c := range s.classes {
		if s.accounts[c.acct.id] != c.acct {
			return fmt.Errorf("class %v: its account is not the state's", key)
		}
		if bi := c.acctBase.bi; bi != c.base.base || bi.node == nil || bi.node.bi != bi || c.variant.bi != bi {
			return fmt.Errorf("class %v: its base index is not its base set's, in the trie", key)
		}
		for n := c.acctBase.bi.node; n.parent != nil; n = n.parent {
			if !slices.Contains(n.parent.kids, n) {
				return fmt.Errorf("class %v: its base index's trie node is cut off", key)
			}
		}
		if c.acctBase.bi.accts[c.acctBase.idx] != c.acctBase || c.variant.bi.provs[c.variant.idx] != c.variant || c.variant.classes[c.variantIdx] != c {
			return fmt.Errorf("class %v: not at its place in its base index", key)
		}
		if c.len() == 0 && !c.onGCList {
			return fmt.Errorf("empty class %v is not queued for gc", key)
		}
		if !slices.IsSortedFunc(c.queue[c.start:], func(a, b queueEntry) int { return cmpFIFO(a.r, b.r) }) {
			return fmt.Errorf("class queue out of FIFO order")
		}
		for _, e := range c.queue[c.start:] {
			if e.enq != e.r.enqueue {
				return fmt.Errorf("class queue holds enqueue time %d for %s, enqueued at %d", e.enq, e.r.id, e.r.enqueue)
			}
		}
	}
	for id, a := range s.accounts {
		if a.waiting != perAcct[id] {
			return fmt.Errorf("account %s: waiting = %d, want %d", id, a.waiting, perAcct[id])
		}
		for l := range a.running {
			if len(a.running[l]) != running[id][l] {
				return fmt.Errorf("account %s: running[%d] = %d, want %d", id, l, len(a.running[l]), running[id][l])
			}
		}
		for l, n := range a.labelCount {
			if labels[id][l] != n {
				return fmt.Errorf("account %s: label %s count %d, want %d", id, s.labels.names[l], n, labels[id][l])
			}
		}
		for l, n := range labels[id] {
			if a.labelCount[l] != n {
				return fmt.Errorf("account %s: label %s count %d, want %d", id, s.labels.names[l], a.labelCount[l], n)
			}
		}
		if a.maxFanout <= 0 && len(a.fanout) > 0 {
			return fmt.Errorf("account %s without max_fanout has fanout groups", id)
		}
		for fan, g := range a.fanout {
			if g.paid != paid[gk{id, fan.key}] {
				return fmt.Errorf("account %s: fanout %v = %d, want %d", id, fan.names, g.paid, paid[gk{id, fan.key}])
			}
		}
		for k, n := range paid {
			if k.a != id || n == 0 {
				continue
			}
			found := false
			for fan, g := range a.fanout {
				if fan.key == k.fan && g.paid == n {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("account %s: fanout group with %d paid tasks missing", id, n)
			}
		}
		if a.cfg != nil && !a.hasBalance {
			return fmt.Errorf("configured account %s has no balance", id)
		}
	}
	return nil
}

// drawRowMode draws how the eligibility rows are laid out (trie.go): by
// density as in production, or all dense or all sparse, so that small
// random states take every path of the walk and of the provision-match
// queries, which must not change any decision.
func drawRowMode(t *rapid.T, name string) rowMode {
	return rapid.SampledFrom([]rowMode{rowsByDensity, rowsAllDense, rowsAllSparse}).Draw(t, name)
}

// checkLabelUse: the labels' counts of base sets in the trie and of
// provisionable sets of provVariants (labelTable.inTrie, inProv) are
// exact.
func (s *Scheduler) checkLabelUse() error {
	inTrie := make([]int32, len(s.labels.names))
	inProv := make([]int32, len(s.labels.names))
	var walk func(n *trieNode)
	walk = func(n *trieNode) {
		if bi := n.bi; bi != nil {
			for _, l := range bi.set.ids {
				inTrie[l]++
			}
			for _, pv := range bi.provs {
				for _, l := range pv.prov.ids {
					inProv[l]++
				}
			}
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(&s.trie)
	for l := range inTrie {
		if s.labels.inTrie[l] != inTrie[l] || s.labels.inProv[l] != inProv[l] {
			return fmt.Errorf("label %q counted in %d base sets and %d provisionable sets, is in %d and %d",
				s.labels.names[l], s.labels.inTrie[l], s.labels.inProv[l], inTrie[l], inProv[l])
		}
	}
	return nil
}

// checkRefs: every interned label set is counted once per holder
// (requests, classes, base indexes, provisionable variants, fanout
// groups) and is in the set table, and every label once per worker and
// set holding it.
func (s *Scheduler) checkRefs() error {
	sets := map[*labelSet]int{}
	s.requests.All(func(r *request) {
		sets[r.base]++
		sets[r.prov]++
		sets[r.fan]++
	})
	for _, c := range s.classes {
		sets[c.base]++
		sets[c.prov]++
		sets[c.fan]++
	}
	var walk func(n *trieNode)
	walk = func(n *trieNode) {
		if bi := n.bi; bi != nil {
			sets[bi.set]++
			for _, pv := range bi.provs {
				sets[pv.prov]++
			}
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(&s.trie)
	for _, a := range s.accounts {
		for fan := range a.fanout {
			sets[fan]++
		}
	}
	labels := make([]int32, len(s.labels.names))
	for _, w := range s.workers {
		for _, l := range w.labelIDs {
			labels[l]++
		}
	}
	for set, n := range sets {
		if set == s.sets.empty {
			continue
		}
		if set.refs != n {
			return fmt.Errorf("label set %v has %d references, holders %d", set.names, set.refs, n)
		}
		if s.sets.sets[set.key] != set {
			return fmt.Errorf("label set %v is not in the set table", set.names)
		}
	}
	for _, set := range s.sets.sets {
		if _, held := sets[set]; !held && set != s.sets.empty {
			return fmt.Errorf("label set %v is held by nothing", set.names)
		}
		for _, l := range set.ids {
			labels[l]++
		}
	}
	for l, n := range labels {
		if s.labels.refs[l] != n {
			return fmt.Errorf("label %q has %d references, holders %d", s.labels.names[l], s.labels.refs[l], n)
		}
	}
	return nil
}

// checkTombstonesAndEntries: the tombstones' heap and the reconciler's
// indexes (by time, by aborted task) hold exactly the tombstones and
// entries, each at its place; no tombstone names a request in the state.
func (s *Scheduler) checkTombstonesAndEntries() error {
	t := &s.tombstones
	if len(t.byID) != t.byFinish.Len() {
		return fmt.Errorf("%d tombstones, %d in their heap", len(t.byID), t.byFinish.Len())
	}
	for i, x := range t.byFinish.Items {
		if x.idx != i || t.byID[x.id] != x {
			return fmt.Errorf("tombstone %s misfiled", x.id)
		}
		if i > 0 && t.byFinish.Less(x, t.byFinish.Items[(i-1)/2]) {
			return fmt.Errorf("tombstone %s precedes its parent", x.id)
		}
		if s.requests.Get(x.id) != nil {
			return fmt.Errorf("tombstone of %s, which is in the state", x.id)
		}
	}
	rc := &s.reconciler
	if len(rc.entries) != rc.byTime.Len() {
		return fmt.Errorf("%d entries, %d in their heap", len(rc.entries), rc.byTime.Len())
	}
	aborting := map[RequestID][]WorkerID{}
	for i, e := range rc.byTime.Items {
		if e.idx != i || rc.entries[e.worker] != e {
			return fmt.Errorf("entry of %s misfiled", e.worker)
		}
		if i > 0 && rc.byTime.Less(e, rc.byTime.Items[(i-1)/2]) {
			return fmt.Errorf("entry of %s precedes its parent", e.worker)
		}
		if e.abort != "" {
			aborting[e.abort] = append(aborting[e.abort], e.worker)
		}
	}
	for id, ws := range aborting {
		slices.Sort(ws)
		if got := s.aborting(id); !slices.Equal(got, ws) {
			return fmt.Errorf("entries aborting %s: indexed %v, are %v", id, got, ws)
		}
	}
	if len(rc.byAbort) != len(aborting) {
		return fmt.Errorf("%d tasks indexed as aborted, %d are", len(rc.byAbort), len(aborting))
	}
	return nil
}

// invOp is one random operation of the invariant test.
type invOp struct {
	name string
	do   func(s *Scheduler) (any, error)
}

var invLabels = []string{"a:1", "a:2", "b:1", "x"}

func drawOp(t *rapid.T, clock *float64) invOp {
	acct := rapid.SampledFrom([]AccountID{"", "a0", "a1", "a2"}).Draw(t, "acct")
	rid := RequestID(fmt.Sprintf("r%d", rapid.IntRange(0, 9).Draw(t, "rid")))
	wid := WorkerID(fmt.Sprintf("w%d", rapid.IntRange(0, 4).Draw(t, "wid")))
	// Mostly forward, sometimes a stale time.
	*clock += float64(rapid.IntRange(0, 3).Draw(t, "dt"))
	when := at(*clock - float64(rapid.IntRange(0, 1).Draw(t, "stale")*rapid.IntRange(0, 5).Draw(t, "back")))
	labels := func(name string, n int) []string {
		return rapid.SliceOfNDistinct(rapid.SampledFrom(invLabels), 0, n, rapid.ID[string]).Draw(t, name)
	}
	switch rapid.IntRange(0, 9).Draw(t, "op") {
	case 0:
		cfg := acctCfg(float32(rapid.IntRange(1, 20).Draw(t, "window")))
		for range rapid.IntRange(0, 3).Draw(t, "nrates") {
			cfg.ChargeRate = append(cfg.ChargeRate, float32(rapid.IntRange(0, 2).Draw(t, "rate")))
		}
		cfg.MaxFanout = int32(rapid.IntRange(0, 2).Draw(t, "fanout"))
		if rapid.Bool().Draw(t, "limits") {
			cfg.PerLabelTaskLimits = map[string]int32{rapid.SampledFrom([]string{"a", "b"}).Draw(t, "key"): int32(rapid.IntRange(0, 2).Draw(t, "n"))}
		}
		cfg.DisableFreeTasks = rapid.IntRange(0, 3).Draw(t, "nofree") == 0
		bal := []float32{float32(rapid.IntRange(0, 5).Draw(t, "bal0"))}
		if acct == "" {
			acct = "a0"
		}
		return invOp{fmt.Sprintf("add-account %s %v", acct, cfg), func(s *Scheduler) (any, error) { return nil, s.AddAccount(acct, cfg, bal) }}
	case 1:
		return invOp{fmt.Sprintf("delete-account %s", acct), func(s *Scheduler) (any, error) { return nil, s.DeleteAccount(acct) }}
	case 2, 3:
		task := Task{ID: rid, Account: acct, EnqueueTime: at(float64(rapid.IntRange(0, 5).Draw(t, "enq"))), BaseLabels: labels("base", 2), ProvisionableLabels: labels("prov", 1)}
		return invOp{fmt.Sprintf("waiting %v at %v", task, when), func(s *Scheduler) (any, error) {
			return nil, s.Notify(Notification{Kind: NotifyWaiting, Time: when, Task: task}, false)
		}}
	case 4:
		return invOp{fmt.Sprintf("running %s on %s at %v", rid, wid, when), func(s *Scheduler) (any, error) {
			return nil, s.Notify(Notification{Kind: NotifyRunning, Time: when, Task: Task{ID: rid}, Worker: wid}, false)
		}}
	case 5:
		return invOp{fmt.Sprintf("absent %s at %v", rid, when), func(s *Scheduler) (any, error) {
			return nil, s.Notify(Notification{Kind: NotifyAbsent, Time: when, Task: Task{ID: rid}}, false)
		}}
	case 6, 7:
		var bots []IdleWorker
		for _, i := range rapid.SliceOfNDistinct(rapid.IntRange(0, 4), 0, 3, rapid.ID[int]).Draw(t, "bots") {
			bots = append(bots, IdleWorker{ID: WorkerID(fmt.Sprintf("w%d", i)), Labels: labels("wl", 3)})
		}
		return invOp{fmt.Sprintf("assign %v at %v", bots, when), func(s *Scheduler) (any, error) { return s.AssignTasks(when, bots) }}
	case 8:
		if rapid.IntRange(0, 9).Draw(t, "wipe") == 0 {
			return invOp{"wipe", func(s *Scheduler) (any, error) { s.Wipe(); return nil, nil }}
		}
		return invOp{"run", func(s *Scheduler) (any, error) { return decisions(s.runOnce()), nil }}
	default:
		return invOp{fmt.Sprintf("tick %v", when), func(s *Scheduler) (any, error) { return nil, s.UpdateTime(when) }}
	}
}

// limitCheck replays a pass's events against the counts before it and fails
// if any transition the scheduler made (assignment, preemption, promotion from
// FreeBucket) took a group or a label count past its limit.
type limitState struct {
	paid   map[string]int           // account + fanout labels
	labels map[string]int           // account + worker label
	tasks  map[RequestID]*limitTask // running
	cfgs   map[string]*statev1.AccountConfig
}

type limitTask struct {
	acct   string
	fan    string
	labels []string
	level  int32
}

func fanKey(acct string, base, prov []string) string {
	u := append(slices.Clone(base), prov...)
	slices.Sort(u)
	u = slices.Compact(u)
	return acct + "|" + strings.Join(u, ",")
}

func newLimitState(st *statev1.PoolState) *limitState {
	ls := &limitState{paid: map[string]int{}, labels: map[string]int{}, tasks: map[RequestID]*limitTask{}, cfgs: st.Config.AccountConfigs}
	for _, w := range st.Workers {
		if rt := w.Running; rt != nil {
			ls.start(RequestID(rt.Request.Id), rt.Request.AccountId, fanKey(rt.Request.AccountId, rt.Request.BaseLabels, rt.Request.ProvisionableLabels), w.Labels, rt.Priority)
		}
	}
	return ls
}

func (ls *limitState) start(id RequestID, acct, fan string, labels []string, level int32) {
	ls.tasks[id] = &limitTask{acct, fan, labels, level}
	if level < 5 {
		ls.paid[fan]++
	}
	for _, l := range labels {
		ls.labels[acct+"|"+l]++
	}
}

func (ls *limitState) stop(id RequestID) {
	x := ls.tasks[id]
	delete(ls.tasks, id)
	if x.level < 5 {
		ls.paid[x.fan]--
	}
	for _, l := range x.labels {
		ls.labels[x.acct+"|"+l]--
	}
}

func (ls *limitState) check(e Event) error {
	cfg := ls.cfgs[string(e.Account)]
	if cfg == nil || e.Account == "" {
		return nil
	}
	x := ls.tasks[e.Task]
	if cfg.MaxFanout > 0 && x.level < 5 && ls.paid[x.fan] > int(cfg.MaxFanout) {
		return fmt.Errorf("%v of %s took fanout group %s to %d > %d", e.Type, e.Task, x.fan, ls.paid[x.fan], cfg.MaxFanout)
	}
	if e.Type != EventAssigned {
		return nil
	}
	for _, l := range x.labels {
		k, _, ok := strings.Cut(l, ":")
		if n, lim := cfg.PerLabelTaskLimits[k]; ok && lim && ls.labels[x.acct+"|"+l] > int(n) {
			return fmt.Errorf("assignment of %s took %s's label %s to %d > %d", e.Task, x.acct, l, ls.labels[x.acct+"|"+l], n)
		}
	}
	return nil
}

func (ls *limitState) replay(events []Event) error {
	for _, e := range events {
		switch e.Type {
		case EventAssigned:
			if e.Preempting {
				ls.stop(e.PreemptedTask)
			}
			ls.start(e.Task, string(e.Account), fanKey(string(e.Account), e.BaseLabels, e.ProvisionableLabels), e.WorkerLabels, int32(e.Level))
			if err := ls.check(e); err != nil {
				return err
			}
		case EventReprioritized:
			x := ls.tasks[e.Task]
			if x.level < 5 {
				ls.paid[x.fan]--
			}
			x.level = int32(e.Level)
			if x.level < 5 {
				ls.paid[x.fan]++
			}
			if e.OldLevel == FreeBucket && e.Level < FreeBucket {
				if err := ls.check(e); err != nil {
					return err
				}
			}
		case EventCompleted, EventUnassigned:
			if _, ok := ls.tasks[e.Task]; ok {
				ls.stop(e.Task)
			}
		}
	}
	return nil
}

// TestInvariantsUnderRandomOperations: after every operation of random
// sequences no worker runs two tasks, no request is both waiting and running,
// every index agrees with the entities, no scheduler transition exceeds a
// limit, UpdateTime never raises a balance above max(cap, previous), and the
// operation is deterministic: applied to a copy rebuilt from the state's
// protobuf it gives the same result, events and resulting state. The orders
// by confirmed time are settled after a random quarter of the steps and at
// the end, so that one settle files the changes of several operations.
//
// It is the slowest test of the package (about 32 ms a sequence on two
// cores): `go test` runs 300 sequences, and the soak, with the environment
// variable QSCHEDULER_SOAK=1 (as CI sets it), runs 3,000 (see TestMain).
func TestInvariantsUnderRandomOperations(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := newTracked(t)
		clock := 0.0
		for step := range rapid.IntRange(1, 40).Draw(t, "steps") {
			op := drawOp(t, &clock)
			before := s.ToProto()
			twin, err := FromProto(before)
			if err != nil {
				t.Fatalf("step %d: FromProto: %v", step, err)
			}
			twin.elig.mode = drawRowMode(t, "twinRows")
			s.DiscardEvents()
			res, err := op.do(s)
			events := s.TakeEvents()
			twinRes, twinErr := op.do(twin)
			twinEvents := twin.TakeEvents()
			after := s.ToProto()
			if (err == nil) != (twinErr == nil) {
				t.Fatalf("step %d %s: error %v vs copy's %v", step, op.name, err, twinErr)
			}
			if diff := cmp.Diff(res, twinRes); diff != "" {
				t.Fatalf("step %d %s: results differ on a copy:\n%s", step, op.name, diff)
			}
			if diff := cmp.Diff(events, twinEvents); diff != "" {
				t.Fatalf("step %d %s: events differ on a copy:\n%s", step, op.name, diff)
			}
			if diff := cmp.Diff(after, twin.ToProto(), protocmp.Transform()); diff != "" {
				t.Fatalf("step %d %s: resulting states differ on a copy:\n%s", step, op.name, diff)
			}
			if err := s.checkIndexesSettling(rapid.IntRange(0, 3).Draw(t, "settle") == 0); err != nil {
				t.Fatalf("step %d %s: %v", step, op.name, err)
			}
			// The delta of the step, applied to the state before it, gives
			// the state after it (what a store rebuilds from its log).
			if diff := cmp.Diff(after, nodestore.ApplyDelta(before, s.TakeDelta()), protocmp.Transform()); diff != "" {
				t.Fatalf("step %d %s: state rebuilt from the delta differs (-live +rebuilt):\n%s", step, op.name, diff)
			}
			seen := map[string]string{}
			for _, r := range after.Waiting {
				seen[r.Id] = "waiting"
			}
			for _, w := range after.Workers {
				if rt := w.Running; rt != nil {
					if where, dup := seen[rt.Request.Id]; dup {
						t.Fatalf("step %d %s: request %s runs on %s and is also %s", step, op.name, rt.Request.Id, w.Id, where)
					}
					seen[rt.Request.Id] = "running on " + w.Id
				}
			}
			if err := newLimitState(before).replay(events); err != nil {
				t.Fatalf("step %d %s: %v", step, op.name, err)
			}
			if strings.HasPrefix(op.name, "tick") {
				checkBalanceBound(t, before, after)
			}
			round, err := FromProto(after)
			if err != nil {
				t.Fatalf("step %d: FromProto(ToProto): %v", step, err)
			}
			if !proto.Equal(after, round.ToProto()) {
				t.Fatalf("step %d %s: state -> proto -> state is not lossless", step, op.name)
			}
		}
		if err := s.checkIndexes(); err != nil {
			t.Fatalf("at the end: %v", err)
		}
	})
}

func checkBalanceBound(t *rapid.T, before, after *statev1.PoolState) {
	prev := map[string][]float64{}
	for _, b := range before.Balances {
		prev[b.AccountId] = b.Value
	}
	for _, b := range after.Balances {
		cfg := after.Config.AccountConfigs[b.AccountId]
		if cfg == nil {
			continue
		}
		rates, _ := VectorFromFloat32("", cfg.ChargeRate)
		for p, v := range b.Value {
			c := float64(rates[p] * float64(cfg.MaxChargeSeconds))
			bound := c
			if pv := prev[b.AccountId]; pv != nil && pv[p] > bound {
				bound = pv[p]
			}
			if v > bound {
				t.Fatalf("UpdateTime raised %s's balance[%d] to %v > max(cap %v, previous)", b.AccountId, p, v, c)
			}
		}
	}
}

// checkKeptEligibility: a worker's kept base sets, when marked current, are
// exactly the base sets in the trie its labels contain.
func (s *Scheduler) checkKeptEligibility() error {
	var all []*baseIndex
	var walk func(n *trieNode)
	walk = func(n *trieNode) {
		if n.bi != nil {
			all = append(all, n.bi)
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	walk(&s.trie)
	for id, w := range s.workers {
		if w.eligGen != s.trieGen() {
			continue
		}
		var want []*baseIndex
		for _, bi := range all {
			if subsetOf(bi.set.ids, w.labelIDs) {
				want = append(want, bi)
			}
		}
		got := slices.Clone(w.elig)
		byKey := func(a, b *baseIndex) int { return strings.Compare(a.set.key, b.set.key) }
		slices.SortFunc(got, byKey)
		slices.SortFunc(want, byKey)
		if !slices.Equal(got, want) {
			return fmt.Errorf("worker %s keeps %d base sets, its labels contain %d", id, len(got), len(want))
		}
	}
	return nil
}

// A worker's kept base sets follow the trie through more changes than the
// log of trie changes holds: a worker walked before the log's start is
// walked again, one walked since is brought up to date from the log.
func TestKeptEligibilityThroughLongTrieChurn(t *testing.T) {
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	add := func(id string, base ...string) {
		t.Helper()
		if err := s.AddRequest(Task{ID: RequestID(id), EnqueueTime: t0, BaseLabels: base}, t0, false); err != nil {
			t.Fatal(err)
		}
	}
	poll := func(w string, labels ...string) []TaskAssignment {
		t.Helper()
		as, err := s.AssignTasks(t0, []IdleWorker{{ID: WorkerID(w), Labels: labels}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.checkIndexes(); err != nil {
			t.Fatal(err)
		}
		return as
	}
	absent := func(id string) {
		t.Helper()
		if err := s.Notify(Notification{Kind: NotifyAbsent, Time: t0, Task: Task{ID: RequestID(id)}}, false); err != nil {
			t.Fatal(err)
		}
	}
	// Each worker takes a task, so that it is in no pass until the task
	// ends and keeps the eligibility computed when it polled.
	add("first-old", "b")
	poll("old", "a", "b") // walked now, before the log's start later
	for i := range maxTrieLog {
		add(fmt.Sprintf("x%04d", i), "a", fmt.Sprintf("x%04d", i))
	}
	add("first-recent", "d")
	poll("recent", "a", "c", "d") // walked here, patched later
	// The first changes after recent's walk concern it: {d} left the trie
	// when first-recent started, and {c} enters now. Then enough other
	// changes for the log to drop its start once more.
	add("for-recent", "c")
	for i := range 600 {
		add(fmt.Sprintf("y%04d", i), "a", fmt.Sprintf("y%04d", i))
	}
	if s.trieLogFrom == 1 {
		t.Fatal("the trie log never dropped its start")
	}
	if w := s.workers["old"]; w.eligGen >= s.trieLogFrom {
		t.Fatalf("old worker walked at generation %d, inside the log (from %d)", w.eligGen, s.trieLogFrom)
	}
	if w := s.workers["recent"]; w.eligGen < s.trieLogFrom || w.eligGen == s.trieGen() {
		t.Fatalf("recent worker walked at generation %d: the log (from %d to %d) would not patch it", w.eligGen, s.trieLogFrom, s.trieGen())
	}
	// Bring both up to date (old by a walk, recent from the log) and
	// check them against the trie before a pass changes it again.
	s.eligible([]*worker{s.workers["old"], s.workers["recent"]})
	if err := s.checkKeptEligibility(); err != nil {
		t.Fatal(err)
	}
	absent("first-old")
	absent("first-recent")
	add("for-old", "b")
	if got := poll("old", "a", "b"); len(got) != 1 || got[0].Task != "for-old" {
		t.Fatalf("old worker got %v, want for-old", got)
	}
	if got := poll("recent", "a", "c", "d"); len(got) != 1 || got[0].Task != "for-recent" {
		t.Fatalf("recent worker got %v, want for-recent", got)
	}
}

// checkWorkerRanks: while the ranks are current, they number the ids known
// at the last ranking 0, 1, … in id order, and every worker, also one
// forgotten and recreated since, holds its id's rank.
func (s *Scheduler) checkWorkerRanks() error {
	if s.rankOf == nil || s.rankStale {
		return nil
	}
	ids := make([]WorkerID, len(s.rankOf))
	for id, r := range s.rankOf {
		if r < 0 || int(r) >= len(ids) || ids[r] != "" {
			return fmt.Errorf("rank %d of %s is out of range or taken", r, id)
		}
		ids[r] = id
	}
	if !slices.IsSorted(ids) {
		return fmt.Errorf("ranks out of id order: %v", ids)
	}
	for id, w := range s.workers {
		if r, ok := s.rankOf[id]; !ok || r != w.rank {
			return fmt.Errorf("worker %s holds rank %d, its id's is %d (known %v)", id, w.rank, r, ok)
		}
	}
	return nil
}
