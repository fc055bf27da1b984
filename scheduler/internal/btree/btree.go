// Package btree is an ordered set: a B-tree of (key, value) items with
// distinct keys, ordered by a comparison function.
//
// Every node holds up to MaxItems items in order, in an array inside the
// node (one allocation per node; an internal node has one more allocation,
// for its children), and every node but the root at least MinItems. Insert
// and Delete cost O(log n) comparisons and move at most O(MaxItems) items
// per level; Ascend and AscendAfter cost O(log n) comparisons to find
// where they start, then O(1) amortised per item they visit, and stop as
// soon as the callback says so: reading the first k items after a key
// costs O(log n + k) whatever the size of the set. An item costs its key
// and value plus about half of that again in unused node space.
//
// The algorithms are those of CLRS chapter 18 (and of github.com/google/btree):
// a full child is split on the way down an insertion, and a child with
// MinItems items is grown (by stealing from a sibling or merging with one)
// on the way down a deletion, so that neither ever walks back up.
//
// A Set is not safe for concurrent use; reads (Len, Min, Ascend,
// AscendAfter, Get) change nothing and may run concurrently with each
// other.
package btree

// Degree fixes the node size: a node holds at most MaxItems = 2·Degree−1
// items and, except the root, at least MinItems = Degree−1.
const (
	Degree   = 16
	MaxItems = 2*Degree - 1
	MinItems = Degree - 1
)

// Set is an ordered set of items with distinct keys. Cmp must be a total
// order on keys (negative, zero, positive as a is less than, equal to or
// greater than b); it is set before first use and never changed while the
// set holds items. The zero value with Cmp set is an empty set.
type Set[K, V any] struct {
	Cmp  func(a, b K) int
	root *node[K, V]
	n    int
	// Nodes emptied by merges, for the next splits: a set used as a
	// queue (deleting its oldest keys, inserting new ones at the end)
	// merges and splits at the same rate and then allocates nothing.
	free []*node[K, V]
}

// maxFree bounds the nodes a Set keeps for reuse.
const maxFree = 32

// newNode returns an empty node, a leaf unless internal.
func (t *Set[K, V]) newNode(internal bool) *node[K, V] {
	var nd *node[K, V]
	if k := len(t.free); k > 0 {
		nd = t.free[k-1]
		t.free[k-1] = nil
		t.free = t.free[:k-1]
	} else {
		nd = &node[K, V]{}
	}
	if internal && nd.kids == nil {
		nd.kids = new([MaxItems + 1]*node[K, V])
	} else if !internal && nd.kids != nil {
		nd.kids = nil
	}
	return nd
}

// release keeps nd, which nothing points to any more, for reuse; its items
// and children are cleared so that it holds nothing alive.
func (t *Set[K, V]) release(nd *node[K, V]) {
	if len(t.free) >= maxFree {
		return
	}
	clear(nd.items[:nd.n])
	nd.n = 0
	if nd.kids != nil {
		clear(nd.kids[:])
	}
	t.free = append(t.free, nd)
}

type item[K, V any] struct {
	k K
	v V
}

// node is a B-tree node: items[:n] in order and, in an internal node,
// kids[:n+1], kids[i] holding the items between items[i-1] and items[i].
type node[K, V any] struct {
	n     int
	items [MaxItems]item[K, V]
	kids  *[MaxItems + 1]*node[K, V] // nil in a leaf
}

// Len is the number of items.
func (t *Set[K, V]) Len() int { return t.n }

// find returns the index of the first item of nd not less than k, and
// whether it equals k.
func (t *Set[K, V]) find(nd *node[K, V], k K) (int, bool) {
	lo, hi := 0, nd.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.Cmp(nd.items[m].k, k) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < nd.n && t.Cmp(nd.items[lo].k, k) == 0
}

// Get returns the value of the item with key k.
func (t *Set[K, V]) Get(k K) (V, bool) {
	nd := t.root
	for nd != nil {
		i, found := t.find(nd, k)
		if found {
			return nd.items[i].v, true
		}
		if nd.kids == nil {
			break
		}
		nd = nd.kids[i]
	}
	var zero V
	return zero, false
}

// Insert adds the item (k, v). If an item with key k is present, its value
// becomes v and Insert returns false.
func (t *Set[K, V]) Insert(k K, v V) bool {
	if t.root == nil {
		t.root = t.newNode(false)
	}
	if t.root.n == MaxItems {
		old := t.root
		mid, right := t.split(old)
		t.root = t.newNode(true)
		t.root.n = 1
		t.root.items[0] = mid
		t.root.kids[0], t.root.kids[1] = old, right
	}
	if t.insert(t.root, item[K, V]{k, v}) {
		t.n++
		return true
	}
	return false
}

// insert adds it below nd, which is not full.
func (t *Set[K, V]) insert(nd *node[K, V], it item[K, V]) bool {
	for {
		i, found := t.find(nd, it.k)
		if found {
			nd.items[i].v = it.v
			return false
		}
		if nd.kids == nil {
			nd.insertItem(i, it)
			return true
		}
		if nd.kids[i].n == MaxItems {
			mid, right := t.split(nd.kids[i])
			nd.insertItem(i, mid)
			nd.insertKid(i+1, right)
			switch c := t.Cmp(it.k, mid.k); {
			case c == 0:
				nd.items[i].v = it.v
				return false
			case c > 0:
				i++
			}
		}
		nd = nd.kids[i]
	}
}

// split moves the upper half of a full nd to a new node and returns the
// middle item with that node.
func (t *Set[K, V]) split(nd *node[K, V]) (item[K, V], *node[K, V]) {
	const mid = MaxItems / 2
	right := t.newNode(nd.kids != nil)
	right.n = MaxItems - mid - 1
	copy(right.items[:], nd.items[mid+1:])
	it := nd.items[mid]
	clear(nd.items[mid:])
	if nd.kids != nil {
		copy(right.kids[:], nd.kids[mid+1:])
		clear(nd.kids[mid+1:])
	}
	nd.n = mid
	return it, right
}

func (nd *node[K, V]) insertItem(i int, it item[K, V]) {
	copy(nd.items[i+1:nd.n+1], nd.items[i:nd.n])
	nd.items[i] = it
	nd.n++
}

// insertKid makes c the child i; call it after insertItem, so that nd.n is
// already the new item count.
func (nd *node[K, V]) insertKid(i int, c *node[K, V]) {
	copy(nd.kids[i+1:nd.n+1], nd.kids[i:nd.n])
	nd.kids[i] = c
}

func (nd *node[K, V]) removeItem(i int) item[K, V] {
	it := nd.items[i]
	copy(nd.items[i:], nd.items[i+1:nd.n])
	nd.n--
	nd.items[nd.n] = item[K, V]{}
	return it
}

// removeKid removes child i; call it after removeItem, so that nd.n is
// already the new item count.
func (nd *node[K, V]) removeKid(i int) *node[K, V] {
	c := nd.kids[i]
	copy(nd.kids[i:], nd.kids[i+1:nd.n+2])
	nd.kids[nd.n+1] = nil
	return c
}

// Delete removes the item with key k and returns its value.
func (t *Set[K, V]) Delete(k K) (V, bool) {
	var zero V
	if t.root == nil {
		return zero, false
	}
	it, ok := t.remove(t.root, k, false)
	if r := t.root; r.n == 0 {
		if r.kids != nil {
			t.root = r.kids[0] // the root's last two children merged
			t.release(r)
		} else {
			t.root = nil // the set is empty
		}
	}
	if !ok {
		return zero, false
	}
	t.n--
	return it.v, true
}

// remove deletes the item with key k (the greatest item when max) from
// below nd, which has more than MinItems items unless it is the root.
func (t *Set[K, V]) remove(nd *node[K, V], k K, max bool) (item[K, V], bool) {
	for {
		var i int
		var found bool
		if max {
			i = nd.n
		} else {
			i, found = t.find(nd, k)
		}
		if nd.kids == nil {
			switch {
			case found:
				return nd.removeItem(i), true
			case max && nd.n > 0:
				return nd.removeItem(nd.n - 1), true
			}
			return item[K, V]{}, false
		}
		if nd.kids[i].n <= MinItems {
			t.grow(nd, i)
			continue // the items moved: look again in nd
		}
		if found {
			// The child before the item has more than MinItems: its
			// greatest item takes the removed one's place.
			out := nd.items[i]
			nd.items[i], _ = t.remove(nd.kids[i], k, true)
			return out, true
		}
		nd = nd.kids[i]
	}
}

// grow gives nd's child i, which has MinItems items, one more: an item
// through nd from a sibling with more than MinItems, else the merge of the
// child with a sibling and the item between them (nd loses an item).
func (t *Set[K, V]) grow(nd *node[K, V], i int) {
	c := nd.kids[i]
	switch {
	case i > 0 && nd.kids[i-1].n > MinItems:
		l := nd.kids[i-1]
		c.insertItem(0, nd.items[i-1])
		nd.items[i-1] = l.removeItem(l.n - 1)
		if c.kids != nil {
			c.insertKid(0, l.removeKid(l.n+1))
		}
	case i < nd.n && nd.kids[i+1].n > MinItems:
		r := nd.kids[i+1]
		c.items[c.n] = nd.items[i]
		c.n++
		nd.items[i] = r.removeItem(0)
		if c.kids != nil {
			c.kids[c.n] = r.removeKid(0)
		}
	default:
		if i == nd.n {
			i--
			c = nd.kids[i]
		}
		r := nd.kids[i+1]
		c.items[c.n] = nd.removeItem(i)
		nd.removeKid(i + 1)
		copy(c.items[c.n+1:], r.items[:r.n])
		if c.kids != nil {
			copy(c.kids[c.n+1:], r.kids[:r.n+1])
		}
		c.n += 1 + r.n
		t.release(r)
	}
}

// Min returns the least item.
func (t *Set[K, V]) Min() (K, V, bool) {
	nd := t.root
	if nd == nil || nd.n == 0 {
		var k K
		var v V
		return k, v, false
	}
	for nd.kids != nil {
		nd = nd.kids[0]
	}
	return nd.items[0].k, nd.items[0].v, true
}

// Ascend calls f on every item in order until f returns false.
func (t *Set[K, V]) Ascend(f func(k K, v V) bool) {
	if t.root != nil {
		ascend(t.root, f)
	}
}

// AscendAfter calls f on every item whose key is greater than after, in
// order, until f returns false.
func (t *Set[K, V]) AscendAfter(after K, f func(k K, v V) bool) {
	if t.root != nil {
		t.ascendAfter(t.root, after, f)
	}
}

// ascendAfter descends to the first item after the key; the subtrees to its
// right are wholly after it and are visited without comparisons.
func (t *Set[K, V]) ascendAfter(nd *node[K, V], after K, f func(K, V) bool) bool {
	// The first item greater than after.
	lo, hi := 0, nd.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.Cmp(nd.items[m].k, after) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if nd.kids != nil && !t.ascendAfter(nd.kids[lo], after, f) {
		return false
	}
	for i := lo; i < nd.n; i++ {
		if !f(nd.items[i].k, nd.items[i].v) {
			return false
		}
		if nd.kids != nil && !ascend(nd.kids[i+1], f) {
			return false
		}
	}
	return true
}

// ascend visits nd's items and subtrees in order.
func ascend[K, V any](nd *node[K, V], f func(K, V) bool) bool {
	for i := 0; i < nd.n; i++ {
		if nd.kids != nil && !ascend(nd.kids[i], f) {
			return false
		}
		if !f(nd.items[i].k, nd.items[i].v) {
			return false
		}
	}
	if nd.kids != nil {
		return ascend(nd.kids[nd.n], f)
	}
	return true
}
