package eventlog

import (
	"path/filepath"
	"testing"
)

// BenchmarkJSONL measures rows through the JSON-lines writer: marshalling
// in Emit and the writes, 100 rows per Emit, until Close has written them.
//
//	go test ./eventlog -run '^$' -bench JSONL
func BenchmarkJSONL(b *testing.B) {
	evs := events(100)
	j, err := OpenJSONL(filepath.Join(b.TempDir(), "events.jsonl"), "bench", 1<<30, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		j.Emit("pool", evs)
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	if got := j.Written.Load(); got != int64(b.N)*100 {
		b.Fatalf("%d rows written, want %d", got, b.N*100)
	}
}
