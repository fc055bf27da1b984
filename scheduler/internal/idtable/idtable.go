// Package idtable is a hash table of pointers found by a string id, built
// so that removing an element is cheap when thousands are removed at once.
//
// The table is open addressing with linear probing over a power-of-two
// array of slots, each holding an element's 64-bit id hash beside the
// pointer. It is at most half full: it doubles when an insertion would
// pass that, and it never shrinks. A removal shifts the rest of its probe
// run back instead of leaving a tombstone, so the table never needs
// rebuilding except to grow.
//
// The caller keeps each element's hash (Hash, given to Add and Delete), so
// that Delete starts at the element's home slot and compares pointers
// along one probe run: it neither hashes nor compares ids, and it touches
// no other element. Get hashes the id and compares ids only where the
// hashes are equal. Get, Add and Delete cost O(1) expected; All visits
// every slot. Hashes are seeded at random (hash/maphash), as Go's maps
// are, so the order of All is unspecified and must not reach an output.
package idtable

import "hash/maphash"

// Table indexes pointers to E by an id of type K that each element holds
// (Key).
type Table[K ~string, E any] struct {
	seed  maphash.Seed
	slots []slot[E] // a power of two long; e == nil: empty
	n     int
	key   func(*E) K
}

type slot[E any] struct {
	h uint64
	e *E
}

// MinSlots is the size of a new table.
const MinSlots = 16

// New returns an empty table of elements whose id key returns.
func New[K ~string, E any](key func(*E) K) Table[K, E] {
	return Table[K, E]{seed: maphash.MakeSeed(), slots: make([]slot[E], MinSlots), key: key}
}

// Hash is the hash of id under which Add and Delete take its element.
func (t *Table[K, E]) Hash(id K) uint64 { return maphash.String(t.seed, string(id)) }

// Get returns the element with the id, or nil.
func (t *Table[K, E]) Get(id K) *E { return t.Lookup(t.Hash(id), id) }

// Lookup is Get for an id whose hash h is known.
func (t *Table[K, E]) Lookup(h uint64, id K) *E {
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.e == nil {
			return nil
		}
		if sl.h == h && t.key(sl.e) == id {
			return sl.e
		}
	}
}

// Add adds e under hash h (Hash of its id); no element with its id may be
// in the table.
func (t *Table[K, E]) Add(e *E, h uint64) {
	if 2*(t.n+1) > len(t.slots) {
		t.resize(2 * len(t.slots))
	}
	t.insert(slot[E]{h, e})
	t.n++
}

func (t *Table[K, E]) insert(sl slot[E]) {
	mask := uint64(len(t.slots) - 1)
	i := sl.h & mask
	for t.slots[i].e != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = sl
}

func (t *Table[K, E]) resize(n int) {
	old := t.slots
	t.slots = make([]slot[E], n)
	for _, sl := range old {
		if sl.e != nil {
			t.insert(sl)
		}
	}
}

// Delete removes e, which must be in the table under hash h.
func (t *Table[K, E]) Delete(e *E, h uint64) {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i].e != e {
		i = (i + 1) & mask
	}
	// The hole at i is filled by the next entry of the run whose home slot
	// does not lie cyclically in (i, j], until the run ends.
	for j := (i + 1) & mask; t.slots[j].e != nil; j = (j + 1) & mask {
		home := t.slots[j].h & mask
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slot[E]{}
	t.n--
}

// Len is the number of elements.
func (t *Table[K, E]) Len() int { return t.n }

// Slots is the size of the slot array (at least twice Len).
func (t *Table[K, E]) Slots() int { return len(t.slots) }

// All calls f for every element, in no particular order; f must not add
// or remove any.
func (t *Table[K, E]) All(f func(*E)) {
	for _, sl := range t.slots {
		if sl.e != nil {
			f(sl.e)
		}
	}
}
