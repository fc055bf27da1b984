package scheduler

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// byCost's integer keys must order workers exactly as (rank, request id)
// with strings.Compare, for ids that are prefixes of others, share long
// prefixes, or hold zero bytes, and however few id bytes fit in the key.
func TestSortByRankAndID(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte{0, 'a', 'b', 0xff}
	for trial := range 3000 {
		prefix := strings.Repeat("task-", r.IntN(3))
		seen := map[string]bool{}
		var ws []*worker
		var ranks []int32
		for range 1 + r.IntN(40) {
			b := []byte(prefix)
			for range r.IntN(12) {
				b = append(b, alphabet[r.IntN(len(alphabet))])
			}
			if seen[string(b)] {
				continue // running request ids are distinct
			}
			seen[string(b)] = true
			ws = append(ws, &worker{req: &request{id: RequestID(b)}})
			ranks = append(ranks, int32(r.IntN(1+trial%5)))
		}
		rankOf := map[*worker]int32{}
		for i, w := range ws {
			rankOf[w] = ranks[i]
		}
		want := slices.Clone(ws)
		slices.SortFunc(want, func(x, y *worker) int {
			return cmp.Or(cmp.Compare(rankOf[x], rankOf[y]), strings.Compare(string(x.req.id), string(y.req.id)))
		})
		for maxWin := range 9 {
			out := make([]*worker, len(ws))
			sortByRankAndID(ws, ranks, make([]uint64, len(ws)), out, maxWin)
			if !slices.Equal(out, want) {
				var got, exp []string
				for i := range out {
					got = append(got, string(out[i].req.id))
					exp = append(exp, string(want[i].req.id))
				}
				t.Fatalf("maxWin %d: got %q, want %q (ranks %v)", maxWin, got, exp, ranks)
			}
		}
	}
}
