package scheduler

import (
	"hash/maphash"
	"slices"
	"testing"
)

// TestRequestIndexChains: requests whose ids share a hash are all found,
// counted and removed correctly, whichever link of the chain goes first.
func TestRequestIndexChains(t *testing.T) {
	for _, order := range [][]int{{0, 1, 2}, {1, 0, 2}, {2, 1, 0}, {1, 2, 0}} {
		x := newRequestIndex()
		rs := []*request{{id: "a"}, {id: "b"}, {id: "c"}}
		// Chain all three under a's hash, as a collision would.
		h := maphash.String(x.seed, "a")
		for _, r := range rs {
			r.hash, r.hnext = h, x.m[h]
			x.m[h] = r
			x.n++
		}
		other := &request{id: "z"}
		x.put(other)
		for k, i := range order {
			if got := x.get("a"); (got == rs[0]) != !slices.Contains(order[:k], 0) {
				t.Fatalf("order %v step %d: get(a) = %v", order, k, got)
			}
			x.del(rs[i])
			var seen []RequestID
			x.all(func(r *request) { seen = append(seen, r.id) })
			slices.Sort(seen)
			var want []RequestID
			for j, r := range rs {
				if !slices.Contains(order[:k+1], j) {
					want = append(want, r.id)
				}
			}
			want = append(want, "z")
			if !slices.Equal(seen, want) || x.len() != len(want) {
				t.Fatalf("order %v after removing %s: all = %v, len %d; want %v", order, rs[i].id, seen, x.len(), want)
			}
		}
		if x.get("z") != other || len(x.m) != 1 {
			t.Fatalf("order %v: z lost or chain left behind (%d hashes)", order, len(x.m))
		}
	}
}
