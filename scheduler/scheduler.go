package scheduler

import (
	"cmp"
	"slices"
	"strings"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/chunkbuf"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/idtable"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/rank"
)

// Scheduler is the state of one pool: accounts and balances, waiting and
// running requests, workers, tombstones and the reconciler's entries, with
// the indexes that make a pass cheap.
type Scheduler struct {
	cfg           tunables
	tunablesProto *statev1.PoolConfig

	hasClock bool
	now      int64 // last_update_time, valid when hasClock

	labels *labelTable
	sets   *setTable

	accounts       map[AccountID]*account
	acctOrder      []*account // by id
	acctOrderDirty bool

	requests idtable.Table[RequestID, request] // waiting and running, by id
	nWaiting int
	workers  map[WorkerID]*worker
	idle     heap.Heap[*worker] // idle workers by (confirmed, id)
	classes  map[classKey]*class
	trie     trieNode
	// The trie's changes (a base set entering or leaving it) that made its
	// generations trieLogFrom+1 … trieGen().
	trieLog     []trieChange
	trieLogFrom uint64

	tombs tombstones
	rec   reconciler
	elig  eligibility // scratch of eligible()

	pscratch    preemptScratch
	costScratch struct { // of pass.byCost
		costs rank.Ranker[Vector]
		keys  []uint64
		out   []*worker
	}

	// Worker ranks in id order (see rankWorkers): the rank of each id known
	// at the last ranking, and whether a worker with another id appeared.
	rankOf      map[WorkerID]int32
	rankStale   bool
	rankScratch []*worker

	events chunkbuf.Buffer[Event]

	epoch       uint64   // scheduling pass counter, for per-pass marks
	lastPassOut int      // assignments of the last pass, to size the next
	gcClasses   []*class // empty classes to reclaim, from gcHead on
	gcHead      int
	gcAccts     []*account
	gcGroups    []groupRef // fanout groups whose paid count reached zero

	dirty dirtySet
}

// account is everything known about one account id, configured or not.
type account struct {
	id          AccountID
	cfg         *statev1.AccountConfig // nil: no config
	rate        Vector
	cap         Vector // rate * max_charge_seconds
	maxFanout   int32
	disableFree bool
	limits      map[string]int32 // per_label_task_limits
	balance     Vector
	hasBalance  bool
	balanceSeen bool // FromProto: duplicate detection

	running    [NumPaidLevels + 1][]*worker // workers running this account's tasks, by level
	labelCount map[labelID]int32            // for labels whose key it limits: running tasks on workers carrying the label
	fanout     map[*labelSet]*fanoutGroup   // with a max_fanout: paid-level tasks by fanout label set
	waiting    int                          // waiting requests
	refs       int                          // requests (waiting or running)

	// Per pass.
	level   Priority
	dormant []*unit // preemption units waiting for this account to change
}

func (a *account) limited() bool {
	return a.cfg != nil && (a.maxFanout > 0 || len(a.limits) > 0)
}

// priority is the level a waiting request of this account gets (§2.2).
func (a *account) priority() Priority {
	if a.cfg == nil {
		return FreeBucket
	}
	for p := range NumPaidLevels {
		if a.balance[p] > 0 {
			return Priority(p)
		}
	}
	return FreeBucket
}

// runningBelow counts this account's tasks at levels below (numerically
// above) p.
func (a *account) runningBelow(p Priority) int {
	n := 0
	for l := p + 1; l <= FreeBucket; l++ {
		n += len(a.running[l])
	}
	return n
}

type groupRef struct {
	acct *account
	fan  *labelSet
}

type fanoutGroup struct {
	dead       bool  // removed from its account; requests must look it up again
	paid       int32 // tasks running at paid levels
	startEpoch uint64
	startPaid  int32 // paid at the start of pass startEpoch
}

type classKey struct {
	acct       *account
	base, prov *labelSet
}

// request is a waiting or running request.
type request struct {
	id        RequestID
	acct      *account
	enqueue   int64
	confirmed int64
	base      *labelSet
	prov      *labelSet
	fan       *labelSet    // union of base and prov: the fanout group's labels
	grp       *fanoutGroup // cache of acct.fanout[fan]

	cls *class  // while waiting
	w   *worker // while running

	hash uint64 // of id, under which Scheduler.requests holds it
}

// cmpFIFO is the FIFO order: (enqueue time, id).
func cmpFIFO(a, b *request) int {
	if c := cmp.Compare(a.enqueue, b.enqueue); c != 0 {
		return c
	}
	return strings.Compare(string(a.id), string(b.id))
}

// worker is a known worker, idle or running one request.
type worker struct {
	id        WorkerID
	ids       []labelID // ascending
	names     []string  // sorted
	confirmed int64

	req      *request // nil when idle
	level    Priority
	cost     Vector // cost at since
	since    int64
	levelIdx int // index in req.acct.running[level]
	idleIdx  int // index in the idle heap, -1 when running

	// Per pass.
	passElig []*baseIndex

	rank int32 // position in id order (Scheduler.rankWorkers)

	elig    []*baseIndex // base sets this worker's labels contain, as of eligGen
	eligGen uint64       // the trie generation elig was computed at (0: never)
}

func (w *worker) idleNow() bool { return w.req == nil }

// latestConfirmed is max of the worker's and its running request's
// confirmed times.
func (w *worker) latestConfirmed() int64 {
	if w.req != nil && w.req.confirmed > w.confirmed {
		return w.req.confirmed
	}
	return w.confirmed
}

// costAt is the running task's cost at time t.
func (w *worker) costAt(t int64) Vector {
	c := w.cost
	if w.level < FreeBucket {
		c[w.level] = float64(c[w.level] + seconds(w.since, t))
	}
	return c
}

// class is the waiting requests of one (account, base labels, provisionable
// labels) in FIFO order.
type class struct {
	acct *account
	base *labelSet
	prov *labelSet
	fan  *labelSet

	q  []qent // live part is q[h:], sorted FIFO
	h  int
	hk fifoKey // key of the head

	ab      *acctBase
	heapIdx int
	pv      *provVariant
	pvIdx   int

	blockedEpoch uint64
	queued       bool // on gcClasses
}

func (c *class) len() int { return len(c.q) - c.h }

func (c *class) head() *request {
	if c.h < len(c.q) {
		return c.q[c.h].r
	}
	return nil
}

// qent is a request in a class's queue with its enqueue time, so that
// searching a queue reads the queue, going through to a request only when
// enqueue times tie.
type qent struct {
	enq int64
	r   *request
}

// cmpQ is cmpFIFO(e.r, r).
func cmpQ(e qent, r *request) int {
	if e.enq != r.enqueue {
		return cmp.Compare(e.enq, r.enqueue)
	}
	return strings.Compare(string(e.r.id), string(r.id))
}

// fifoKey is a request's place in FIFO order, copied into the structures
// that compare heads often (class heaps, preemption units) so that a heap
// operation reads its own nodes instead of chasing pointers to requests.
type fifoKey struct {
	enq   int64
	id    RequestID
	empty bool // no request: after every key
}

func keyOf(r *request) fifoKey {
	if r == nil {
		return fifoKey{empty: true}
	}
	return fifoKey{enq: r.enqueue, id: r.id}
}

func (a fifoKey) before(b fifoKey) bool {
	if a.empty || b.empty {
		return b.empty && !a.empty
	}
	if a.enq != b.enq {
		return a.enq < b.enq
	}
	return a.id < b.id
}

// headBefore orders classes by their heads; empty classes go last.
func headBefore(a, b *class) bool { return a.hk.before(b.hk) }

func (c *class) insert(r *request) {
	live := c.q[c.h:]
	i, _ := slices.BinarySearchFunc(live, r, cmpQ)
	e := qent{r.enqueue, r}
	if i == len(live) {
		c.q = append(c.q, e)
	} else {
		if c.h > 0 { // reuse the popped prefix
			copy(c.q[c.h-1:], c.q[c.h:c.h+i])
			c.h--
			c.q[c.h+i] = e
		} else {
			c.q = slices.Insert(c.q, i, e)
		}
	}
	r.cls = c
	c.hk = keyOf(c.head())
}

func (c *class) remove(r *request) {
	if c.head() == r {
		c.q[c.h] = qent{}
		c.h++
		if c.h == len(c.q) {
			c.q, c.h = c.q[:0], 0
		} else if c.h >= 32 && c.h*2 >= len(c.q) {
			n := copy(c.q, c.q[c.h:])
			clear(c.q[n:])
			c.q, c.h = c.q[:n], 0
		}
	} else {
		live := c.q[c.h:]
		i, ok := slices.BinarySearchFunc(live, r, cmpQ)
		if !ok {
			panic("scheduler: request not in its class")
		}
		copy(live[i:], live[i+1:])
		c.q[len(c.q)-1] = qent{}
		c.q = c.q[:len(c.q)-1]
	}
	r.cls = nil
	c.hk = keyOf(c.head())
}

// firstAfter returns the earliest request of c that comes after r in FIFO
// order (all of them when r is nil).
func (c *class) firstAfter(r *request) *request {
	live := c.q[c.h:]
	if len(live) == 0 {
		return nil
	}
	// The ends first: the head's key is cached, and a request after the
	// last needs one look.
	if r == nil || keyOf(r).before(c.hk) {
		return live[0].r
	}
	if cmpQ(live[len(live)-1], r) <= 0 {
		return nil
	}
	i, ok := slices.BinarySearchFunc(live, r, cmpQ)
	if ok {
		i++
	}
	if i < len(live) {
		return live[i].r
	}
	return nil
}

// baseIndex gathers the waiting requests whose base labels are one set.
type baseIndex struct {
	set   *labelSet
	accts []*acctBase
	provs []*provVariant
	node  *trieNode

	// Per preemption step.
	victimEpoch uint64
	victimBits  []uint64 // victims (by victimSet index) this base set is eligible for
	victimCur   int      // words before this have no free victim
}

// acctBase is one account's classes of one base set, as a heap by head.
type acctBase struct {
	acct   *account
	bi     *baseIndex
	idx    int // in bi.accts
	byHead heap.Heap[*class]
}

// provVariant is the classes (one per account) of one base set and one
// provisionable set.
type provVariant struct {
	prov    *labelSet
	bi      *baseIndex
	idx     int // in bi.provs
	classes []*class

	// Per preemption step: no victim before matchFrom is a free provision
	// match (victims are only taken during a step, so this only grows).
	matchEpoch uint64
	matchFrom  int
}

// New returns an empty pool with the given configuration (nil: defaults, no
// accounts).
func New(cfg *statev1.PoolConfig) (*Scheduler, error) {
	if err := ValidatePoolConfig(cfg); err != nil {
		return nil, err
	}
	s := newEmpty()
	if err := s.SetTunables(cfg); err != nil {
		return nil, err
	}
	for _, id := range sortedKeys(cfg.GetAccountConfigs()) {
		if err := s.AddAccount(AccountID(id), cfg.AccountConfigs[id], nil); err != nil {
			return nil, err
		}
	}
	s.dirty = dirtySet{}
	return s, nil
}

func newEmpty() *Scheduler {
	labels := newLabelTable()
	s := &Scheduler{
		trieLogFrom:   1,
		tunablesProto: &statev1.PoolConfig{},
		labels:        labels,
		sets:          newSetTable(labels),
		accounts:      make(map[AccountID]*account),
		requests:      idtable.New(func(r *request) RequestID { return r.id }),
		workers:       make(map[WorkerID]*worker),
		classes:       make(map[classKey]*class),
	}
	s.cfg = tunablesOf(s.tunablesProto)
	s.events = chunkbuf.New[Event](eventChunk, maxSpare)
	s.idle = heap.Heap[*worker]{
		Less: func(a, b *worker) bool {
			if a.confirmed != b.confirmed {
				return a.confirmed < b.confirmed
			}
			return a.id < b.id
		},
		SetIndex: func(w *worker, i int) { w.idleIdx = i },
	}
	s.tombs.init()
	s.rec.init()
	return s
}

// setClock sets the clock from the first time-carrying input (§1.6).
func (s *Scheduler) setClock(t int64) {
	if !s.hasClock {
		s.hasClock, s.now = true, t
		s.dirty.clock = true
	}
}

// account returns the account with the id, creating an unconfigured one.
func (s *Scheduler) account(id AccountID) *account {
	if a := s.accounts[id]; a != nil {
		return a
	}
	a := &account{id: id, labelCount: map[labelID]int32{}, fanout: map[*labelSet]*fanoutGroup{}}
	s.accounts[id] = a
	s.acctOrderDirty = true
	return a
}

// sortedAccounts returns the accounts by id.
func (s *Scheduler) sortedAccounts() []*account {
	if s.acctOrderDirty {
		s.acctOrder = s.acctOrder[:0]
		for _, a := range s.accounts {
			s.acctOrder = append(s.acctOrder, a)
		}
		slices.SortFunc(s.acctOrder, func(a, b *account) int { return strings.Compare(string(a.id), string(b.id)) })
		s.acctOrderDirty = false
	}
	return s.acctOrder
}

// maybeDropAccount forgets an account object that nothing needs any more.
func (s *Scheduler) maybeDropAccount(a *account) {
	if a.cfg == nil && !a.hasBalance && a.refs == 0 && s.accounts[a.id] == a {
		delete(s.accounts, a.id)
		s.acctOrderDirty = true
	}
}

// newRequest creates a request object (not yet waiting or running).
func (s *Scheduler) newRequest(id RequestID, acct AccountID, enqueue, confirmed int64, base, prov []string) *request {
	a := s.account(acct)
	a.refs++
	r := &request{id: id, acct: a, enqueue: enqueue, confirmed: confirmed}
	r.base = s.sets.refNames(base)
	r.prov = s.sets.refNames(prov)
	r.fan = s.sets.refUnion(r.base, r.prov)
	r.hash = s.requests.Hash(id)
	s.requests.Add(r, r.hash)
	return r
}

// dropRequest removes a request that is neither waiting nor running.
func (s *Scheduler) dropRequest(r *request) {
	s.requests.Delete(r, r.hash)
	s.sets.unref(r.base)
	s.sets.unref(r.prov)
	s.sets.unref(r.fan)
	r.acct.refs--
	s.maybeDropAccount(r.acct)
	s.dirty.request(r.id)
}

// enqueue makes r waiting.
func (s *Scheduler) enqueue(r *request) {
	c := s.classFor(r.acct, r.base, r.prov)
	wasEmpty := c.len() == 0
	oldHead := c.head()
	c.insert(r)
	if wasEmpty || c.head() != oldHead {
		c.ab.byHead.Fix(c.heapIdx)
	}
	r.acct.waiting++
	s.nWaiting++
	s.dirty.request(r.id)
}

// dequeue makes a waiting r neither waiting nor running.
func (s *Scheduler) dequeue(r *request) {
	c := r.cls
	wasHead := c.head() == r
	c.remove(r)
	if wasHead {
		c.ab.byHead.Fix(c.heapIdx)
	}
	if c.len() == 0 && !c.queued {
		c.queued = true
		s.gcClasses = append(s.gcClasses, c)
	}
	r.acct.waiting--
	s.nWaiting--
	s.dirty.request(r.id)
}

func (s *Scheduler) classFor(a *account, base, prov *labelSet) *class {
	k := classKey{a, base, prov}
	if c := s.classes[k]; c != nil {
		return c
	}
	bi := base.base
	if bi == nil {
		bi = &baseIndex{set: s.sets.ref(base)}
		base.base = bi
		s.trieInsert(bi)
	}
	var ab *acctBase
	for _, x := range bi.accts {
		if x.acct == a {
			ab = x
			break
		}
	}
	if ab == nil {
		ab = &acctBase{acct: a, bi: bi, idx: len(bi.accts)}
		ab.byHead = heap.Heap[*class]{Less: headBefore, SetIndex: func(c *class, i int) { c.heapIdx = i }}
		bi.accts = append(bi.accts, ab)
	}
	var pv *provVariant
	for _, x := range bi.provs {
		if x.prov == prov {
			pv = x
			break
		}
	}
	if pv == nil {
		pv = &provVariant{prov: s.sets.ref(prov), bi: bi, idx: len(bi.provs)}
		bi.provs = append(bi.provs, pv)
	}
	c := &class{
		acct: a, base: s.sets.ref(base), prov: s.sets.ref(prov), fan: s.sets.refUnion(base, prov),
		ab: ab, pv: pv, pvIdx: len(pv.classes), hk: fifoKey{empty: true},
	}
	pv.classes = append(pv.classes, c)
	ab.byHead.Push(c)
	s.classes[k] = c
	return c
}

const gcClassBudget = 256

// gc removes empty classes and the indexes and accounts they leave empty.
//
// Classes are reclaimed at most gcClassBudget per call, oldest first, so that
// a pass that empties thousands of classes does not pay for reclaiming them
// all at once; an empty class left for later is harmless (every reader skips
// empty classes) and is reused if its requests come back first.
func (s *Scheduler) gc() {
	n := min(len(s.gcClasses)-s.gcHead, gcClassBudget)
	batch := s.gcClasses[s.gcHead : s.gcHead+n]
	for _, c := range batch {
		c.queued = false
		if c.len() > 0 {
			continue
		}
		delete(s.classes, classKey{c.acct, c.base, c.prov})
		ab, pv, bi := c.ab, c.pv, c.ab.bi
		ab.byHead.Remove(c.heapIdx)
		pv.classes = swapRemove(pv.classes, c.pvIdx, func(x *class, i int) { x.pvIdx = i })
		if ab.byHead.Len() == 0 {
			bi.accts = swapRemove(bi.accts, ab.idx, func(x *acctBase, i int) { x.idx = i })
		}
		if len(pv.classes) == 0 {
			bi.provs = swapRemove(bi.provs, pv.idx, func(x *provVariant, i int) { x.idx = i })
			s.sets.unref(pv.prov)
		}
		if len(bi.accts) == 0 {
			s.trieRemove(bi)
			bi.set.base = nil
			s.sets.unref(bi.set)
		}
		s.sets.unref(c.base)
		s.sets.unref(c.prov)
		s.sets.unref(c.fan)
	}
	clear(batch)
	s.gcHead += n
	if s.gcHead == len(s.gcClasses) {
		s.gcClasses, s.gcHead = s.gcClasses[:0], 0
	} else if s.gcHead >= 1024 && 2*s.gcHead >= len(s.gcClasses) {
		rest := copy(s.gcClasses, s.gcClasses[s.gcHead:])
		clear(s.gcClasses[rest:])
		s.gcClasses, s.gcHead = s.gcClasses[:rest], 0
	}
	for _, gr := range s.gcGroups {
		if g := gr.acct.fanout[gr.fan]; g != nil && g.paid == 0 {
			g.dead = true
			delete(gr.acct.fanout, gr.fan)
			s.sets.unref(gr.fan)
		}
	}
	clear(s.gcGroups)
	s.gcGroups = s.gcGroups[:0]
	for _, a := range s.gcAccts {
		s.maybeDropAccount(a)
	}
	clear(s.gcAccts)
	s.gcAccts = s.gcAccts[:0]
}

// newWorker creates an idle worker.
func (s *Scheduler) newWorker(id WorkerID, labels []string, t int64) *worker {
	w := &worker{id: id, confirmed: t, idleIdx: -1}
	s.setWorkerLabels(w, labels)
	s.workers[id] = w
	if r, ok := s.rankOf[id]; ok {
		w.rank = r
	} else {
		s.rankStale = true
	}
	s.idle.Push(w)
	s.dirty.worker(id)
	return w
}

func (s *Scheduler) setWorkerLabels(w *worker, labels []string) {
	names := slices.Clone(labels)
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		names = nil
	}
	if slices.Equal(names, w.names) {
		return
	}
	for _, l := range w.ids {
		s.labels.unref(l)
	}
	ids := make([]labelID, len(names))
	for i, n := range names {
		ids[i] = s.labels.ref(n)
	}
	slices.Sort(ids)
	w.ids, w.names = ids, names
	w.elig, w.eligGen = nil, 0
	s.dirty.worker(w.id)
}

// forgetWorker removes w and any task running on it from the state.
func (s *Scheduler) forgetWorker(w *worker) {
	if r := w.req; r != nil {
		s.stopTask(w)
		s.dropRequest(r)
	}
	s.idle.Remove(w.idleIdx)
	for _, l := range w.ids {
		s.labels.unref(l)
	}
	delete(s.workers, w.id)
	s.dirty.worker(w.id)
}

// groupOf returns r's fanout group, creating it, with its paid count at
// the start of the current pass recorded.
func (s *Scheduler) groupOf(r *request) *fanoutGroup {
	g := r.grp
	if g == nil || g.dead {
		a := r.acct
		g = a.fanout[r.fan]
		if g == nil {
			g = &fanoutGroup{}
			a.fanout[s.sets.ref(r.fan)] = g
		}
		r.grp = g
	}
	if g.startEpoch != s.epoch {
		g.startEpoch, g.startPaid = s.epoch, g.paid
	}
	return g
}

// ungroup counts one task of r's group less at paid levels.
func (s *Scheduler) ungroup(r *request) {
	g := s.groupOf(r)
	if g.paid--; g.paid == 0 {
		s.gcGroups = append(s.gcGroups, groupRef{r.acct, r.fan})
	}
}

// startTask makes the idle worker w run r (not waiting) at level with the
// given cost from now.
// rankWorkers gives every worker its position in id order, so that sorts
// that break ties by worker id compare integers. An id keeps its rank while
// its worker is forgotten and recreated (bots do that at every task end), so
// ranking again is needed only when an id unknown at the last ranking
// appears; ranking again forgets the ids of absent workers.
func (s *Scheduler) rankWorkers() {
	if !s.rankStale && s.rankOf != nil {
		return
	}
	ws := s.rankScratch[:0]
	for _, w := range s.workers {
		ws = append(ws, w)
	}
	slices.SortFunc(ws, func(a, b *worker) int { return strings.Compare(string(a.id), string(b.id)) })
	if s.rankOf == nil {
		s.rankOf = make(map[WorkerID]int32, len(ws))
	}
	clear(s.rankOf)
	for i, w := range ws {
		w.rank = int32(i)
		s.rankOf[w.id] = int32(i)
	}
	clear(ws)
	s.rankScratch = ws[:0]
	s.rankStale = false
}

func (s *Scheduler) startTask(w *worker, r *request, level Priority, cost Vector) {
	s.idle.Remove(w.idleIdx)
	s.attach(w, r, level, cost)
}

// stopTask makes w idle; its request is left neither waiting nor running.
func (s *Scheduler) stopTask(w *worker) *request {
	r := s.detach(w)
	s.idle.Push(w)
	return r
}

// attach links r to the worker w (which runs nothing) and counts it.
func (s *Scheduler) attach(w *worker, r *request, level Priority, cost Vector) {
	w.req, r.w = r, w
	w.level, w.cost, w.since = level, cost, s.now
	a := r.acct
	w.levelIdx = len(a.running[level])
	a.running[level] = append(a.running[level], w)
	s.countLabels(a, w, 1)
	if level < FreeBucket && a.maxFanout > 0 {
		s.groupOf(r).paid++
	}
	s.dirty.worker(w.id)
	s.dirty.request(r.id)
}

// countLabels adds d to a's per-label counts for the labels of w whose key a
// limits. Zero counts stay: deleting and re-adding them churns the map, and
// a zero is right even after the label id is reused.
func (s *Scheduler) countLabels(a *account, w *worker, d int32) {
	if len(a.limits) == 0 {
		return
	}
	keys := s.labels.keys
	for _, l := range w.ids {
		if _, ok := a.limits[keys[l]]; ok {
			a.labelCount[l] += d
		}
	}
}

// recount rebuilds a's limit counters from its running tasks after its
// limits changed: per-label counts for the keys it limits, fanout groups when
// it has a max_fanout. This is the only place counters are computed by
// scanning; it runs on a config change, never in a pass.
func (s *Scheduler) recount(a *account) {
	for fan, g := range a.fanout {
		g.dead = true
		s.sets.unref(fan)
	}
	a.fanout = make(map[*labelSet]*fanoutGroup)
	a.labelCount = make(map[labelID]int32)
	for l := range a.running {
		for _, w := range a.running[l] {
			s.countLabels(a, w, 1)
			if Priority(l) < FreeBucket && a.maxFanout > 0 {
				s.groupOf(w.req).paid++
			}
		}
	}
}

// detach unlinks w's request and uncounts it.
func (s *Scheduler) detach(w *worker) *request {
	r := w.req
	a := r.acct
	s.removeFromLevel(w)
	s.countLabels(a, w, -1)
	if w.level < FreeBucket && a.maxFanout > 0 {
		s.ungroup(r)
	}
	w.req, r.w = nil, nil
	w.cost, w.since, w.level = Vector{}, 0, 0
	s.dirty.worker(w.id)
	s.dirty.request(r.id)
	return r
}

// removeFromLevel is swapRemove written out: it runs on every task start,
// stop and level change.
func (s *Scheduler) removeFromLevel(w *worker) {
	list := w.req.acct.running[w.level]
	last := list[len(list)-1]
	list[w.levelIdx], last.levelIdx = last, w.levelIdx
	list[len(list)-1] = nil
	w.req.acct.running[w.level] = list[:len(list)-1]
}

// swapRemove removes list[i] by moving the last element into its place;
// setIdx records the moved element's new index.
func swapRemove[T any](list []*T, i int, setIdx func(*T, int)) []*T {
	n := len(list) - 1
	if i != n {
		list[i] = list[n]
		setIdx(list[i], i)
	}
	list[n] = nil
	return list[:n]
}

// setLevel moves a running task to another level, keeping its cost.
func (s *Scheduler) setLevel(w *worker, level Priority) {
	if level == w.level {
		return
	}
	a := w.req.acct
	w.cost = w.costAt(s.now)
	w.since = s.now
	wasPaid, isPaid := w.level < FreeBucket, level < FreeBucket
	s.removeFromLevel(w)
	w.level = level
	w.levelIdx = len(a.running[level])
	a.running[level] = append(a.running[level], w)
	if wasPaid != isPaid && a.maxFanout > 0 {
		if isPaid {
			s.groupOf(w.req).paid++
		} else {
			s.ungroup(w.req)
		}
	}
	s.dirty.worker(w.id)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
