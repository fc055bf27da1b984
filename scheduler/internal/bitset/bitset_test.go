package bitset

import (
	"slices"
	"testing"
)

func TestAddAndForEach(t *testing.T) {
	want := []int{0, 1, 63, 64, 65, 127, 128, 200}
	set := make([]uint64, Words(201))
	if len(set) != 4 {
		t.Fatalf("Words(201) = %d, want 4", len(set))
	}
	for _, i := range slices.Backward(want) {
		Add(set, i)
	}
	var got []int
	ForEach(set, func(i int) { got = append(got, i) })
	if !slices.Equal(got, want) {
		t.Fatalf("ForEach gave %v, want %v", got, want)
	}
	for i := range 201 {
		if Has(set, i) != slices.Contains(want, i) {
			t.Errorf("Has(%d) = %v, want %v", i, Has(set, i), !Has(set, i))
		}
	}
}
