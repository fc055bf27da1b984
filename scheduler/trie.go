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
// over just them.
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

// trieInsert adds bi's set to the trie, logging the change.
func (s *Scheduler) trieInsert(bi *baseIndex) {
	s.trie.insert(bi)
	s.logTrie(bi, true)
}

// trieRemove takes bi's set out of the trie, logging the change.
func (s *Scheduler) trieRemove(bi *baseIndex) {
	s.trie.remove(bi)
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
// contain. It builds one bitset of workers per label they hold, walks the
// trie once from the root carrying the bitset of workers that hold every
// label on the path (a child's set is the parent's AND the child label's
// bitset, pruned when empty), and records (worker, base index) at every
// node that ends a set. Where the workers left on a path are few compared
// to the work of one bitset step
// (8·count·min(children, 32) < children·words), it switches to per-worker
// walks (collectFor), which iterate
// either the node's children or the worker's remaining labels, whichever is
// shorter. The pairs are bucketed per worker by a counting sort. The cost
// is proportional to the trie nodes some worker reaches times the bitset
// width, never to base sets off those paths. The result lists, per worker,
// the base indexes in no particular order.
//
// It runs once per pass for the idle workers and once per preemption step
// for the victims; its memory is kept between calls. The per-label bitsets
// are built for every worker asked about, also those the trie log serves,
// since a preemption step reads them for its provision-match queries
// (eligibleKeep, labelBits, release).
type eligibility struct {
	words    int        // bitset width: (workers examined + 63) / 64
	slab     []uint64   // per label held by some worker: a bitset of workers
	labelOff []int32    // label id -> 1 + index of its bitset in slab (0: none)
	used     []labelID  // the labels with a bitset in slab
	stack    [][]uint64 // per depth of the walk: the path's worker bitset
	pairs    []eligPair
	counts   []int32
	all      []uint64 // the workers to walk
}

// eligible returns, for each worker of ws, the base indexes whose sets its
// labels contain.
func (s *Scheduler) eligible(ws []*worker) [][]*baseIndex {
	out := s.eligibleKeep(ws)
	s.elig.release()
	return out
}

// labelBits returns the bitset of the examined workers carrying l, or nil;
// valid between eligibleKeep and release.
func (e *eligibility) labelBits(l labelID) []uint64 {
	if int(l) >= len(e.labelOff) || e.labelOff[l] == 0 {
		return nil
	}
	off := int(e.labelOff[l])
	return e.slab[(off-1)*e.words : off*e.words]
}

// release forgets the per-label bitsets of the last eligibleKeep.
func (e *eligibility) release() {
	for _, l := range e.used {
		e.labelOff[l] = 0
	}
	e.used = e.used[:0]
}

// eligibleKeep is eligible, keeping the per-label bitsets until release.
func (s *Scheduler) eligibleKeep(ws []*worker) [][]*baseIndex {
	e := &s.elig
	out := make([][]*baseIndex, len(ws))
	if len(ws) == 0 {
		return out
	}
	e.words = bitset.Words(len(ws))
	if n := len(s.labels.names); len(e.labelOff) < n {
		e.labelOff = append(e.labelOff, make([]int32, n-len(e.labelOff))...)
	}
	e.slab = e.slab[:0]
	for i, w := range ws {
		for _, l := range w.labelIDs {
			off := e.labelOff[l]
			if off == 0 {
				e.slab = append(e.slab, make([]uint64, e.words)...)
				off = int32(len(e.slab) / e.words)
				e.labelOff[l] = off
				e.used = append(e.used, l)
			}
			bitset.Add(e.slab[int(off-1)*e.words:int(off)*e.words], i)
		}
	}
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
			continue
		}
		out[i] = w.elig
	}
	e.all = all
	if !stale {
		return out
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
		out[i] = flat[a:b:b]
		ws[i].elig, ws[i].eligGen = out[i], s.trieGen()
	})
	clear(e.pairs)
	return out
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
		off := e.labelOff[k.label]
		if off == 0 {
			continue
		}
		b := e.slab[int(off-1)*e.words : int(off)*e.words]
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
