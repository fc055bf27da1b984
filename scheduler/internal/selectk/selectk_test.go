package selectk

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

type key struct {
	t  int64
	id string
}

func cmpKey(a, b key) int { return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.id, b.id)) }

// TestSmallest: the selection equals sorting everything and taking the
// first k, for every k, with many equal times (ties go by id).
func TestSmallest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 17, 100, 1000} {
		var keys []key
		for i := range n {
			keys = append(keys, key{t: int64(rng.IntN(5)), id: fmt.Sprintf("id%05d", rng.IntN(1<<20)*1000+i)})
		}
		want := slices.Clone(keys)
		slices.SortFunc(want, cmpKey)
		for _, k := range []int{0, 1, 2, n / 3, n - 1, n, n + 5} {
			got := Smallest(slices.Clone(keys), k, cmpKey)
			w := want[:max(0, min(k, n))]
			if !slices.Equal(got, w) && !(len(got) == 0 && len(w) == 0) {
				t.Fatalf("n=%d k=%d: got %v, want %v", n, k, got, w)
			}
		}
	}
}
