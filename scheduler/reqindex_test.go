package scheduler

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRequestIndexCollisions: with hashes drawn from a few values, so that
// probe runs collide, wrap around the table's end and grow it, every
// request added is found, counted and listed until it is removed, and none
// after, whatever the order of removals (checked against a map).
func TestRequestIndexCollisions(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		x := newRequestIndex()
		want := map[RequestID]*request{}
		var live, gone []*request
		for step := range 400 {
			if len(live) > 0 && rng.IntN(5) < 2 {
				i := rng.IntN(len(live))
				r := live[i]
				live = slices.Delete(live, i, i+1)
				gone = append(gone, r)
				x.del(r)
				delete(want, r.id)
			} else {
				// Home slots crowd the table's last slots and a few
				// hashes repeat exactly.
				r := &request{id: RequestID(fmt.Sprintf("r%d", step)), hash: uint64(rng.IntN(6)) + ^uint64(0) - 3}
				x.add(r)
				want[r.id] = r
				live = append(live, r)
			}
			if x.len() != len(want) {
				t.Fatalf("seed %d step %d: len %d, want %d", seed, step, x.len(), len(want))
			}
			if 2*x.len() > len(x.slots) {
				t.Fatalf("seed %d step %d: %d requests in %d slots", seed, step, x.len(), len(x.slots))
			}
			n := 0
			x.all(func(r *request) {
				n++
				if want[r.id] != r {
					t.Fatalf("seed %d step %d: all lists %s, removed or unknown", seed, step, r.id)
				}
			})
			if n != len(want) {
				t.Fatalf("seed %d step %d: all lists %d, want %d", seed, step, n, len(want))
			}
			for _, r := range live {
				if got := x.lookup(r.hash, r.id); got != r {
					t.Fatalf("seed %d step %d: %s not found", seed, step, r.id)
				}
			}
			for _, r := range gone {
				if x.lookup(r.hash, r.id) != nil {
					t.Fatalf("seed %d step %d: removed %s still found", seed, step, r.id)
				}
			}
		}
	}
}

// TestRequestIndexByID: put and get hash ids themselves.
func TestRequestIndexByID(t *testing.T) {
	x := newRequestIndex()
	var rs []*request
	for i := range 1000 {
		r := &request{id: RequestID(fmt.Sprintf("task-%d", i))}
		x.put(r)
		rs = append(rs, r)
	}
	for i, r := range rs {
		if r.hash != maphash.String(x.seed, string(r.id)) || x.get(r.id) != r {
			t.Fatalf("request %d: hash %x, get %v", i, r.hash, x.get(r.id))
		}
		if i%2 == 0 {
			x.del(r)
		}
	}
	for i, r := range rs {
		if got := x.get(r.id); (got == r) != (i%2 == 1) {
			t.Fatalf("request %d after removing the even ones: get %v", i, got)
		}
	}
	if x.get("absent") != nil || x.len() != 500 {
		t.Fatalf("get(absent) = %v, len %d", x.get("absent"), x.len())
	}
}

// BenchmarkRequestIndexRemovals: 3,000 removals, as in a preemption storm,
// among 100,000 indexed requests, with the caches evicted before each
// round (the requests are put back between rounds, untimed).
func BenchmarkRequestIndexRemovals(b *testing.B) {
	const n, storm = 100000, 3000
	x := newRequestIndex()
	rs := make([]*request, n)
	for i := range rs {
		rs[i] = &request{id: RequestID(fmt.Sprintf("swarming-task-%08d", i))}
		x.put(rs[i])
	}
	junk := make([]uint64, 8<<20) // 64 MiB, more than any cache here
	rng := rand.New(rand.NewPCG(1, 1))
	for range b.N {
		b.StopTimer()
		var sum uint64
		for i := 0; i < len(junk); i += 8 {
			sum += junk[i]
		}
		junk[0] = sum
		sel := rng.Perm(n)[:storm]
		b.StartTimer()
		for _, i := range sel {
			x.del(rs[i])
		}
		b.StopTimer()
		for _, i := range sel {
			x.add(rs[i])
		}
		b.StartTimer()
	}
	if x.len() != n {
		b.Fatalf("%d requests indexed, want %d", x.len(), n)
	}
}
