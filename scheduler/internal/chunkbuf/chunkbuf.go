// Package chunkbuf is an append-only buffer that grows by chunks and
// reuses the memory handed back to it.
//
// A Buffer appends values into its current chunk and, when that is full,
// starts another, so that a burst of thousands of values never copies what
// it holds to grow. Take returns everything as one slice: the current
// chunk itself when it is the only one (no copy), else one concatenation.
// Memory the caller hands back (Keep), and the chunks a Take copied, wait
// cleared in a free list bounded by a total capacity (maxSpare); a new
// chunk is the largest free one, else a fresh allocation of the chunk
// size. A burst like the last one then writes into memory the last one
// used instead of zeroing new memory, and a burst larger than the bound
// does not make the buffer hold its memory for good. Slot is O(1)
// amortised; Take is O(values) when there is more than one chunk.
package chunkbuf

// Buffer is an append-only buffer of T in chunks. Make one with New.
type Buffer[T any] struct {
	full     [][]T
	cur      []T
	free     [][]T // cleared, length 0
	freeCap  int   // the values free holds, at most maxSpare
	chunk    int
	maxSpare int
}

// New returns an empty buffer that allocates chunks of chunk values and
// keeps at most maxSpare values' memory for reuse.
func New[T any](chunk, maxSpare int) Buffer[T] {
	return Buffer[T]{chunk: chunk, maxSpare: maxSpare}
}

// Slot returns the place of the next value, at the end of the buffer,
// zeroed.
func (b *Buffer[T]) Slot() *T {
	if len(b.cur) == cap(b.cur) {
		if len(b.cur) > 0 {
			b.full = append(b.full, b.cur)
		}
		b.cur = b.newChunk()
	}
	b.cur = b.cur[:len(b.cur)+1]
	return &b.cur[len(b.cur)-1]
}

// Take returns the values appended since the last Take or Recycle (nil
// when none) and forgets them. The caller owns the slice; Keep may hand it
// back.
func (b *Buffer[T]) Take() []T {
	var out []T
	switch len(b.full) {
	case 0:
		out = b.cur
		b.cur = nil
	default:
		n := len(b.cur)
		for _, c := range b.full {
			n += len(c)
		}
		out = make([]T, 0, n)
		for _, c := range b.full {
			out = append(out, c...)
		}
		out = append(out, b.cur...)
		b.Recycle() // the chunks were copied
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Keep offers c's memory for reuse while the free memory stays within
// maxSpare. All of it is cleared, here rather than value by value when it
// is written again, so that the buffer keeps nothing the values point to
// alive and every slot starts zeroed.
func (b *Buffer[T]) Keep(c []T) {
	if cap(c) == 0 || b.freeCap+cap(c) > b.maxSpare {
		return
	}
	clear(c[:cap(c)])
	b.free = append(b.free, c[:0])
	b.freeCap += cap(c)
}

// Recycle forgets the values appended, keeping their chunks for reuse.
func (b *Buffer[T]) Recycle() {
	for _, c := range b.full {
		b.Keep(c)
	}
	b.Keep(b.cur)
	clear(b.full)
	b.full, b.cur = b.full[:0], nil
}

// newChunk returns the largest free chunk, or a new one.
func (b *Buffer[T]) newChunk() []T {
	if len(b.free) == 0 {
		return make([]T, 0, b.chunk)
	}
	best := 0
	for i, c := range b.free {
		if cap(c) > cap(b.free[best]) {
			best = i
		}
	}
	c := b.free[best]
	last := len(b.free) - 1
	b.free[best], b.free[last] = b.free[last], nil
	b.free = b.free[:last]
	b.freeCap -= cap(c)
	return c
}
