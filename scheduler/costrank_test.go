package scheduler

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// costRanker's ranks are each cost's place among the distinct costs in
// Less order, +0 and -0 being one cost, from few distinct costs to
// thousands, call after call.
func TestCostRankerRanks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var x costRanker
	for trial := range 300 {
		distinct := 1 + r.IntN([]int{3, 60, 5000}[trial%3])
		n := r.IntN(3 * distinct)
		costs := make([]Vector, n)
		for i := range costs {
			k := r.IntN(distinct)
			costs[i][0] = float64(k % 7)
			costs[i][1] = float64(k / 7)
			if costs[i][0] == 0 && r.IntN(2) == 0 {
				costs[i][0] = math.Copysign(0, -1)
			}
		}
		desc := trial%2 == 1
		got := slices.Clone(x.ranks(n, func(i int) Vector { return costs[i] }, desc))
		var uniq []Vector
		seen := map[Vector]bool{} // a map key: +0 and -0 are one
		for _, c := range costs {
			if !seen[c] {
				seen[c] = true
				uniq = append(uniq, c)
			}
		}
		slices.SortFunc(uniq, func(a, b Vector) int {
			switch {
			case a.Less(b):
				return -1
			case b.Less(a):
				return 1
			}
			return 0
		})
		index := map[Vector]int32{}
		for i, c := range uniq {
			index[c] = int32(i)
		}
		for i, c := range costs {
			want := index[c]
			if desc {
				want = int32(len(uniq)) - 1 - want
			}
			if got[i] != want {
				t.Fatalf("trial %d: cost %v ranked %d, want %d of %d", trial, c, got[i], want, len(uniq))
			}
		}
	}
}
