package scheduler

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// The id windows of byCost must order ids exactly as strings.Compare does,
// including ids that are prefixes of others, share long prefixes, or hold
// zero bytes.
func TestCostKeyOrdersIDsAsStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte{0, 'a', 'b', 0xff}
	for range 2000 {
		prefix := strings.Repeat("task-", r.IntN(3))
		var ids []string
		for range 2 + r.IntN(6) {
			b := []byte(prefix)
			for range r.IntN(12) {
				b = append(b, alphabet[r.IntN(len(alphabet))])
			}
			ids = append(ids, string(b))
		}
		shared := len(ids[0])
		for _, id := range ids[1:] {
			shared = commonPrefix(id[:min(shared, len(id))], ids[0])
		}
		for _, x := range ids {
			if !strings.HasPrefix(x, ids[0][:shared]) {
				t.Fatalf("%q does not start with the shared prefix %q", x, ids[0][:shared])
			}
			for _, y := range ids {
				kx := costKey{id: x, win: idWindow(x, shared)}
				ky := costKey{id: y, win: idWindow(y, shared)}
				if got, want := sign(cmpCostKey(kx, ky)), strings.Compare(x, y); got != want {
					t.Fatalf("ids %q, %q (shared prefix %d): got %d, want %d", x, y, shared, got, want)
				}
			}
		}
	}
	// The rank decides first.
	if cmpCostKey(costKey{rank: 1, id: "a"}, costKey{rank: 2, id: "b"}) >= 0 ||
		cmpCostKey(costKey{rank: 2, id: "a"}, costKey{rank: 1, id: "b"}) <= 0 {
		t.Fatal("rank must decide before the id")
	}
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}
