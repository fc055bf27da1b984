package scheduler

import "hash/maphash"

// requestIndex finds requests by id through a 64-bit hash of the id kept in
// the request, so that removing one (thousands in a preemption storm)
// neither hashes nor compares strings. Requests whose ids share a hash chain
// through hnext and hprev. Iteration order is unspecified, as a map's.
type requestIndex struct {
	seed maphash.Seed
	m    map[uint64]*request
	n    int
}

func newRequestIndex() requestIndex {
	return requestIndex{seed: maphash.MakeSeed(), m: make(map[uint64]*request)}
}

func (x *requestIndex) get(id RequestID) *request {
	for r := x.m[maphash.String(x.seed, string(id))]; r != nil; r = r.hnext {
		if r.id == id {
			return r
		}
	}
	return nil
}

// put adds r, whose id must not be indexed yet.
func (x *requestIndex) put(r *request) {
	x.link(r, maphash.String(x.seed, string(r.id)))
}

// link files r under hash h, at the head of its chain.
func (x *requestIndex) link(r *request, h uint64) {
	r.hash, r.hprev = h, nil
	r.hnext = x.m[h]
	if r.hnext != nil {
		r.hnext.hprev = r
	}
	x.m[h] = r
	x.n++
}

// del unfiles r. A request alone under its hash, the usual case, costs one
// map operation: the chain is linked both ways, so r knows it heads it.
func (x *requestIndex) del(r *request) {
	switch {
	case r.hprev != nil:
		r.hprev.hnext = r.hnext
		if r.hnext != nil {
			r.hnext.hprev = r.hprev
		}
	case r.hnext == nil:
		delete(x.m, r.hash)
	default:
		r.hnext.hprev = nil
		x.m[r.hash] = r.hnext
	}
	r.hnext, r.hprev = nil, nil
	x.n--
}

func (x *requestIndex) len() int { return x.n }

// all calls f for every request.
func (x *requestIndex) all(f func(*request)) {
	for _, r := range x.m {
		for ; r != nil; r = r.hnext {
			f(r)
		}
	}
}
