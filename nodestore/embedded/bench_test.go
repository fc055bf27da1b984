package embedded

import (
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/labpool"
	"testing"
)

// BenchmarkCommit measures commits of 100 new requests each to the
// 100,000-request lab pool: latency (ns/op, p50, p99), what the log entry
// takes (log-bytes/op) and what bbolt allocated for the transaction's dirty
// pages (page-bytes/op, about what it writes besides the meta page), then the
// time and size of a snapshot and a Load of the final state.
//
// snapshot_running commits while snapshots of the pool run back to back in
// the background.
//
//	go test ./nodestore/embedded -run '^$' -bench Commit -benchtime 500x
func BenchmarkCommit(b *testing.B) {
	b.Run("idle", func(b *testing.B) { benchCommit(b, false) })
	b.Run("snapshot_running", func(b *testing.B) { benchCommit(b, true) })
}

func benchCommit(b *testing.B, snapshots bool) {
	ctx := b.Context()
	l := labpool.Get(b)
	l.Mu.Lock()
	defer l.Mu.Unlock()
	s := open(b, b.TempDir(), Options{SnapshotEvery: 1 << 30, SnapshotBytes: 1 << 50, MaintainEvery: -1})
	if err := s.CreatePool(ctx, "lab", l.State()); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan int)
	if snapshots {
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				if err := s.SnapshotNow(ctx, "lab"); err != nil {
					b.Error(err)
				}
				n++
			}
		}()
	}
	st0 := s.db.Stats()
	pages0 := st0.TxStats.GetPageAlloc()
	lat, logBytes := l.Commits(b, s, "lab")
	st1 := s.db.Stats()
	pages := st1.TxStats.GetPageAlloc() - pages0
	if snapshots {
		close(stop)
		b.ReportMetric(float64(<-done), "snapshots")
	}
	b.ReportMetric(float64(logBytes)/float64(b.N), "log-bytes/op")
	b.ReportMetric(float64(pages)/float64(b.N), "page-bytes/op")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	if snapshots {
		return
	}
	labpool.SnapshotAndLoad(b, s, "lab")
}

// BenchmarkCheckWrite measures the write check the pipeline runs while the
// store is unhealthy: one fsynced transaction.
//
//	go test ./nodestore/embedded -run '^$' -bench CheckWrite
func BenchmarkCheckWrite(b *testing.B) {
	s := open(b, b.TempDir(), Options{MaintainEvery: -1})
	for b.Loop() {
		if err := s.CheckWrite(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
