package idtable

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

type item struct {
	id   string
	hash uint64
}

func newTable() Table[string, item] { return New(func(x *item) string { return x.id }) }

// TestCollisions: with hashes drawn from a few values, so that probe runs
// collide, wrap around the table's end and grow it, every element added is
// found, counted and listed until it is removed, and none after, whatever
// the order of removals (checked against a map).
func TestCollisions(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		x := newTable()
		want := map[string]*item{}
		var live, gone []*item
		for step := range 400 {
			if len(live) > 0 && rng.IntN(5) < 2 {
				i := rng.IntN(len(live))
				r := live[i]
				live = slices.Delete(live, i, i+1)
				gone = append(gone, r)
				x.Delete(r, r.hash)
				delete(want, r.id)
			} else {
				// Home slots crowd the table's last slots and a few
				// hashes repeat exactly.
				r := &item{id: fmt.Sprintf("r%d", step), hash: uint64(rng.IntN(6)) + ^uint64(0) - 3}
				x.Add(r, r.hash)
				want[r.id] = r
				live = append(live, r)
			}
			if x.Len() != len(want) {
				t.Fatalf("seed %d step %d: len %d, want %d", seed, step, x.Len(), len(want))
			}
			if 2*x.Len() > x.Slots() {
				t.Fatalf("seed %d step %d: %d elements in %d slots", seed, step, x.Len(), x.Slots())
			}
			n := 0
			x.All(func(r *item) {
				n++
				if want[r.id] != r {
					t.Fatalf("seed %d step %d: All lists %s, removed or unknown", seed, step, r.id)
				}
			})
			if n != len(want) {
				t.Fatalf("seed %d step %d: All lists %d, want %d", seed, step, n, len(want))
			}
			for _, r := range live {
				if got := x.Lookup(r.hash, r.id); got != r {
					t.Fatalf("seed %d step %d: %s not found", seed, step, r.id)
				}
			}
			for _, r := range gone {
				if x.Lookup(r.hash, r.id) != nil {
					t.Fatalf("seed %d step %d: removed %s still found", seed, step, r.id)
				}
			}
		}
	}
}

// TestByID: elements added under Hash of their ids are found by Get.
func TestByID(t *testing.T) {
	x := newTable()
	var rs []*item
	for i := range 1000 {
		r := &item{id: fmt.Sprintf("task-%d", i)}
		r.hash = x.Hash(r.id)
		x.Add(r, r.hash)
		rs = append(rs, r)
	}
	for i, r := range rs {
		if x.Get(r.id) != r {
			t.Fatalf("element %d: get %v", i, x.Get(r.id))
		}
		if i%2 == 0 {
			x.Delete(r, r.hash)
		}
	}
	for i, r := range rs {
		if got := x.Get(r.id); (got == r) != (i%2 == 1) {
			t.Fatalf("element %d after removing the even ones: get %v", i, got)
		}
	}
	if x.Get("absent") != nil || x.Len() != 500 {
		t.Fatalf("get(absent) = %v, len %d", x.Get("absent"), x.Len())
	}
}
