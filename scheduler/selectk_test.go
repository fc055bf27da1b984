package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSmallestK: the selection equals sorting everything and taking the
// first k, for every k, with many equal times (ties go by id).
func TestSmallestK(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 17, 100, 1000} {
		var keys []confirmedKey
		for i := range n {
			keys = append(keys, confirmedKey{t: int64(rng.IntN(5)), id: fmt.Sprintf("id%05d", rng.IntN(1<<20)*1000+i)})
		}
		want := slices.Clone(keys)
		slices.SortFunc(want, cmpConfirmed)
		for _, k := range []int{0, 1, 2, n / 3, n - 1, n, n + 5} {
			got := smallestK(slices.Clone(keys), k)
			w := want[:max(0, min(k, n))]
			if !slices.Equal(got, w) && !(len(got) == 0 && len(w) == 0) {
				t.Fatalf("n=%d k=%d: got %v, want %v", n, k, got, w)
			}
		}
	}
}
