// Package rank turns sorts by an expensive key into sorts of integers.
//
// Ranker numbers many keys by their place among the distinct ones, so that
// a sort by key compares integers: the scheduler's running tasks share few
// distinct costs (tens among thousands of victims in the benchmark's heaviest passes).
// SortByRankAndString then sorts elements by (rank, string) as one integer
// per element, comparing strings only where that integer ties.
package rank

import "slices"

// Ranker ranks keys by their place among the distinct keys. Its zero value
// is ready; it keeps its memory from call to call.
//
// The distinct keys are found through its own open-addressing table
// (linear probing, a power-of-two number of slots, at most half full; a
// slot holds 1 + an index into the distinct keys, 0 when free), so that K
// needs no Go map and its hash can treat as one what == treats as one (for
// floats, +0 and -0). Ranking n keys with d distinct ones costs O(n)
// hashing and probing plus O(d log d) comparisons to order the distinct
// keys.
type Ranker[K comparable] struct {
	slots []int32
	uniq  []K
	order []int32
	rank  []int32
	of    []int32
}

// Ranks returns, for each i < n, the rank of key(i) in less order among
// the distinct keys (highest first if desc). Keys equal under == must hash
// alike, and less must be a strict weak order under which keys that are
// not == are not equivalent. The result is valid until the next call.
func (x *Ranker[K]) Ranks(n int, key func(i int) K, hash func(K) uint64, less func(a, b K) bool, desc bool) []int32 {
	x.uniq = x.uniq[:0]
	x.resize(64, hash)
	uniq := x.uniq
	of := slices.Grow(x.of[:0], n)[:n]
	for i := range n {
		c := key(i)
		if 2*len(uniq) >= len(x.slots) {
			x.uniq = uniq
			x.resize(4*len(x.slots), hash)
		}
		mask := uint64(len(x.slots) - 1)
		j := hash(c) & mask
		for {
			k := x.slots[j]
			if k == 0 {
				uniq = append(uniq, c)
				x.slots[j] = int32(len(uniq))
				of[i] = int32(len(uniq) - 1)
				break
			}
			if uniq[k-1] == c {
				of[i] = k - 1
				break
			}
			j = (j + 1) & mask
		}
	}
	order := slices.Grow(x.order[:0], len(uniq))[:len(uniq)]
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		switch {
		case less(uniq[a], uniq[b]):
			return -1
		case less(uniq[b], uniq[a]):
			return 1
		}
		return 0
	})
	rank := slices.Grow(x.rank[:0], len(uniq))[:len(uniq)]
	for r, i := range order {
		if desc {
			r = len(order) - 1 - r
		}
		rank[i] = int32(r)
	}
	for i := range of {
		of[i] = rank[of[i]]
	}
	x.uniq, x.order, x.rank, x.of = uniq, order, rank, of
	return of
}

// resize empties the table, making it size slots (a power of two), and
// enters the distinct keys found so far.
func (x *Ranker[K]) resize(size int, hash func(K) uint64) {
	x.slots = slices.Grow(x.slots[:0], size)[:size]
	clear(x.slots)
	mask := uint64(size - 1)
	for i, c := range x.uniq {
		j := hash(c) & mask
		for x.slots[j] != 0 {
			j = (j + 1) & mask
		}
		x.slots[j] = int32(i + 1)
	}
}
