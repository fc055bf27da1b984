package frontend

import (
	"fmt"
	"testing"
	"time"
)

// TestPerKeyLimiter: one event per key a minute, keys apart, and a bounded
// memory however many keys callers invent.
func TestPerKeyLimiter(t *testing.T) {
	var l perKeyLimiter
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		key  string
		at   time.Duration
		want bool
	}{
		{"a", 0, true},
		{"a", 59 * time.Second, false},
		{"b", 59 * time.Second, true},
		{"a", time.Minute, true},
		{"a", time.Minute + time.Second, false},
		{"b", 2 * time.Minute, true},
	} {
		if got := l.allow(tc.key, t0.Add(tc.at)); got != tc.want {
			t.Errorf("allow(%s, +%v) = %v, want %v", tc.key, tc.at, got, tc.want)
		}
	}
	for i := range 10 * perKeyLimit {
		l.allow(fmt.Sprint("k", i), t0.Add(3*time.Minute))
	}
	if n := len(l.last); n > perKeyLimit {
		t.Errorf("%d keys remembered, want at most %d", n, perKeyLimit)
	}
}
