// Package heap is a binary min-heap that tells each element its position,
// so that an element can be fixed or removed where it is.
//
// The heap is a slice in the usual implicit layout (the children of i are
// 2i+1 and 2i+2). Every move of an element calls SetIndex with its new
// position, and Remove calls it with -1, so that an element can store its
// own index and be found in O(1). Push, Fix and Remove cost O(log n)
// comparisons; Top is O(1); Init is O(n). The order among equal elements is
// whatever the sequence of operations leaves: callers that need a
// deterministic order make Less a total order.
package heap

// Heap is a binary min-heap of Items by Less. Items may be set directly
// (with their indexes already recorded) and then ordered with Init.
type Heap[T any] struct {
	Items    []T
	Less     func(a, b T) bool
	SetIndex func(x T, i int)
}

// Len is the number of elements.
func (h *Heap[T]) Len() int { return len(h.Items) }

func (h *Heap[T]) swap(i, j int) {
	h.Items[i], h.Items[j] = h.Items[j], h.Items[i]
	h.SetIndex(h.Items[i], i)
	h.SetIndex(h.Items[j], j)
}

func (h *Heap[T]) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.Less(h.Items[j], h.Items[i]) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h *Heap[T]) down(i int) bool {
	i0 := i
	n := len(h.Items)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.Less(h.Items[r], h.Items[l]) {
			j = r
		}
		if !h.Less(h.Items[j], h.Items[i]) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

// Push adds x.
func (h *Heap[T]) Push(x T) {
	h.Items = append(h.Items, x)
	h.SetIndex(x, len(h.Items)-1)
	h.up(len(h.Items) - 1)
}

// Init establishes the heap order over Items whose indexes are already set.
func (h *Heap[T]) Init() {
	for i := len(h.Items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// Fix restores the order after the element at i changed.
func (h *Heap[T]) Fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

// Remove removes the element at i and sets its index to -1.
func (h *Heap[T]) Remove(i int) {
	n := len(h.Items) - 1
	x := h.Items[i]
	if i != n {
		h.swap(i, n)
	}
	var zero T
	h.Items[n] = zero
	h.Items = h.Items[:n]
	if i != n {
		h.Fix(i)
	}
	h.SetIndex(x, -1)
}

// Top returns the least element; the heap must not be empty.
func (h *Heap[T]) Top() T { return h.Items[0] }
