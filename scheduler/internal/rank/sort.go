package rank

import (
	"math/bits"
	"slices"
	"strings"
)

// SortByRankAndString writes to out the elements of xs ordered by rank
// (ranks[i] is xs[i]'s, non-negative), then by str with strings.Compare,
// sorting keys (of len(xs)) as one integer per element: its rank, then up
// to maxWin bytes of its string after the prefix all the strings share,
// then its index. Only elements whose rank and string bytes tie are then
// compared by their strings. The strings must be distinct for the order to
// be total. It costs one integer sort of n keys, plus string comparisons
// within runs of equal keys.
func SortByRankAndString[T any](xs []T, ranks []int32, str func(T) string, keys []uint64, out []T, maxWin int) {
	n := len(xs)
	if n == 0 {
		return
	}
	first := str(xs[0])
	shared := len(first)
	var maxRank int32
	for i, x := range xs {
		if i > 0 {
			s := str(x)
			shared = commonPrefix(s[:min(shared, len(s))], first)
		}
		maxRank = max(maxRank, ranks[i])
	}
	ib := bits.Len(uint(n - 1))
	winBytes := min(maxWin, (64-bits.Len32(uint32(maxRank))-ib)/8)
	wb := 8 * winBytes
	for i, x := range xs {
		win := window(str(x), shared) >> (64 - wb) // 0 when wb is 0
		keys[i] = uint64(ranks[i])<<(wb+ib) | win<<ib | uint64(i)
	}
	slices.Sort(keys)
	idx := uint64(1)<<ib - 1
	for i := 0; i < n; {
		j := i + 1
		for j < n && keys[j]>>ib == keys[i]>>ib {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(keys[i:j], func(a, b uint64) int {
				return strings.Compare(str(xs[a&idx]), str(xs[b&idx]))
			})
		}
		i = j
	}
	for j, k := range keys {
		out[j] = xs[k&idx]
	}
}

// commonPrefix is the length of the longest common prefix of a and b.
func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// window is the eight bytes of s from offset from, big-endian, padded with
// zeros. Of two strings that agree before from, the one with the smaller
// window sorts first; equal windows decide nothing. (A string that ends
// inside the window is a prefix of any other with the same window bytes up
// to its end, so the padding orders it first, as it should be.)
func window(s string, from int) uint64 {
	var w uint64
	for i := range 8 {
		w <<= 8
		if j := from + i; j < len(s) {
			w |= uint64(s[j])
		}
	}
	return w
}
