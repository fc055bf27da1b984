package datastore

import (
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/labpool"
)

// BenchmarkLab runs the production-sized lab pool (5,000 bots, 100,000
// waiting requests) on the real emulator: b.N commits of
// 100 new requests each (latency p50 / p99 / max, log-bytes/op), a snapshot
// of the result, a cold Load of it, and ReadLog of every commit, what a
// replica that missed them all reads before it catches up.
//
//	go test ./nodestore/datastore -run '^$' -bench Lab -benchtime 1000x
func BenchmarkLab(b *testing.B) {
	ctx := b.Context()
	l := labpool.Get(b)
	l.Mu.Lock()
	defer l.Mu.Unlock()
	s, _ := open(b, Options{SnapshotEvery: 1 << 30, SnapshotBytes: 1 << 50})
	if err := s.CreatePool(ctx, "lab", l.State()); err != nil {
		b.Fatal(err)
	}
	lat, logBytes := l.Commits(b, s, "lab")
	b.ReportMetric(float64(logBytes)/float64(b.N), "log-bytes/op")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")

	t0 := time.Now()
	ds, _, err := s.ReadLog(ctx, "lab", 1)
	if err != nil || len(ds) != b.N {
		b.Fatalf("ReadLog: %d deltas, %v", len(ds), err)
	}
	b.ReportMetric(float64(time.Since(t0).Milliseconds()), "readlog-all-ms")
	labpool.SnapshotAndLoad(b, s, "lab")
}
