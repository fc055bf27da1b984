package btree

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// key is the scheduler's kind of key: a time, then an id.
type key struct {
	t  int64
	id string
}

func cmpKey(a, b key) int {
	if c := cmp.Compare(a.t, b.t); c != 0 {
		return c
	}
	return strings.Compare(a.id, b.id)
}

// counting returns a set whose comparisons add to *n: the test's own
// instrument, so that no counter lives in the set.
func counting(n *int) *Set[key, int] {
	return &Set[key, int]{Cmp: func(a, b key) int { *n++; return cmpKey(a, b) }}
}

// check verifies the B-tree's shape: items in order within and across
// nodes, every node but the root holding MinItems..MaxItems items, every
// leaf at the same depth, unused slots cleared, and the count.
func check[K, V any](t *Set[K, V]) error {
	if t.root == nil {
		if t.n != 0 {
			return fmt.Errorf("no root, %d items counted", t.n)
		}
		return nil
	}
	count, leafDepth := 0, -1
	var prev *K
	var walk func(nd *node[K, V], depth int) error
	walk = func(nd *node[K, V], depth int) error {
		if nd != t.root && (nd.n < MinItems || nd.n > MaxItems) {
			return fmt.Errorf("a node at depth %d holds %d items", depth, nd.n)
		}
		if nd == t.root && nd.n == 0 {
			return fmt.Errorf("an empty root")
		}
		var zero item[K, V]
		for i := nd.n; i < MaxItems; i++ {
			if any(nd.items[i]) != any(zero) {
				return fmt.Errorf("slot %d of a node of %d items is not cleared", i, nd.n)
			}
		}
		if nd.kids == nil {
			if leafDepth < 0 {
				leafDepth = depth
			} else if depth != leafDepth {
				return fmt.Errorf("leaves at depths %d and %d", leafDepth, depth)
			}
		} else {
			for i := nd.n + 1; i <= MaxItems; i++ {
				if nd.kids[i] != nil {
					return fmt.Errorf("child slot %d of a node of %d items is set", i, nd.n)
				}
			}
		}
		for i := 0; i <= nd.n; i++ {
			if nd.kids != nil {
				if nd.kids[i] == nil {
					return fmt.Errorf("child %d of %d missing", i, nd.n+1)
				}
				if err := walk(nd.kids[i], depth+1); err != nil {
					return err
				}
			}
			if i < nd.n {
				if prev != nil && t.Cmp(*prev, nd.items[i].k) >= 0 {
					return fmt.Errorf("items out of order: %v then %v", *prev, nd.items[i].k)
				}
				prev = &nd.items[i].k
				count++
			}
		}
		return nil
	}
	if err := walk(t.root, 0); err != nil {
		return err
	}
	if count != t.n {
		return fmt.Errorf("%d items in the tree, %d counted", count, t.n)
	}
	return nil
}

func collect(t *Set[key, int], after *key, limit int) []key {
	var out []key
	f := func(k key, v int) bool {
		out = append(out, k)
		return len(out) < limit
	}
	if after == nil {
		t.Ascend(f)
	} else {
		t.AscendAfter(*after, f)
	}
	return out
}

// Random inserts (new keys and replacements), deletions (present and
// absent keys) and lookups agree with a sorted slice, keep the tree's
// shape, and ascending from anywhere gives the slice's items after that
// point. Keys are drawn from few times and ids, so that ties on the time
// and deletions down to an empty tree both happen.
func TestSetAgainstSortedSlice(t *testing.T) {
	for _, n := range []int{8, 100, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 7))
			s := &Set[key, int]{Cmp: cmpKey}
			var ref []key
			vals := map[key]int{}
			draw := func() key {
				return key{int64(rng.IntN(n / 4)), fmt.Sprintf("id%d", rng.IntN(8))}
			}
			for step := range 20 * n {
				k := draw()
				i, present := slices.BinarySearchFunc(ref, k, cmpKey)
				// Phases: grow to about n items, then shrink to nothing.
				grow := (step/(2*n))%2 == 0
				switch op := rng.IntN(10); {
				case op < 6 == grow:
					v := rng.Int()
					if added := s.Insert(k, v); added == present {
						t.Fatalf("step %d: Insert(%v) added=%v, present=%v", step, k, added, present)
					}
					if !present {
						ref = slices.Insert(ref, i, k)
					}
					vals[k] = v
				case op < 9:
					v, ok := s.Delete(k)
					if ok != present || ok && v != vals[k] {
						t.Fatalf("step %d: Delete(%v) = %d, %v; want %d, %v", step, k, v, ok, vals[k], present)
					}
					if present {
						ref = slices.Delete(ref, i, i+1)
						delete(vals, k)
					}
				default:
					v, ok := s.Get(k)
					if ok != present || ok && v != vals[k] {
						t.Fatalf("step %d: Get(%v) = %d, %v; want %d, %v", step, k, v, ok, vals[k], present)
					}
				}
				if s.Len() != len(ref) {
					t.Fatalf("step %d: Len %d, want %d", step, s.Len(), len(ref))
				}
				if step%97 != 0 {
					continue
				}
				if err := check(s); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if got := collect(s, nil, len(ref)+1); !slices.Equal(got, ref) {
					t.Fatalf("step %d: Ascend gives %v, want %v", step, got, ref)
				}
				after := draw()
				j, found := slices.BinarySearchFunc(ref, after, cmpKey)
				if found {
					j++
				}
				limit := 1 + rng.IntN(20)
				want := ref[j:min(len(ref), j+limit)]
				if got := collect(s, &after, limit); !slices.Equal(got, want) {
					t.Fatalf("step %d: AscendAfter(%v) limit %d gives %v, want %v", step, after, limit, got, want)
				}
				mk, mv, ok := s.Min()
				if ok != (len(ref) > 0) || ok && (mk != ref[0] || mv != vals[ref[0]]) {
					t.Fatalf("step %d: Min = %v %d %v, want %v", step, mk, mv, ok, ref)
				}
			}
			if err := check(s); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Deleting every item, in an order unrelated to the keys, empties the tree
// with its shape kept after each deletion.
func TestDeleteAll(t *testing.T) {
	s := &Set[key, int]{Cmp: cmpKey}
	const n = 5000
	for i := range n {
		s.Insert(key{int64(i % 37), fmt.Sprint(i)}, i)
	}
	if err := check(s); err != nil {
		t.Fatal(err)
	}
	for _, i := range rand.New(rand.NewPCG(3, 4)).Perm(n) {
		if v, ok := s.Delete(key{int64(i % 37), fmt.Sprint(i)}); !ok || v != i {
			t.Fatalf("Delete(%d) = %d, %v", i, v, ok)
		}
		if s.Len()%101 == 0 {
			if err := check(s); err != nil {
				t.Fatalf("%d left: %v", s.Len(), err)
			}
		}
	}
	if s.Len() != 0 || s.root != nil {
		t.Fatalf("emptied set: Len %d, root %v", s.Len(), s.root)
	}
	if _, _, ok := s.Min(); ok {
		t.Fatal("Min of an empty set found an item")
	}
	s.Ascend(func(key, int) bool { t.Fatal("Ascend of an empty set visited an item"); return true })
}

// A callback that returns false is never called again, from any depth of
// the tree.
func TestAscendStops(t *testing.T) {
	s := &Set[key, int]{Cmp: cmpKey}
	for i := range 10000 {
		s.Insert(key{int64(i), ""}, i)
	}
	for _, stopAt := range []int{0, 1, 15, 16, 17, 500, 9998, 9999} {
		for _, after := range []*key{nil, {int64(stopAt / 2), "x"}} {
			calls, stopped := 0, false
			f := func(k key, v int) bool {
				if stopped {
					t.Fatalf("called again after returning false (stop at %d, after %v)", stopAt, after)
				}
				calls++
				stopped = v >= stopAt
				return !stopped
			}
			if after == nil {
				s.Ascend(f)
			} else {
				s.AscendAfter(*after, f)
			}
			start := 0
			if after != nil {
				start = int(after.t) + 1
			}
			if want := max(1, stopAt-start+1); calls != want {
				t.Errorf("stop at %d after %v: %d calls, want %d", stopAt, after, calls, want)
			}
		}
	}
}

// The costs the scheduler relies on, counted in comparisons: finding where
// a page starts costs O(log n), whatever the page's position and length,
// and reading the page itself costs no comparison; an insertion or a
// deletion costs O(log n). A set that scanned (compared every item up to
// the start, or filtered the items) would fail at 200,000 items.
func TestCostsAreLogarithmic(t *testing.T) {
	var n int
	s := counting(&n)
	const size = 200_000
	rng := rand.New(rand.NewPCG(5, 6))
	for _, i := range rng.Perm(size) {
		s.Insert(key{int64(i / 3), fmt.Sprintf("%06d", i)}, i)
	}
	// A B-tree of 200,000 items with nodes of 15..31 items has at most
	// 5 levels; a binary search in a node compares at most 6 times (5 to
	// find the place, 1 for equality).
	const perOp = 5 * 6
	height := 0
	for nd := s.root; nd != nil; height++ {
		if nd.kids == nil {
			break
		}
		nd = nd.kids[0]
	}
	if height >= 5 {
		t.Fatalf("height %d; the bound assumes at most 5 levels", height+1)
	}
	for _, page := range []int{1, 1000, 20000} {
		for _, start := range []int{0, size / 2, size - page} {
			after := key{int64((start - 1) / 3), fmt.Sprintf("%06d", start-1)}
			n = 0
			got := 0
			s.AscendAfter(after, func(k key, v int) bool {
				got++
				return got < page
			})
			if got != page {
				t.Fatalf("page of %d from %d read %d items", page, start, got)
			}
			if n > perOp {
				t.Errorf("page of %d from %d: %d comparisons, want at most %d", page, start, n, perOp)
			}
			n = 0
			got = 0
			s.Ascend(func(key, int) bool { got++; return got < page })
			if n != 0 {
				t.Errorf("Ascend of %d items compared %d times", page, n)
			}
		}
	}
	for range 1000 {
		i := rng.IntN(size)
		k := key{int64(i / 3), fmt.Sprintf("%06d", i)}
		n = 0
		if _, ok := s.Delete(k); !ok {
			t.Fatalf("Delete(%v) found nothing", k)
		}
		// Down the tree once, plus one comparison per level for the
		// steps that move items between siblings, plus the search for the
		// greatest item of a subtree (no comparison).
		if n > perOp+5 {
			t.Errorf("Delete: %d comparisons, want at most %d", n, perOp+5)
		}
		n = 0
		s.Insert(k, i)
		if n > perOp+5 {
			t.Errorf("Insert: %d comparisons, want at most %d", n, perOp+5)
		}
	}
	if err := check(s); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkSet(b *testing.B) {
	for _, size := range []int{100_000, 1_000_000} {
		s := &Set[key, int]{Cmp: cmpKey}
		keys := make([]key, size)
		for i := range keys {
			keys[i] = key{int64(i / 3), fmt.Sprintf("task-%08d", i)}
		}
		for _, i := range rand.New(rand.NewPCG(1, 1)).Perm(size) {
			s.Insert(keys[i], i)
		}
		b.Run(fmt.Sprintf("delete_insert_%d", size), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(2, 2))
			for range b.N {
				k := keys[rng.IntN(size)]
				s.Delete(k)
				s.Insert(k, 0)
			}
		})
		b.Run(fmt.Sprintf("page_1000_of_%d", size), func(b *testing.B) {
			after := keys[size/2]
			for range b.N {
				got := 0
				s.AscendAfter(after, func(key, int) bool { got++; return got < 1000 })
			}
		})
	}
}
