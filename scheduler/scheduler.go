package scheduler

import (
	"maps"
	"slices"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/chunkbuf"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/heap"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/idtable"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/rank"
)

// Scheduler is the state of one pool: accounts and balances, waiting and
// running requests, workers, tombstones and the reconciler's entries, with
// the indexes that make a pass cheap.
//
// Every entity is held once, in the map or table that owns it (accounts,
// requests, workers, tombstones, reconciler); everything else is an index
// over them, kept exact on every change by the functions that make it:
// classes and base indexes over waiting requests (classes.go), the trie
// over base label sets (trie.go), the running lists and limit counters of
// accounts (accounts.go), the idle heap of workers (workers.go), the
// orders by confirmed time that View and Callbacks read (view.go). Nothing
// derived is persisted: FromProto rebuilds it all.
//
// Objects a call empties (classes, fanout groups, accounts) are queued and
// reclaimed by gc at the end of the public call, so that pointers a pass
// holds stay valid for its whole length.
type Scheduler struct {
	cfg           tunables            // the effective tunables
	tunablesProto *statev1.PoolConfig // the tunables as set, without account configs

	hasClock bool
	now      int64 // the scheduler clock (last_update_time), valid when hasClock

	labels *labelTable // interned labels
	sets   *setTable   // interned label sets

	accounts       map[AccountID]*account // every account referenced, configured or not
	acctOrder      []*account             // accounts by id, rebuilt when acctOrderDirty
	acctOrderDirty bool

	requests idtable.Table[RequestID, request] // waiting and running, by id
	nWaiting int                               // waiting requests
	workers  map[WorkerID]*worker
	idle     heap.Heap[*worker]  // idle workers by (idleKey, id); see worker
	byConf   confirmedOrder      // waiting, running and idle by (confirmed, id); see view.go
	classes  map[classKey]*class // every class, empty ones until gc
	trie     trieNode            // root of the trie of base label sets
	// The trie's changes (a base set entering or leaving it) that made its
	// generations trieLogFrom+1 … trieGen().
	trieLog     []trieChange
	trieLogFrom uint64

	tombstones tombstones
	reconciler reconciler
	elig       eligibility // scratch of eligible()
	passIdle   []*worker   // scratch of a pass's idle workers (pass.idle)

	stepScratch preemptScratch // a preemption step's memory, reused by the next
	costScratch struct {       // of pass.byCost
		costs rank.Ranker[Vector]
		keys  []uint64
		out   []*worker
	}

	// Worker ranks in id order (see rankWorkers): the rank of each id known
	// at the last ranking, and whether a worker with another id appeared.
	rankOf      map[WorkerID]int32
	rankStale   bool
	rankScratch []*worker

	events chunkbuf.Buffer[Event] // recorded, not yet taken (TakeEvents)

	epoch       uint64     // scheduling pass counter, for per-pass marks
	lastPassOut int        // assignments of the last pass, to size the next
	gcClasses   []*class   // empty classes to reclaim, from gcHead on
	gcHead      int        // gcClasses[:gcHead] are reclaimed
	gcAccts     []*account // accounts that may have become unneeded
	gcGroups    []groupRef // fanout groups whose paid count reached zero

	dirty dirtySet  // what changed since the last TakeDelta
	taken *dirtySet // what the last TakeDelta returned, for UndoDelta
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
	for _, id := range slices.Sorted(maps.Keys(cfg.GetAccountConfigs())) {
		if err := s.AddAccount(AccountID(id), cfg.AccountConfigs[id], nil); err != nil {
			return nil, err
		}
	}
	s.dirty = dirtySet{}
	return s, nil
}

// newEmpty returns a pool with default tunables and nothing else.
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
			if a.idleKey != b.idleKey {
				return a.idleKey < b.idleKey
			}
			return a.id < b.id
		},
		SetIndex: func(w *worker, i int) { w.idleIdx = i },
	}
	s.byConf.init()
	s.tombstones.init()
	s.reconciler.init()
	return s
}

// gcClassBudget is the number of classes one gc reclaims at most.
const gcClassBudget = 256

// gc removes empty classes and the indexes and accounts they leave empty.
//
// What a call empties is queued, not removed where it empties: dequeue
// queues an emptied class on gcClasses, ungroup a fanout group whose paid
// count reached zero on gcGroups, updateTime an account whose balance it
// deleted on gcAccts. gc runs once at the end of every public call that
// can empty something (AssignTasks once, after its pass) and removes only
// what is still empty, then the acctBase, provVariant, baseIndex (and trie
// path) and account objects that leaves unused. Deferring keeps every
// pointer a pass holds (units, candidate lists) valid, and a class emptied
// and refilled within one call (Unassign, then enqueue) is reused.
//
// Classes are reclaimed at most gcClassBudget per call, oldest first, so that
// a pass that empties thousands of classes does not pay for reclaiming them
// all at once; an empty class left for later is harmless (every reader skips
// empty classes) and is reused if its requests come back first.
func (s *Scheduler) gc() {
	n := min(len(s.gcClasses)-s.gcHead, gcClassBudget)
	batch := s.gcClasses[s.gcHead : s.gcHead+n]
	for _, c := range batch {
		c.onGCList = false
		if c.len() > 0 {
			continue
		}
		delete(s.classes, classKey{c.acct, c.base, c.prov})
		ab, pv, bi := c.acctBase, c.variant, c.acctBase.bi
		ab.byHead.Remove(c.heapIdx)
		pv.classes = swapRemove(pv.classes, c.variantIdx, func(x *class, i int) { x.variantIdx = i })
		if ab.byHead.Len() == 0 {
			bi.accts = swapRemove(bi.accts, ab.idx, func(x *acctBase, i int) { x.idx = i })
		}
		if len(pv.classes) == 0 {
			bi.provs = swapRemove(bi.provs, pv.idx, func(x *provVariant, i int) { x.idx = i })
			count(s.labels.inProv, pv.prov.ids, -1)
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
