package scheduler

import "hash/maphash"

// requestIndex finds requests by id through a 64-bit hash of the id kept in
// the request, so that removing one (thousands in a preemption storm)
// neither hashes nor compares strings. Requests whose ids share a hash chain
// through hnext. Iteration order is unspecified, as a map's.
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
	r.hash = maphash.String(x.seed, string(r.id))
	r.hnext = x.m[r.hash]
	x.m[r.hash] = r
	x.n++
}

func (x *requestIndex) del(r *request) {
	head := x.m[r.hash]
	switch {
	case head == r && r.hnext == nil:
		delete(x.m, r.hash)
	case head == r:
		x.m[r.hash] = r.hnext
	default:
		for p := head; p != nil; p = p.hnext {
			if p.hnext == r {
				p.hnext = r.hnext
				break
			}
		}
	}
	r.hnext = nil
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
