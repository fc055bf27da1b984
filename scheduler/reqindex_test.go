package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkRequestIndexRemovals: 3,000 removals, as in a preemption storm,
// among 100,000 indexed requests, with the caches evicted before each
// round (the requests are put back between rounds, untimed).
func BenchmarkRequestIndexRemovals(b *testing.B) {
	const n, storm = 100000, 3000
	s, err := New(nil)
	if err != nil {
		b.Fatal(err)
	}
	x := &s.requests
	rs := make([]*request, n)
	for i := range rs {
		rs[i] = &request{id: RequestID(fmt.Sprintf("swarming-task-%08d", i))}
		rs[i].hash = x.Hash(rs[i].id)
		x.Add(rs[i], rs[i].hash)
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
			x.Delete(rs[i], rs[i].hash)
		}
		b.StopTimer()
		for _, i := range sel {
			x.Add(rs[i], rs[i].hash)
		}
		b.StartTimer()
	}
	if x.Len() != n {
		b.Fatalf("%d requests indexed, want %d", x.Len(), n)
	}
}
