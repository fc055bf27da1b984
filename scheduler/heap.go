package scheduler

// iheap is a binary min-heap of pointers that records each element's
// position (through setIdx) so that elements can be fixed or removed.
type iheap[T any] struct {
	items  []T
	less   func(a, b T) bool
	setIdx func(x T, i int)
}

func (h *iheap[T]) Len() int { return len(h.items) }

func (h *iheap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.setIdx(h.items[i], i)
	h.setIdx(h.items[j], j)
}

func (h *iheap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(h.items[j], h.items[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *iheap[T]) down(i int) bool {
	i0 := i
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(h.items[r], h.items[l]) {
			j = r
		}
		if !h.less(h.items[j], h.items[i]) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

func (h *iheap[T]) Push(x T) {
	h.items = append(h.items, x)
	h.setIdx(x, len(h.items)-1)
	h.up(len(h.items) - 1)
}

// Init establishes the heap order over items whose indexes are already set.
func (h *iheap[T]) Init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// Fix restores the order after the element at i changed.
func (h *iheap[T]) Fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

// Remove removes the element at i.
func (h *iheap[T]) Remove(i int) {
	n := len(h.items) - 1
	x := h.items[i]
	if i != n {
		h.swap(i, n)
	}
	var zero T
	h.items[n] = zero
	h.items = h.items[:n]
	if i != n {
		h.Fix(i)
	}
	h.setIdx(x, -1)
}

// Top returns the least element; the heap must not be empty.
func (h *iheap[T]) Top() T { return h.items[0] }

// keyHeap is a binary min-heap by FIFO key that copies each element's key
// into its own slot, so that sifting, which runs on every assignment and
// preemption, reads one array instead of an element per comparison.
type keyHeap[T keyed] struct {
	items []keySlot[T]
}

// keyed is an element of a keyHeap: its current key, and where the heap
// put it.
type keyed interface {
	heapKey() fifoKey
	setHeapIdx(i int)
}

type keySlot[T keyed] struct {
	hk fifoKey // v's key when it was last placed
	v  T
}

// classHeap is an account's classes of one base set by their heads.
type classHeap = keyHeap[*class]

func (c *class) heapKey() fifoKey { return c.hk }
func (c *class) setHeapIdx(i int) { c.heapIdx = i }

func (h *keyHeap[T]) Len() int { return len(h.items) }

// Top returns the element with the least key; the heap must not be empty.
func (h *keyHeap[T]) Top() T { return h.items[0].v }

func (h *keyHeap[T]) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].v.setHeapIdx(i)
	h.items[j].v.setHeapIdx(j)
}

func (h *keyHeap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.items[j].hk.before(h.items[i].hk) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *keyHeap[T]) down(i int) bool {
	i0 := i
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.items[r].hk.before(h.items[l].hk) {
			j = r
		}
		if !h.items[j].hk.before(h.items[i].hk) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

// Append adds v without ordering; Init orders what was appended.
func (h *keyHeap[T]) Append(v T) {
	v.setHeapIdx(len(h.items))
	h.items = append(h.items, keySlot[T]{v.heapKey(), v})
}

// Init establishes the heap order.
func (h *keyHeap[T]) Init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// Push adds v.
func (h *keyHeap[T]) Push(v T) {
	h.Append(v)
	h.up(len(h.items) - 1)
}

// Fix restores the order after the key of the element at i changed.
func (h *keyHeap[T]) Fix(i int) {
	h.items[i].hk = h.items[i].v.heapKey()
	if !h.down(i) {
		h.up(i)
	}
}

// Remove removes the element at i.
func (h *keyHeap[T]) Remove(i int) {
	n := len(h.items) - 1
	v := h.items[i].v
	if i != n {
		h.swap(i, n)
	}
	h.items[n] = keySlot[T]{}
	h.items = h.items[:n]
	if i != n {
		h.Fix(i)
	}
	v.setHeapIdx(-1)
}
