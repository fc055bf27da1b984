package scheduler

import "slices"

// confirmedKey orders requests and workers oldest confirmed first, then by
// id (the order of callbacks and views).
type confirmedKey struct {
	t  int64
	id string
	r  *request
	w  *worker
}

func cmpConfirmed(a, b confirmedKey) int {
	switch {
	case a.t < b.t:
		return -1
	case a.t > b.t:
		return 1
	case a.id < b.id:
		return -1
	case a.id > b.id:
		return 1
	}
	return 0
}

// smallestK returns the k least keys in order, rearranging xs. It costs
// O(len(xs)) plus O(k log k): callbacks and views select a few percent of
// every task, and sorting them all held the pool for hundreds of
// milliseconds at 300,000 tasks.
func smallestK(xs []confirmedKey, k int) []confirmedKey {
	if k <= 0 {
		return nil
	}
	if k < len(xs) {
		quickselect(xs, k)
		xs = xs[:k]
	}
	slices.SortFunc(xs, cmpConfirmed)
	return xs
}

// quickselect rearranges xs so that its k least elements come first.
func quickselect(xs []confirmedKey, k int) {
	lo, hi := 0, len(xs)
	for hi-lo > 16 {
		// Median of three as the pivot; keys are unique, so the result
		// does not depend on the choice.
		mid := lo + (hi-lo)/2
		a, b, c := xs[lo], xs[mid], xs[hi-1]
		pivot := b
		if (cmpConfirmed(a, b) < 0) == (cmpConfirmed(b, c) < 0) {
			pivot = b
		} else if (cmpConfirmed(b, a) < 0) == (cmpConfirmed(a, c) < 0) {
			pivot = a
		} else {
			pivot = c
		}
		// Three-way partition: < pivot, == pivot, > pivot.
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch c := cmpConfirmed(xs[i], pivot); {
			case c < 0:
				xs[lt], xs[i] = xs[i], xs[lt]
				lt++
				i++
			case c > 0:
				gt--
				xs[i], xs[gt] = xs[gt], xs[i]
			default:
				i++
			}
		}
		switch {
		case k <= lt:
			hi = lt
		case k >= gt:
			lo = gt
		default:
			return
		}
	}
	slices.SortFunc(xs[lo:hi], cmpConfirmed)
}
