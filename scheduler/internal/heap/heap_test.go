package heap

import (
	"math/rand/v2"
	"slices"
	"testing"
)

type elem struct {
	v, idx int
}

// Random pushes, fixes and removes keep the heap order and every element's
// recorded index, and popping gives the elements in order.
func TestHeapKeepsOrderAndIndexes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := Heap[*elem]{
		Less:     func(a, b *elem) bool { return a.v < b.v },
		SetIndex: func(e *elem, i int) { e.idx = i },
	}
	var live []*elem
	check := func(step int) {
		for i, e := range h.Items {
			if e.idx != i {
				t.Fatalf("step %d: element at %d records index %d", step, i, e.idx)
			}
			if i > 0 && h.Less(e, h.Items[(i-1)/2]) {
				t.Fatalf("step %d: element at %d is less than its parent", step, i)
			}
		}
	}
	for step := range 2000 {
		switch op := rng.IntN(4); {
		case op < 2 || len(live) == 0:
			e := &elem{v: rng.IntN(100)}
			h.Push(e)
			live = append(live, e)
		case op == 2:
			e := live[rng.IntN(len(live))]
			e.v = rng.IntN(100)
			h.Fix(e.idx)
		default:
			i := rng.IntN(len(live))
			e := live[i]
			h.Remove(e.idx)
			if e.idx != -1 {
				t.Fatalf("step %d: removed element records index %d", step, e.idx)
			}
			live = slices.Delete(live, i, i+1)
		}
		check(step)
	}
	// Init over items set directly.
	h.Items = nil
	for i := range 100 {
		e := &elem{v: rng.IntN(50), idx: i}
		h.Items = append(h.Items, e)
	}
	h.Init()
	check(-1)
	prev := -1
	for h.Len() > 0 {
		e := h.Top()
		if e.v < prev {
			t.Fatalf("popped %d after %d", e.v, prev)
		}
		prev = e.v
		h.Remove(0)
	}
}
