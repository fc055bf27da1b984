// Package testutil holds the helpers the tests of several packages share.
// Only tests import it.
package testutil

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"
)

// WaitTimeout bounds every wait of WaitFor.
const WaitTimeout = 30 * time.Second

// WaitFor yields the processor until cond holds, and fails the test, saying
// what it waited for, if cond does not hold within WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", WaitTimeout, what)
		}
		runtime.Gosched()
	}
}

// Buffer is a bytes.Buffer safe for concurrent writers and readers: a log
// sink that a test reads while the code under test writes.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
