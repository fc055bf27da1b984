package scheduler

import (
	"math/bits"
	"slices"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/bitset"
)

// trieNode indexes base label sets by their ascending label ids, so that the
// sets contained in a worker's labels are found by walking only the paths the
// worker's labels spell, never by scanning every set (algorithm.md §6).
//
// A base set is the path of its ascending label ids from the root; the node
// where it ends holds its baseIndex. A worker's labels contain a base set
// exactly when the set's path can be followed using only labels the worker
// has, so the sets a worker can serve are found by descending only into
// children whose label it has. A node's children are a slice, and also a
// map once there are more than trieMapThreshold (dropped again at half).
// Inserting or removing a set costs O(its labels); removal prunes the nodes
// it leaves without a set or a child.
//
// eligible (below) does the walk for many workers at once. Each worker
// keeps its last result (worker.elig) tagged with the trie's generation
// (trieGen), and every change of the trie (a base set entering or leaving
// it) bumps the generation and is logged (trieLog, the last 512 to 1,024
// changes): a worker whose result is older is brought up to date from the
// log (an added set is appended if the worker's labels contain it, a
// removed one is dropped), and only workers the log cannot serve (labels
// changed, or last walked before the log's start) are walked, in one walk
// over just them. The trie's labels are counted (labelTable.inTrie), so
// that the walk builds rows only for labels some base set contains.
type trieNode struct {
	label  labelID // the last label of the path to this node
	parent *trieNode
	kids   []*trieNode
	byID   map[labelID]*trieNode // the kids by label, when there are many
	bi     *baseIndex            // the set ending here, if any
}

// trieMapThreshold is the number of children above which a node indexes
// them by label.
const trieMapThreshold = 8

// child returns n's child for label l, or nil.
func (n *trieNode) child(l labelID) *trieNode {
	if n.byID != nil {
		return n.byID[l]
	}
	for _, k := range n.kids {
		if k.label == l {
			return k
		}
	}
	return nil
}

// trieInsert adds bi's set to the trie, counting its labels
// (labelTable.inTrie) and logging the change.
func (s *Scheduler) trieInsert(bi *baseIndex) {
	s.trie.insert(bi)
	count(s.labels.inTrie, bi.set.ids, 1)
	s.logTrie(bi, true)
}

// trieRemove takes bi's set out of the trie, uncounting its labels and
// logging the change.
func (s *Scheduler) trieRemove(bi *baseIndex) {
	s.trie.remove(bi)
	count(s.labels.inTrie, bi.set.ids, -1)
	s.logTrie(bi, false)
}

// trieChange is a base set entering (added) or leaving the trie.
type trieChange struct {
	bi    *baseIndex
	added bool
}

// maxTrieLog bounds the log of trie changes; a worker last walked before
// the log's start is walked again.
const maxTrieLog = 1024

// logTrie counts a change of the trie and logs it: trieLog[i] is the change
// that made generation trieLogFrom+1+i.
func (s *Scheduler) logTrie(bi *baseIndex, added bool) {
	if len(s.trieLog) == maxTrieLog {
		half := maxTrieLog / 2
		n := copy(s.trieLog, s.trieLog[half:])
		clear(s.trieLog[n:])
		s.trieLog = s.trieLog[:n]
		s.trieLogFrom += uint64(half)
	}
	s.trieLog = append(s.trieLog, trieChange{bi, added})
}

// trieGen is the trie's generation: it changes whenever a base set enters
// or leaves the trie, and is never 0.
func (s *Scheduler) trieGen() uint64 { return s.trieLogFrom + uint64(len(s.trieLog)) }

// patchElig brings w's kept base sets up to date with the trie changes
// since they were computed, which the log must hold.
func (s *Scheduler) patchElig(w *worker) {
	list := w.elig
	for _, c := range s.trieLog[w.eligGen-s.trieLogFrom:] {
		if c.added {
			if subsetOf(c.bi.set.ids, w.labelIDs) {
				list = append(list, c.bi)
			}
		} else if i := slices.Index(list, c.bi); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
	}
	w.elig, w.eligGen = list, s.trieGen()
}

// insert adds the path of bi's set below n and puts bi at its end.
func (n *trieNode) insert(bi *baseIndex) {
	for _, l := range bi.set.ids {
		k := n.child(l)
		if k == nil {
			k = &trieNode{label: l, parent: n}
			n.kids = append(n.kids, k)
			if n.byID != nil {
				n.byID[l] = k
			} else if len(n.kids) > trieMapThreshold {
				n.byID = make(map[labelID]*trieNode, len(n.kids))
				for _, x := range n.kids {
					n.byID[x.label] = x
				}
			}
		}
		n = k
	}
	n.bi = bi
	bi.node = n
}

// remove takes bi off its node and prunes the path it leaves unused.
func (n *trieNode) remove(bi *baseIndex) {
	m := bi.node
	m.bi = nil
	bi.node = nil
	for m.parent != nil && m.bi == nil && len(m.kids) == 0 {
		p := m.parent
		i := slices.Index(p.kids, m)
		p.kids = slices.Delete(p.kids, i, i+1)
		if p.byID != nil {
			delete(p.byID, m.label)
			if len(p.kids) <= trieMapThreshold/2 {
				p.byID = nil
			}
		}
		m = p
	}
}

// eligPair says that base index bi is contained in the labels of worker wi
// (an index into the workers being examined).
type eligPair struct {
	wi int32
	bi *baseIndex
}

// collectFor appends (wi, bi) for every base index below n (n's own
// excluded) whose set is contained in ids, the worker's labels after
// n.label. The label table must have the worker's labels marked.
func (n *trieNode) collectFor(t *labelTable, ids []labelID, wi int32, out []eligPair) []eligPair {
	if len(n.kids) == 0 || len(ids) == 0 {
		return out
	}
	if len(n.kids) <= len(ids) {
		for _, k := range n.kids {
			if t.has(k.label) {
				i, _ := slices.BinarySearch(ids, k.label)
				if k.bi != nil {
					out = append(out, eligPair{wi, k.bi})
				}
				out = k.collectFor(t, ids[i+1:], wi, out)
			}
		}
		return out
	}
	for i, l := range ids {
		if k := n.child(l); k != nil {
			if k.bi != nil {
				out = append(out, eligPair{wi, k.bi})
			}
			out = k.collectFor(t, ids[i+1:], wi, out)
		}
	}
	return out
}

// eligibility finds, for many workers at once, the base sets their labels
// contain (eligible, eligibleKeep), and keeps for a preemption step a row
// per provisionable label over its victims (row).
//
// The walk. Workers are numbered by their index in the slice examined (n
// of them). Those whose kept result (worker.elig) is current or can be
// brought up to date from the trie log are served that way; the others,
// the walked workers (the bitset all), are found by one walk of the trie
// from the root carrying the set of walked workers that hold every label
// on the path: a child's set is the parent's AND the workers carrying the
// child's label, pruned when empty, and (worker, base index) is recorded
// at every node that ends a set. Where the workers left on a path are few
// compared to the work of one bitset step
// (8·count·min(children, 32) < children·words), the walk switches to
// per-worker walks (collectFor), which iterate either the node's children
// or the worker's remaining labels, whichever is shorter. The pairs are
// bucketed per worker by a counting sort; each worker's list is in no
// particular order.
//
// What it holds: rows. The walk reads, per child, the workers carrying its
// label, and a preemption step's provision-match queries read, per
// provisionable label, the victims carrying it; nothing else reads a
// label's workers. So a label gets a row only when a reader can ask for
// it: a label some base set in the trie contains (labelTable.inTrie) a row
// of the walked workers carrying it, and, for a preemption step
// (eligibleKeep), a label some provisionable set of a provVariant contains
// (labelTable.inProv) a row of all the examined workers carrying it. No
// other label has a row: not the unique id:<bot> of every Swarming bot
// that no request asks for, nor a label no such worker carries; row then
// reports none, which its readers take as "no worker carries it". A pass
// whose idle workers are all served from their kept results builds no row.
// A row is dense, a bitset of the n workers (words = ⌈n/64⌉ words), when
// at least one worker in 256 carries its label (rowDensity·count ≥ words),
// and sparse otherwise: the ascending list of the workers carrying it
// (int32s in post). The walk ANDs a dense child row into the path's set
// in words steps and, for a sparse child, looks each listed worker up in
// the path's set and walks that worker alone below the child
// (collectOne); a provision-match query ANDs dense rows word by word, or
// looks only at the victims of the shortest sparse row (victims.go).
//
// Invariants. Between a call and release: rowOf[l] is not 0 exactly for
// the labels in used, and rows[rowOf[l]-1] holds exactly the workers
// described above, a dense row as bits of slab, a sparse one ascending in
// post. After release every rowOf entry is 0, so no row outlives its call.
// After a call every worker examined has a current kept result
// (worker.eligGen is the trie's generation).
//
// Costs. Serving a worker from its kept result is O(1), from the log O(the
// changes since). Building the rows is O(labels of the workers examined)
// plus zeroing the dense rows, which take at most rowDensity words per
// (worker, label) pair they hold (sparse ones half a word): rows take
// memory and time linear in the workers examined and their labels that a
// base or provisionable set contains, never workers × labels, so n idle
// bots with unique ids cost O(n), not n²/64 words. The walk is O(trie
// nodes some walked worker reaches × words) for bitset steps, plus the
// per-worker walks. The memory is the Scheduler's scratch, kept between
// calls and grown to the largest call's.
type eligibility struct {
	words  int        // bitset width: (workers examined + 63) / 64
	rowOf  []int32    // label id -> 1 + index of its row in rows (0: none)
	rows   []labelRow // the rows of the labels in used, in that order
	used   []labelID  // the labels with a row
	slab   []uint64   // the dense rows' bitsets, words each
	post   []int32    // the sparse rows' workers, ascending per row
	stack  [][]uint64 // per depth of the walk: the path's worker bitset
	pairs  []eligPair
	counts []int32
	all    []uint64 // the workers to walk
	mode   rowMode  // tests force dense or sparse rows
}

// labelRow is where a label's row is: words words of slab from off when
// dense, else n workers of post from off.
type labelRow struct {
	off   int
	n     int32 // workers carrying the label
	dense bool
}

// rowDensity: a row is dense when rowDensity·(its workers) ≥ words.
const rowDensity = 4

// rowMode chooses between dense and sparse rows: by density, or (tests)
// always one kind.
type rowMode uint8

const (
	rowsByDensity rowMode = iota
	rowsAllDense
	rowsAllSparse
)

// dense reports whether a row of n workers is a bitset.
func (e *eligibility) dense(n int32) bool {
	switch e.mode {
	case rowsAllDense:
		return true
	case rowsAllSparse:
		return false
	}
	return rowDensity*int(n) >= e.words
}

// eligible brings up to date, for each worker of ws, the base indexes
// whose sets its labels contain (worker.elig).
func (s *Scheduler) eligible(ws []*worker) {
	s.eligibleFor(ws, false)
	s.elig.release()
}

// eligibleKeep is eligible, keeping until release a row of every label of
// a provisionable set over the workers of ws (row), for the
// provision-match queries of a preemption step.
func (s *Scheduler) eligibleKeep(ws []*worker) {
	s.eligibleFor(ws, true)
}

// row returns the row of label l over the workers examined by the last
// eligibleKeep: its bitset when dense, else its workers in ascending
// order; ok is false when l has no row, that is when no worker examined
// carries it (for a label of a provisionable set). Valid until release.
func (e *eligibility) row(l labelID) (dense []uint64, sparse []int32, ok bool) {
	if int(l) >= len(e.rowOf) || e.rowOf[l] == 0 {
		return nil, nil, false
	}
	r := e.rows[e.rowOf[l]-1]
	if r.dense {
		return e.slab[r.off : r.off+e.words], nil, true
	}
	return nil, e.post[r.off : r.off+int(r.n)], true
}

// release forgets the rows of the last call.
func (e *eligibility) release() {
	for _, l := range e.used {
		e.rowOf[l] = 0
	}
	e.used = e.used[:0]
	e.rows = e.rows[:0]
}

// eligibleFor is eligible, keeping the rows until release; with prov, the
// labels of provisionable sets get rows over every worker of ws.
func (s *Scheduler) eligibleFor(ws []*worker, prov bool) {
	e := &s.elig
	if len(ws) == 0 {
		return
	}
	e.words = bitset.Words(len(ws))
	// The trie changes between passes only by a base set entering or
	// leaving it, and a worker's labels only when it polls idle, so each
	// worker keeps the result of its last walk, brought up to date from
	// the log of trie changes; only workers the log cannot serve (new
	// labels, or walked before the log's start) are walked.
	all := slices.Grow(e.all[:0], e.words)[:e.words]
	clear(all)
	stale := false
	for i, w := range ws {
		switch {
		case w.eligGen == s.trieGen():
		case w.eligGen != 0 && w.eligGen >= s.trieLogFrom:
			s.patchElig(w)
		default:
			bitset.Add(all, i)
			stale = true
		}
	}
	e.all = all
	if stale || prov {
		s.buildRows(ws, all, prov)
	}
	if !stale {
		return
	}
	e.pairs = e.pairs[:0]
	s.eligWalk(&s.trie, all, 0, ws)
	// Bucket the pairs by worker.
	e.counts = slices.Grow(e.counts[:0], len(ws)+1)[:len(ws)+1]
	clear(e.counts)
	for _, p := range e.pairs {
		e.counts[p.wi+1]++
	}
	for i := 1; i <= len(ws); i++ {
		e.counts[i] += e.counts[i-1]
	}
	flat := make([]*baseIndex, len(e.pairs))
	pos := slices.Clone(e.counts[:len(ws)])
	for _, p := range e.pairs {
		flat[pos[p.wi]] = p.bi
		pos[p.wi]++
	}
	bitset.ForEach(all, func(i int) {
		a, b := e.counts[i], e.counts[i+1]
		ws[i].elig, ws[i].eligGen = flat[a:b:b], s.trieGen()
	})
	clear(e.pairs)
}

// buildRows makes the rows (see eligibility): for each worker of walk (a
// bitset over ws), its labels in the trie, and with prov, for every worker
// of ws, its labels in provisionable sets. It counts each row's workers,
// lays the rows out (dense or sparse by their counts), then fills them in
// worker order, so that sparse rows come out ascending.
func (s *Scheduler) buildRows(ws []*worker, walk []uint64, prov bool) {
	e, t := &s.elig, s.labels
	if n := len(t.names); len(e.rowOf) < n {
		e.rowOf = append(e.rowOf, make([]int32, n-len(e.rowOf))...)
	}
	for fill := range 2 {
		for i, w := range ws {
			walked := bitset.Has(walk, i)
			if !walked && !prov {
				continue
			}
			for _, l := range w.labelIDs {
				if !(walked && t.inTrie[l] > 0 || prov && t.inProv[l] > 0) {
					continue
				}
				ri := e.rowOf[l]
				if fill == 0 {
					if ri == 0 {
						e.rows = append(e.rows, labelRow{})
						ri = int32(len(e.rows))
						e.rowOf[l] = ri
						e.used = append(e.used, l)
					}
					e.rows[ri-1].n++
					continue
				}
				r := &e.rows[ri-1]
				if r.dense {
					bitset.Add(e.slab[r.off:r.off+e.words], i)
				} else {
					e.post[r.off+int(r.n)] = int32(i)
				}
				r.n++
			}
		}
		if fill == 1 {
			break
		}
		nSlab, nPost := 0, 0
		for j := range e.rows {
			r := &e.rows[j]
			r.dense = e.dense(r.n)
			if r.dense {
				r.off = nSlab
				nSlab += e.words
			} else {
				r.off = nPost
				nPost += int(r.n)
			}
			r.n = 0 // counted again as the row fills
		}
		e.slab = slices.Grow(e.slab[:0], nSlab)[:nSlab]
		clear(e.slab)
		e.post = slices.Grow(e.post[:0], nPost)[:nPost]
	}
}

// eligWalk records the pairs of the workers of set (a bitset over ws, all
// holding the labels of n's path) and the base indexes at or below n.
func (s *Scheduler) eligWalk(n *trieNode, set []uint64, depth int, ws []*worker) {
	e := &s.elig
	cnt := 0
	for _, x := range set {
		cnt += bits.OnesCount64(x)
	}
	if n.bi != nil {
		bitset.ForEach(set, func(i int) { e.pairs = append(e.pairs, eligPair{int32(i), n.bi}) })
	}
	if len(n.kids) == 0 {
		return
	}
	if 8*cnt*min(len(n.kids), 32) < len(n.kids)*e.words {
		bitset.ForEach(set, func(i int) {
			w := ws[i]
			s.labels.mark(w.labelIDs)
			ids := w.labelIDs
			if n.parent != nil {
				j, _ := slices.BinarySearch(ids, n.label)
				ids = ids[j+1:]
			}
			e.pairs = n.collectFor(s.labels, ids, int32(i), e.pairs)
		})
		return
	}
	if len(e.stack) <= depth {
		e.stack = append(e.stack, nil)
	}
	if len(e.stack[depth]) < e.words {
		e.stack[depth] = make([]uint64, e.words)
	}
	next := e.stack[depth][:e.words]
	for _, k := range n.kids {
		ri := e.rowOf[k.label]
		if ri == 0 {
			continue // no walked worker carries k.label
		}
		r := e.rows[ri-1]
		if !r.dense {
			for _, i := range e.post[r.off : r.off+int(r.n)] {
				if bitset.Has(set, int(i)) {
					s.collectOne(k, int(i), ws)
				}
			}
			continue
		}
		b := e.slab[r.off : r.off+e.words]
		var any uint64
		for j := range next {
			next[j] = set[j] & b[j]
			any |= next[j]
		}
		if any != 0 {
			s.eligWalk(k, next, depth+1, ws)
		}
	}
}

// collectOne records the pairs of worker i of ws, which holds the labels
// of k's path, and the base indexes at or below k.
func (s *Scheduler) collectOne(k *trieNode, i int, ws []*worker) {
	e := &s.elig
	if k.bi != nil {
		e.pairs = append(e.pairs, eligPair{int32(i), k.bi})
	}
	if len(k.kids) == 0 {
		return
	}
	w := ws[i]
	s.labels.mark(w.labelIDs)
	j, _ := slices.BinarySearch(w.labelIDs, k.label)
	e.pairs = k.collectFor(s.labels, w.labelIDs[j+1:], int32(i), e.pairs)
}
