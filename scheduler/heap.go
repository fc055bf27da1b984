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

// classHeap is an account's classes of one base set by their heads' FIFO
// keys. The keys are copied into the heap's own slots, so that sifting,
// which runs on every assignment and preemption, reads one array instead
// of a class per comparison.
type classHeap struct {
	items []classSlot
}

type classSlot struct {
	hk fifoKey // the class's hk when it was last placed
	c  *class
}

func (h *classHeap) Len() int { return len(h.items) }

// Top returns the class with the earliest head; the heap must not be empty.
func (h *classHeap) Top() *class { return h.items[0].c }

func (h *classHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].c.heapIdx = i
	h.items[j].c.heapIdx = j
}

func (h *classHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.items[j].hk.before(h.items[i].hk) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *classHeap) down(i int) bool {
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

// Push adds c.
func (h *classHeap) Push(c *class) {
	h.items = append(h.items, classSlot{c.hk, c})
	c.heapIdx = len(h.items) - 1
	h.up(len(h.items) - 1)
}

// Fix restores the order after the head of the class at i changed.
func (h *classHeap) Fix(i int) {
	h.items[i].hk = h.items[i].c.hk
	if !h.down(i) {
		h.up(i)
	}
}

// Remove removes the class at i.
func (h *classHeap) Remove(i int) {
	n := len(h.items) - 1
	c := h.items[i].c
	if i != n {
		h.swap(i, n)
	}
	h.items[n] = classSlot{}
	h.items = h.items[:n]
	if i != n {
		h.Fix(i)
	}
	c.heapIdx = -1
}
