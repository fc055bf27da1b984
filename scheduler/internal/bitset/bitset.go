// Package bitset holds helpers for bitsets stored as []uint64: bit i is bit
// i%64 of word i/64. A set of n elements takes Words(n) words; operations
// on whole sets are word loops, and visiting the members costs one
// TrailingZeros per member plus one test per word.
package bitset

import "math/bits"

// Words is the number of words that hold n bits.
func Words(n int) int { return (n + 63) / 64 }

// Add sets bit i of set.
func Add(set []uint64, i int) { set[i/64] |= 1 << (i % 64) }

// Has reports whether bit i of set is set.
func Has(set []uint64, i int) bool { return set[i/64]&(1<<(i%64)) != 0 }

// ForEach calls f with every set bit of set, in ascending order.
func ForEach(set []uint64, f func(i int)) {
	for j, x := range set {
		for x != 0 {
			f(j*64 + bits.TrailingZeros64(x))
			x &= x - 1
		}
	}
}
