package scheduler

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/internal/rank"
)

// RequestID identifies a request (a Swarming task).
type RequestID string

// WorkerID identifies a worker (a Swarming bot).
type WorkerID string

// AccountID identifies a quota account. "" is the absence of an account.
type AccountID string

// Priority is a level: 0 (P0, highest) to 4 are paid, 5 is FreeBucket.
type Priority int

const (
	// NumPaidLevels is the number of paid priority levels.
	NumPaidLevels = 5
	// FreeBucket is the pseudo-level of requests that run for free.
	FreeBucket Priority = 5
)

// String returns "P0".."P4" or "FreeBucket".
func (p Priority) String() string {
	if p == FreeBucket {
		return "FreeBucket"
	}
	return fmt.Sprintf("P%d", int(p))
}

// Vector holds one value per paid level, in worker-seconds.
type Vector [NumPaidLevels]float64

// Less is the lexicographic order: the first index where a and b differ
// decides; equal vectors are not Less.
func (a Vector) Less(b Vector) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// Add returns a+b element-wise.
func (a Vector) Add(b Vector) Vector {
	for i := range a {
		a[i] = float64(a[i] + b[i])
	}
	return a
}

// Sub returns a-b element-wise.
func (a Vector) Sub(b Vector) Vector {
	for i := range a {
		a[i] = float64(a[i] - b[i])
	}
	return a
}

// Errors returned by the scheduler. Callers classify them with errors.Is.
var (
	// ErrInvalidArgument marks bad client input; the message names the field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound marks an unknown account, request or worker.
	ErrNotFound = errors.New("not found")
	// ErrCannotUndo: UndoDelta has no delta it can take back.
	ErrCannotUndo = errors.New("cannot undo")
)

// NotFoundf returns an ErrNotFound error with a message.
func NotFoundf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// VectorFromFloat32 converts a wire vector (at most 5 values, missing values
// are 0) after checking that no value is negative, NaN or infinite. field
// names the input in the error.
func VectorFromFloat32(field string, v []float32) (Vector, error) {
	var out Vector
	if len(v) > NumPaidLevels {
		return out, invalidf("%s: %d values, at most %d allowed", field, len(v), NumPaidLevels)
	}
	for i, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return out, invalidf("%s[%d]: %v is not a finite non-negative number", field, i, x)
		}
		out[i] = f
	}
	return out, nil
}

// Times are int64 Unix nanoseconds inside the package.

const (
	minTime = -1 << 62 // keeps differences of valid times from overflowing
	maxTime = 1 << 62
)

// nanos converts an input time, rejecting the zero time and times that do
// not fit (before 1824 or after 2116).
func nanos(field string, t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, invalidf("%s: time is not set", field)
	}
	s := t.Unix()
	if s < minTime/1_000_000_000 || s > maxTime/1_000_000_000 {
		return 0, invalidf("%s: time %v out of range", field, t)
	}
	return t.UnixNano(), nil
}

// ValidateTime checks that t can be given to the scheduler: set, and between
// 1824 and 2116. field names the input in the error.
func ValidateTime(field string, t time.Time) error {
	_, err := nanos(field, t)
	return err
}

// seconds returns the elapsed time from a to b in seconds.
func seconds(a, b int64) float64 {
	return float64(b-a) / 1e9
}

// Time converts Unix nanoseconds to a time.Time in UTC.
func Time(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// costHash hashes a cost so that equal costs (+0 and -0 included) hash
// alike.
func costHash(c Vector) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, v := range c {
		if v == 0 {
			v = 0 // -0 hashes as +0
		}
		h = (h ^ math.Float64bits(v)) * 0xff51afd7ed558ccd
		h ^= h >> 29
	}
	return h
}

// costRanks ranks n costs, cost(i) for i < n, by their place in Less order
// among the distinct costs (highest first if desc), +0 and -0 being one
// cost as Less sees them; see rank.Ranker. The result is valid until x's
// next use.
func costRanks(x *rank.Ranker[Vector], n int, cost func(i int) Vector, desc bool) []int32 {
	return x.Ranks(n, cost, costHash, Vector.Less, desc)
}
