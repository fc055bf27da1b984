package scheduler

import (
	"math"
	"slices"
)

// costRanker ranks many costs by their place among the distinct ones, so
// that a sort by cost compares integers: running tasks share few distinct
// costs (50 among 3,810 victims in the benchmark's heaviest pass).
type costRanker struct {
	slots []int32 // open-addressing table of 1 + indexes into uniq (0: free)
	uniq  []Vector
	order []int32
	rank  []int32
	of    []int32
}

// ranks returns, for each i < n, the rank of cost(i) in Less order among the
// distinct costs (highest first if desc). The result is valid until the
// next call.
func (x *costRanker) ranks(n int, cost func(i int) Vector, desc bool) []int32 {
	x.uniq = x.uniq[:0]
	x.resize(64)
	uniq := x.uniq
	of := slices.Grow(x.of[:0], n)[:n]
	for i := range n {
		c := cost(i)
		if 2*len(uniq) >= len(x.slots) {
			x.uniq = uniq
			x.resize(4 * len(x.slots))
		}
		mask := uint64(len(x.slots) - 1)
		j := costHash(c) & mask
		for {
			k := x.slots[j]
			if k == 0 {
				uniq = append(uniq, c)
				x.slots[j] = int32(len(uniq))
				of[i] = int32(len(uniq) - 1)
				break
			}
			if uniq[k-1] == c { // +0 and -0 are one cost, as Less sees them
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
		case uniq[a].Less(uniq[b]):
			return -1
		case uniq[b].Less(uniq[a]):
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
// enters the distinct costs found so far.
func (x *costRanker) resize(size int) {
	x.slots = slices.Grow(x.slots[:0], size)[:size]
	clear(x.slots)
	mask := uint64(size - 1)
	for i, c := range x.uniq {
		j := costHash(c) & mask
		for x.slots[j] != 0 {
			j = (j + 1) & mask
		}
		x.slots[j] = int32(i + 1)
	}
}

// costHash hashes a cost so that equal costs (+0 and -0 included) hash
// alike.
func costHash(c Vector) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, v := range c {
		if v == 0 {
			v = 0 // -0 hashes as +0
		}
		h = (h ^ math.Float64bits(v)) * 0xff51afd7ed558ccd
		h ^= h >> 29
	}
	return h
}
