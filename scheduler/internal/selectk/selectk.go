// Package selectk selects the k least elements of a slice without sorting
// all of it.
//
// Smallest rearranges the slice with a quickselect (median-of-three pivot,
// three-way partition, insertion-sized ranges sorted directly) so that its
// k least elements come first, then sorts only those: O(n) expected plus
// O(k log k), where sorting everything would be O(n log n). The scheduler
// selects a few percent of every task for callbacks and views, and sorting
// them all held a pool for hundreds of milliseconds at 300,000 tasks.
package selectk

import "slices"

// Smallest returns the k least elements of xs by cmp, in order,
// rearranging xs; the result shares its memory. cmp must be a total order
// on the elements for the result not to depend on their order in xs.
func Smallest[T any](xs []T, k int, cmp func(a, b T) int) []T {
	if k <= 0 {
		return nil
	}
	if k < len(xs) {
		quickselect(xs, k, cmp)
		xs = xs[:k]
	}
	slices.SortFunc(xs, cmp)
	return xs
}

// quickselect rearranges xs so that its k least elements come first.
func quickselect[T any](xs []T, k int, cmp func(a, b T) int) {
	lo, hi := 0, len(xs)
	for hi-lo > 16 {
		// Median of three as the pivot; under a total order the result
		// does not depend on the choice.
		mid := lo + (hi-lo)/2
		a, b, c := xs[lo], xs[mid], xs[hi-1]
		pivot := b
		if (cmp(a, b) < 0) == (cmp(b, c) < 0) {
			pivot = b
		} else if (cmp(b, a) < 0) == (cmp(a, c) < 0) {
			pivot = a
		} else {
			pivot = c
		}
		// Three-way partition: < pivot, == pivot, > pivot.
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch c := cmp(xs[i], pivot); {
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
	slices.SortFunc(xs[lo:hi], cmp)
}
