package rank

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

type vec [2]float64

func vecLess(a, b vec) bool {
	if a[0] != b[0] {
		return a[0] < b[0]
	}
	return a[1] < b[1]
}

func vecHash(c vec) uint64 {
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

// Ranks are each key's place among the distinct keys in less order, +0
// and -0 being one key, from few distinct keys to thousands, call after
// call.
func TestRanks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var x Ranker[vec]
	for trial := range 300 {
		distinct := 1 + r.IntN([]int{3, 60, 5000}[trial%3])
		n := r.IntN(3 * distinct)
		keys := make([]vec, n)
		for i := range keys {
			k := r.IntN(distinct)
			keys[i] = vec{float64(k % 7), float64(k / 7)}
			if keys[i][0] == 0 && r.IntN(2) == 0 {
				keys[i][0] = math.Copysign(0, -1)
			}
		}
		desc := trial%2 == 1
		got := slices.Clone(x.Ranks(n, func(i int) vec { return keys[i] }, vecHash, vecLess, desc))
		var uniq []vec
		seen := map[vec]bool{} // a map key: +0 and -0 are one
		for _, c := range keys {
			if !seen[c] {
				seen[c] = true
				uniq = append(uniq, c)
			}
		}
		slices.SortFunc(uniq, func(a, b vec) int {
			switch {
			case vecLess(a, b):
				return -1
			case vecLess(b, a):
				return 1
			}
			return 0
		})
		index := map[vec]int32{}
		for i, c := range uniq {
			index[c] = int32(i)
		}
		for i, c := range keys {
			want := index[c]
			if desc {
				want = int32(len(uniq)) - 1 - want
			}
			if got[i] != want {
				t.Fatalf("trial %d: key %v ranked %d, want %d of %d", trial, c, got[i], want, len(uniq))
			}
		}
	}
}

// The integer keys must order elements exactly as (rank, string) with
// strings.Compare, for strings that are prefixes of others, share long
// prefixes, or hold zero bytes, and however few string bytes fit in the
// key.
func TestSortByRankAndString(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte{0, 'a', 'b', 0xff}
	type elem struct{ s string }
	str := func(e *elem) string { return e.s }
	for trial := range 3000 {
		prefix := strings.Repeat("task-", r.IntN(3))
		seen := map[string]bool{}
		var xs []*elem
		var ranks []int32
		for range 1 + r.IntN(40) {
			b := []byte(prefix)
			for range r.IntN(12) {
				b = append(b, alphabet[r.IntN(len(alphabet))])
			}
			if seen[string(b)] {
				continue // the strings are distinct
			}
			seen[string(b)] = true
			xs = append(xs, &elem{string(b)})
			ranks = append(ranks, int32(r.IntN(1+trial%5)))
		}
		rankOf := map[*elem]int32{}
		for i, x := range xs {
			rankOf[x] = ranks[i]
		}
		want := slices.Clone(xs)
		slices.SortFunc(want, func(x, y *elem) int {
			return cmp.Or(cmp.Compare(rankOf[x], rankOf[y]), strings.Compare(x.s, y.s))
		})
		for maxWin := range 9 {
			out := make([]*elem, len(xs))
			SortByRankAndString(xs, ranks, str, make([]uint64, len(xs)), out, maxWin)
			if !slices.Equal(out, want) {
				var got, exp []string
				for i := range out {
					got = append(got, out[i].s)
					exp = append(exp, want[i].s)
				}
				t.Fatalf("maxWin %d: got %q, want %q (ranks %v)", maxWin, got, exp, ranks)
			}
		}
	}
}
