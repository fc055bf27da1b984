package scheduler

import (
	"slices"
	"strings"
	"unsafe"
)

// labelID is an interned label string. Ids are reused after a label is no
// longer referenced, so their numeric order means nothing outside one state.
type labelID int32

// labelTable interns label strings ("key:value" dimensions) as labelIDs
// with reference counts, so that label sets are sorted integer slices and
// a label's key is looked up, not parsed. An id is an index into names,
// keys and refs; the ids of unreferenced labels are reused (free), so
// their numeric order means nothing across states and no decision depends
// on it. Interning k labels costs k map lookups.
//
// mark(ids) stamps a generation into a per-label array, so that after
// O(labels of one worker) work, has(l) and hasAll(set) cost O(1) per label
// asked about: sub-pass a tests a provisionable set against a worker that
// way, and the trie's per-worker walk tests children.
//
// inTrie and inProv count, per label, the base sets in the trie and the
// provisionable sets of provVariants that contain it: only such labels
// can decide a match, so only they get an eligibility row (trie.go). A
// label counted there is referenced by the set, so its id is not freed
// while the count is not zero.
type labelTable struct {
	ids    map[string]labelID
	names  []string  // by id; "" for a free id
	keys   []string  // by id: the part before the first ':' ("" when there is none)
	refs   []int32   // by id
	free   []labelID // ids without references, reused first
	inTrie []int32   // by id: base sets in the trie containing it
	inProv []int32   // by id: provisionable sets of provVariants containing it

	// Membership marks for the worker being examined (see mark).
	marks   []uint32
	markGen uint32
}

// newLabelTable returns an empty label table.
func newLabelTable() *labelTable {
	return &labelTable{ids: make(map[string]labelID)}
}

// ref interns name, counting one reference to it.
func (t *labelTable) ref(name string) labelID {
	if id, ok := t.ids[name]; ok {
		t.refs[id]++
		return id
	}
	var id labelID
	key := ""
	if i := strings.IndexByte(name, ':'); i >= 0 {
		key = name[:i]
	}
	if n := len(t.free); n > 0 {
		id = t.free[n-1]
		t.free = t.free[:n-1]
		t.names[id], t.keys[id], t.refs[id] = name, key, 1
	} else {
		id = labelID(len(t.names))
		t.names = append(t.names, name)
		t.keys = append(t.keys, key)
		t.refs = append(t.refs, 1)
		t.marks = append(t.marks, 0)
		t.inTrie = append(t.inTrie, 0)
		t.inProv = append(t.inProv, 0)
	}
	t.ids[name] = id
	return id
}

// unref drops a reference to id, freeing the id at the last.
func (t *labelTable) unref(id labelID) {
	t.refs[id]--
	if t.refs[id] == 0 {
		delete(t.ids, t.names[id])
		t.names[id], t.keys[id] = "", ""
		t.free = append(t.free, id)
	}
}

// count adds d to counts[l] for every label l of ids (counts is inTrie or
// inProv).
func count(counts []int32, ids []labelID, d int32) {
	for _, l := range ids {
		counts[l] += d
	}
}

// mark makes has(l) report whether l is one of ids, until the next mark.
func (t *labelTable) mark(ids []labelID) {
	t.markGen++
	if t.markGen == 0 { // wrapped: clear stale marks
		clear(t.marks)
		t.markGen = 1
	}
	for _, l := range ids {
		t.marks[l] = t.markGen
	}
}

// has reports whether l is marked (see mark).
func (t *labelTable) has(l labelID) bool { return t.marks[l] == t.markGen }

// hasAll reports whether every label of ids is marked.
func (t *labelTable) hasAll(ids []labelID) bool {
	for _, l := range ids {
		if t.marks[l] != t.markGen {
			return false
		}
	}
	return true
}

// labelSet is an interned, immutable set of labels shared by the requests,
// classes and fanout groups that have it, so that comparing two sets is
// comparing pointers and a fanout group is the exact label set, never a
// hash of a concatenation. setTable interns a set under the bytes of its
// sorted ids (O(k log k) for k labels); the empty set is one never-freed
// set. A set holds a reference to each of its labels, released with its
// last reference.
type labelSet struct {
	key   string    // canonical map key: the sorted ids as bytes
	ids   []labelID // ascending
	names []string  // sorted bytewise
	refs  int

	base *baseIndex // set while waiting requests use this as their base labels
}

// setTable interns label sets.
type setTable struct {
	labels *labelTable
	sets   map[string]*labelSet
	empty  *labelSet
}

// newSetTable returns an empty set table over the labels of labels.
func newSetTable(labels *labelTable) *setTable {
	t := &setTable{labels: labels, sets: make(map[string]*labelSet)}
	t.empty = &labelSet{refs: 1 << 30} // never freed
	t.sets[""] = t.empty
	return t
}

// idsKey is the map key of a set: its sorted ids as bytes, sharing their
// memory.
func idsKey(ids []labelID) string {
	if len(ids) == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Pointer(&ids[0])), len(ids)*4)
}

// refNames interns a set given as (possibly unsorted, duplicated) names.
// Looking up a set that exists allocates nothing when the names arrive
// sorted and unique, as Swarming sends them.
func (t *setTable) refNames(names []string) *labelSet {
	if len(names) == 0 {
		return t.empty
	}
	sorted := names
	if !sortedUnique(names) {
		sorted = slices.Clone(names)
		slices.Sort(sorted)
		sorted = slices.Compact(sorted)
	}
	var buf [16]labelID
	ids := buf[:0]
	known := true
	for _, n := range sorted {
		id, ok := t.labels.ids[n]
		if !ok {
			known = false
			break
		}
		ids = append(ids, id)
	}
	if known {
		slices.Sort(ids)
		if s, ok := t.sets[idsKey(ids)]; ok {
			s.refs++
			return s
		}
	}
	if len(sorted) == len(names) && &sorted[0] == &names[0] {
		sorted = slices.Clone(names) // the set keeps its own copy
	}
	ids = make([]labelID, len(sorted))
	for i, n := range sorted {
		ids[i] = t.labels.ref(n)
	}
	slices.Sort(ids)
	s := &labelSet{ids: ids, names: sorted, refs: 1}
	s.key = strings.Clone(idsKey(ids))
	t.sets[s.key] = s
	return s
}

// sortedUnique reports whether names is sorted with no duplicates.
func sortedUnique(names []string) bool {
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			return false
		}
	}
	return true
}

// refUnion interns the union of two sets.
func (t *setTable) refUnion(a, b *labelSet) *labelSet {
	if len(b.ids) == 0 {
		a.refs++
		return a
	}
	if len(a.ids) == 0 {
		b.refs++
		return b
	}
	// The union of two interned sets is usually interned already: find it
	// by its ids, merged on the stack, before building names.
	var buf [32]labelID
	ids := buf[:0]
	i, j := 0, 0
	for i < len(a.ids) || j < len(b.ids) {
		switch {
		case j == len(b.ids) || i < len(a.ids) && a.ids[i] < b.ids[j]:
			ids = append(ids, a.ids[i])
			i++
		case i == len(a.ids) || b.ids[j] < a.ids[i]:
			ids = append(ids, b.ids[j])
			j++
		default:
			ids = append(ids, a.ids[i])
			i, j = i+1, j+1
		}
	}
	if s, ok := t.sets[idsKey(ids)]; ok {
		s.refs++
		return s
	}
	names := make([]string, 0, len(a.names)+len(b.names))
	names = append(append(names, a.names...), b.names...)
	return t.refNames(names)
}

// ref counts one more reference to s.
func (t *setTable) ref(s *labelSet) *labelSet {
	s.refs++
	return s
}

// unref drops a reference to s; at the last, s is forgotten and its
// labels' references dropped.
func (t *setTable) unref(s *labelSet) {
	if s == t.empty {
		return
	}
	s.refs--
	if s.refs == 0 {
		delete(t.sets, s.key)
		for _, l := range s.ids {
			t.labels.unref(l)
		}
	}
}

// subsetOf reports whether every label of a is in the sorted ids b.
func subsetOf(a, b []labelID) bool {
	if len(a) > len(b) {
		return false
	}
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
		j++
	}
	return true
}
