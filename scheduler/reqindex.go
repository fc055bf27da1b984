package scheduler

import "hash/maphash"

// requestIndex finds requests by id. It is an open-addressing table with
// linear probing whose slots hold each request's 64-bit id hash beside the
// pointer, and whose removals shift the rest of the probe run back instead
// of leaving tombstones. Removing a request (thousands in a preemption
// storm) thus reads one slot run, found from the hash kept in the request,
// and compares pointers: it neither hashes nor compares strings, and it
// touches no other request. The table doubles when it is half full and
// never shrinks. Iteration order is unspecified, as a map's.
type requestIndex struct {
	seed  maphash.Seed
	slots []reqSlot // a power of two long; r == nil: empty
	n     int
}

type reqSlot struct {
	h uint64
	r *request
}

const minReqSlots = 16

func newRequestIndex() requestIndex {
	return requestIndex{seed: maphash.MakeSeed(), slots: make([]reqSlot, minReqSlots)}
}

func (x *requestIndex) get(id RequestID) *request {
	return x.lookup(maphash.String(x.seed, string(id)), id)
}

func (x *requestIndex) lookup(h uint64, id RequestID) *request {
	mask := uint64(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := &x.slots[i]
		if sl.r == nil {
			return nil
		}
		if sl.h == h && sl.r.id == id {
			return sl.r
		}
	}
}

// put adds r, whose id must not be indexed yet.
func (x *requestIndex) put(r *request) {
	r.hash = maphash.String(x.seed, string(r.id))
	x.add(r)
}

// add adds r under r.hash.
func (x *requestIndex) add(r *request) {
	if 2*(x.n+1) > len(x.slots) {
		x.resize(2 * len(x.slots))
	}
	x.insert(reqSlot{r.hash, r})
	x.n++
}

func (x *requestIndex) insert(sl reqSlot) {
	mask := uint64(len(x.slots) - 1)
	i := sl.h & mask
	for x.slots[i].r != nil {
		i = (i + 1) & mask
	}
	x.slots[i] = sl
}

func (x *requestIndex) resize(n int) {
	old := x.slots
	x.slots = make([]reqSlot, n)
	for _, sl := range old {
		if sl.r != nil {
			x.insert(sl)
		}
	}
}

// del removes r, which must be indexed.
func (x *requestIndex) del(r *request) {
	mask := uint64(len(x.slots) - 1)
	i := r.hash & mask
	for x.slots[i].r != r {
		i = (i + 1) & mask
	}
	// The hole at i is filled by the next entry of the run whose home slot
	// does not lie cyclically in (i, j], until the run ends.
	for j := (i + 1) & mask; x.slots[j].r != nil; j = (j + 1) & mask {
		home := x.slots[j].h & mask
		if (j-home)&mask >= (j-i)&mask {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = reqSlot{}
	x.n--
}

func (x *requestIndex) len() int { return x.n }

// all calls f for every request; f must not add or remove any.
func (x *requestIndex) all(f func(*request)) {
	for _, sl := range x.slots {
		if sl.r != nil {
			f(sl.r)
		}
	}
}
