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
