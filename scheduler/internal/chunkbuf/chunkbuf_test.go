package chunkbuf

import (
	"slices"
	"testing"
)

type value struct {
	n   int64
	tag string
}

const chunk, maxSpare = 1024, 8192

// Values come back whole and in order across chunks, and memory handed
// back is written again before new memory is allocated.
func TestTakeAndKeep(t *testing.T) {
	b := New[value](chunk, maxSpare)
	if b.Take() != nil {
		t.Fatal("an empty buffer took values")
	}
	for i := range 3000 {
		b.Slot().n = int64(i)
	}
	got := b.Take()
	if len(got) != 3000 {
		t.Fatalf("took %d values, want 3000", len(got))
	}
	for i, v := range got {
		if v.n != int64(i) {
			t.Fatalf("value %d is %d", i, v.n)
		}
	}
	b.Keep(got)
	b.Slot().n = 7
	if got2 := b.Take(); len(got2) != 1 || &got2[0] != &got[0] {
		t.Fatal("memory handed back was not reused")
	}
}

// A burst's memory is kept for the next burst, within maxSpare: the next
// burst of that size appends without allocating.
func TestMemoryReusedWithinBound(t *testing.T) {
	b := New[value](chunk, maxSpare)
	for i := range 20000 {
		b.Slot().n = int64(i)
	}
	b.Recycle()
	if b.freeCap > maxSpare || b.freeCap < maxSpare-chunk {
		t.Fatalf("kept %d values' memory, want at most %d and at least %d", b.freeCap, maxSpare, maxSpare-chunk)
	}
	for _, c := range b.free {
		if slices.ContainsFunc(c[:cap(c)], func(v value) bool { return v.n != 0 }) {
			t.Fatal("kept memory was not cleared")
		}
	}
	if allocs := testing.AllocsPerRun(5, func() {
		for range maxSpare {
			b.Slot()
		}
		b.Recycle()
	}); allocs != 0 {
		t.Fatalf("appending %d values into kept memory allocated %v times", maxSpare, allocs)
	}
	// Memory handed back with a shorter length than it was written to
	// still gives slots that start zeroed.
	c := New[value](chunk, maxSpare)
	mem := make([]value, 3, 8)
	mem[:8][6].tag = "stale"
	c.Keep(mem[:1])
	for range 8 {
		if v := c.Slot(); v.tag != "" {
			t.Fatalf("a slot of kept memory holds %q", v.tag)
		}
	}
}
