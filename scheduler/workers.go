package scheduler

import (
	"slices"
	"strings"
)

// worker is a known worker (a Swarming bot), idle or running one request.
//
// Idle workers are in Scheduler.idle, a heap by (idleKey, id), so that
// expiry pops only expired workers (O(log I) each). idleKey is the
// confirmed time when the worker entered the heap or was last put back in
// order (invariant: idleKey ≤ confirmed). A poll only raises confirmed, so
// marking an idle worker idle again costs O(1), not a sift: a key catches
// up only when it reaches the top at expiry (expireIdle, O(log I), at most
// once per poll; a rebuild, O(I), after 64 in one call). A worker at the
// top with an exact key is the least by (confirmed, id), so expiry forgets
// workers in that order, as an exact heap would. A running worker holds its
// task: the request, the level it runs at, and its cost as (cost at since,
// since), so that advancing the clock writes no task record (costAt
// derives the cost at any time). It is in its account's running list of
// its level (levelIdx), and its labels are counted in the account's limit
// counters from attach to detach. A worker's labels change only while it
// is idle (newWorker, markIdle), so those counters always balance.
//
// Each worker keeps the base sets its labels contain (elig), as of a
// generation of the trie (eligGen), so that a pass walks the trie only for
// workers whose labels changed or whose result the trie's change log
// cannot bring up to date (trie.go). Ranks (rank) number the workers in id
// order so that sorts breaking ties by worker id compare integers
// (rankWorkers).
type worker struct {
	id        WorkerID
	labelIDs  []labelID // its labels' ids, ascending
	names     []string  // its labels, sorted
	confirmed int64

	req      *request // nil when idle
	level    Priority
	cost     Vector // cost at since
	since    int64
	levelIdx int   // index in req.acct.running[level]
	idleIdx  int   // index in the idle heap, -1 when running
	idleKey  int64 // idle: its key in the idle heap, at most confirmed

	// Per pass: the base sets its labels contain, most labels first (an
	// idle worker's, between startPass and finish).
	passElig []*baseIndex

	rank int32 // position in id order (Scheduler.rankWorkers)

	elig    []*baseIndex // base sets this worker's labels contain, as of eligGen
	eligGen uint64       // the trie generation elig was computed at (0: never)

	// Its place in the orders by confirmed time (confirmedOrder): filed
	// at ordKey in the list ordIn; marked for settling when ordPending.
	ordKey     viewKey
	ordIn      orderList
	ordPending bool
}

// idleNow reports whether w runs nothing.
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

// newWorker creates an idle worker.
func (s *Scheduler) newWorker(id WorkerID, labels []string, t int64) *worker {
	s.touchWorker(id)
	w := &worker{id: id, confirmed: t, idleIdx: -1}
	s.setWorkerLabels(w, labels)
	s.workers[id] = w
	if r, ok := s.rankOf[id]; ok {
		w.rank = r
	} else {
		s.rankStale = true
	}
	s.pushIdle(w)
	return w
}

// pushIdle puts the idle worker w in the idle heap, keyed by its confirmed
// time.
func (s *Scheduler) pushIdle(w *worker) {
	w.idleKey = w.confirmed
	s.idle.Push(w)
	s.byConf.markWorker(w)
}

// removeIdle takes the idle worker w out of the idle heap and order.
func (s *Scheduler) removeIdle(w *worker) {
	s.idle.Remove(w.idleIdx)
	s.byConf.markWorker(w)
}

// setIdleConfirmed sets the confirmed time of the idle worker w, which
// may move back (ApplyDelta): a key above it comes down to it.
func (s *Scheduler) setIdleConfirmed(w *worker, t int64) {
	if t == w.confirmed {
		return
	}
	s.touchWorker(w.id)
	w.confirmed = t
	if t < w.idleKey {
		w.idleKey = t
		s.idle.Fix(w.idleIdx)
	}
	s.byConf.markWorker(w)
}

// expireIdle forgets the idle workers not confirmed within bot_expiration,
// least (confirmed, id) first. A worker at the top whose key is behind its
// confirmed time gets its key and goes back in order; after 64 of those in
// one call, every key is brought up to date and the heap rebuilt (O(I)),
// so that the bots that all polled since their keys were set cost one
// rebuild rather than I sifts.
func (s *Scheduler) expireIdle() {
	caught := 0
	for s.idle.Len() > 0 {
		w := s.idle.Top()
		if s.now-w.idleKey <= s.cfg.botExpiration {
			return
		}
		if w.idleKey != w.confirmed {
			if caught++; caught == 64 {
				for _, x := range s.idle.Items {
					x.idleKey = x.confirmed
				}
				s.idle.Init()
				continue
			}
			w.idleKey = w.confirmed
			s.idle.Fix(0)
			continue
		}
		s.forgetWorker(w)
	}
}

// setWorkerLabels gives w the labels (any order, duplicates allowed),
// forgetting its kept eligibility when they change. Labels equal to w's
// (so sorted and unique, as Swarming sends them) are recognised without
// copying.
func (s *Scheduler) setWorkerLabels(w *worker, labels []string) {
	if slices.Equal(labels, w.names) {
		return
	}
	names := slices.Clone(labels)
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		names = nil
	}
	if slices.Equal(names, w.names) {
		return
	}
	s.touchWorker(w.id)
	for _, l := range w.labelIDs {
		s.labels.unref(l)
	}
	ids := make([]labelID, len(names))
	for i, n := range names {
		ids[i] = s.labels.ref(n)
		names[i] = s.labels.names[ids[i]] // shared by every worker with the label
	}
	slices.Sort(ids)
	w.labelIDs, w.names = ids, names
	w.elig, w.eligGen = nil, 0
}

// forgetWorker removes w and any task running on it from the state.
func (s *Scheduler) forgetWorker(w *worker) {
	s.touchWorker(w.id)
	if r := w.req; r != nil {
		s.stopTask(w)
		s.dropRequest(r)
	}
	s.removeIdle(w)
	for _, l := range w.labelIDs {
		s.labels.unref(l)
	}
	delete(s.workers, w.id)
}

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

// startTask makes the idle worker w run r (not waiting) at level with the
// given cost from now.
func (s *Scheduler) startTask(w *worker, r *request, level Priority, cost Vector) {
	s.removeIdle(w)
	s.attach(w, r, level, cost)
}

// stopTask makes w idle; its request is left neither waiting nor running.
func (s *Scheduler) stopTask(w *worker) *request {
	r := s.detach(w)
	s.pushIdle(w)
	return r
}

// attach links r to the worker w (which runs nothing) and counts it.
func (s *Scheduler) attach(w *worker, r *request, level Priority, cost Vector) {
	s.touchWorker(w.id)
	s.touchRequest(r.id)
	w.req, r.w = r, w
	w.level, w.cost, w.since = level, cost, s.now
	s.byConf.markWorker(w)
	a := r.acct
	w.levelIdx = len(a.running[level])
	a.running[level] = append(a.running[level], w)
	s.countLabels(a, w, 1)
	if level < FreeBucket && a.maxFanout > 0 {
		s.groupOf(r).paid++
	}
}

// detach unlinks w's request and uncounts it.
func (s *Scheduler) detach(w *worker) *request {
	r := w.req
	s.touchWorker(w.id)
	s.touchRequest(r.id)
	a := r.acct
	s.byConf.markWorker(w)
	s.removeFromLevel(w)
	s.countLabels(a, w, -1)
	if w.level < FreeBucket && a.maxFanout > 0 {
		s.ungroup(r)
	}
	w.req, r.w = nil, nil
	w.cost, w.since, w.level = Vector{}, 0, 0
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

// setLevel moves a running task to another level, keeping its cost.
func (s *Scheduler) setLevel(w *worker, level Priority) {
	if level == w.level {
		return
	}
	s.touchWorker(w.id)
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
}
