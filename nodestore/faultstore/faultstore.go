// Package faultstore wraps a real nodestore.Store and makes chosen calls
// fail the way real stores fail: a commit that errors, one that outlives its
// deadline, one that loses the compare-and-swap to another writer, one that
// lands and still reports an error, a store that panics, loads that fail
// for a while, commits held at a gate, and a store that takes no write at
// all until told otherwise (a full disk). Without faults it is the wrapped
// store (the conformance suite runs against it).
package faultstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
)

// ErrInjected is the error of injected failures.
var ErrInjected = errors.New("faultstore: injected failure")

// Fault is what happens to one commit.
type Fault int

// Faults of a commit.
const (
	// Error: the commit fails with ErrInjected; nothing is written.
	Error Fault = iota + 1
	// Deadline: the commit waits until its context ends and returns the
	// context's error; nothing is written.
	Deadline
	// Conflict: another writer commits an entry first (recording a task
	// error for the task "other-writer"), so the wrapped store answers
	// nodestore.ErrConflict.
	Conflict
	// LandedError: the entry is written, then the commit reports
	// ErrInjected (a reply lost after the store acted).
	LandedError
	// Panic: the commit panics; nothing is written.
	Panic
)

func (f Fault) String() string {
	switch f {
	case Error:
		return "error"
	case Deadline:
		return "deadline"
	case Conflict:
		return "conflict"
	case LandedError:
		return "landed-error"
	case Panic:
		return "panic"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// OtherWriterTask is the task id of the error a Conflict's other writer
// records.
const OtherWriterTask = "other-writer"

// Store is a nodestore.Store with injected faults. It is safe for
// concurrent use.
type Store struct {
	nodestore.Store

	mu        sync.Mutex
	commits   []Fault // faults of the next commits, in order
	loadFails int     // Loads still to fail; negative: until FailLoads(0)
	writeErr  error   // set: every write fails (FailWrites)
	gate      chan struct{}
	delay     time.Duration // added to every commit (DelayCommits)

	held    atomic.Int32
	written atomic.Int64
	checks  atomic.Int64
}

var _ nodestore.WriteChecker = (*Store)(nil)

// New wraps s.
func New(s nodestore.Store) *Store { return &Store{Store: s} }

// FailCommits makes the next len(faults) commits fail, in order, each as
// its fault says. A commit takes its fault when it is called, before it
// waits at a gate.
func (s *Store) FailCommits(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits = append(s.commits, faults...)
}

// DelayCommits makes every commit from now on wait d before it reaches the
// wrapped store, as a remote store's round trips do (Cloud Datastore
// commits take tens of milliseconds); 0 stops delaying. A commit whose
// context ends while it waits returns the context's error and writes
// nothing.
func (s *Store) DelayCommits(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// FailWrites makes every write fail, from now until FailWrites(nil), as a
// full or read-only disk does: Commit, CreatePool, DeletePool and
// CheckWrite return an error wrapping both ErrInjected and err, and write
// nothing. Reads are unaffected. A commit checks it when it is called,
// before it takes a fault of FailCommits (which stays queued) or waits at a
// gate.
func (s *Store) FailWrites(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeErr = err
}

// writeFailure is the error of a write while FailWrites is on, or nil.
// s.mu is held.
func (s *Store) writeFailure(what string) error {
	if s.writeErr == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %w", ErrInjected, what, s.writeErr)
}

// FailLoads makes the next n Loads fail with ErrInjected; n < 0 makes
// every Load fail until FailLoads(0).
func (s *Store) FailLoads(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loadFails = n
}

// Hold makes commits and write checks wait at a gate (after taking their
// fault, or passing FailWrites) until Release.
func (s *Store) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
}

// Release lets held commits through and stops holding.
func (s *Store) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

// wait waits at gate, if not nil.
func (s *Store) wait(gate chan struct{}) {
	if gate != nil {
		s.held.Add(1)
		<-gate
		s.held.Add(-1)
	}
}

// Held returns how many commits and write checks wait at the gate.
func (s *Store) Held() int { return int(s.held.Load()) }

// Written returns how many commits reached the wrapped store and succeeded
// there (LandedError ones included).
func (s *Store) Written() int64 { return s.written.Load() }

// WriteChecks returns how many times CheckWrite was called.
func (s *Store) WriteChecks() int64 { return s.checks.Load() }

// CheckWrite implements nodestore.WriteChecker: it fails while FailWrites
// is on, else (after waiting at a gate, see Hold) it is the wrapped store's
// check (nil if it has none).
func (s *Store) CheckWrite(ctx context.Context) error {
	s.checks.Add(1)
	s.mu.Lock()
	err := s.writeFailure("write check")
	gate := s.gate
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.wait(gate)
	if wc, ok := s.Store.(nodestore.WriteChecker); ok {
		return wc.CheckWrite(ctx)
	}
	return ctx.Err()
}

// CreatePool implements nodestore.Store.
func (s *Store) CreatePool(ctx context.Context, pool string, st *statev1.PoolState) error {
	s.mu.Lock()
	err := s.writeFailure(fmt.Sprintf("creating pool %q", pool))
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Store.CreatePool(ctx, pool, st)
}

// DeletePool implements nodestore.Store.
func (s *Store) DeletePool(ctx context.Context, pool string) error {
	s.mu.Lock()
	err := s.writeFailure(fmt.Sprintf("deleting pool %q", pool))
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Store.DeletePool(ctx, pool)
}

// Commit implements nodestore.Store.
func (s *Store) Commit(ctx context.Context, pool string, expect int64, d *statev1.PoolDelta) (nodestore.CommitStats, error) {
	s.mu.Lock()
	if err := s.writeFailure(fmt.Sprintf("commit of pool %q", pool)); err != nil {
		s.mu.Unlock()
		return nodestore.CommitStats{}, err
	}
	var f Fault
	if len(s.commits) > 0 {
		f, s.commits = s.commits[0], s.commits[1:]
	}
	gate, delay := s.gate, s.delay
	s.mu.Unlock()
	s.wait(gate)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nodestore.CommitStats{}, ctx.Err()
		}
	}
	switch f {
	case Error:
		return nodestore.CommitStats{}, fmt.Errorf("%w: commit of pool %q", ErrInjected, pool)
	case Deadline:
		<-ctx.Done()
		return nodestore.CommitStats{}, ctx.Err()
	case Conflict:
		other := &statev1.PoolDelta{TaskErrors: []*statev1.TaskError{{TaskId: OtherWriterTask, Error: "written by another process"}}}
		if _, err := s.Store.Commit(ctx, pool, expect, other); err != nil {
			return nodestore.CommitStats{}, err
		}
		s.written.Add(1)
	case Panic:
		panic(fmt.Sprintf("faultstore: injected panic in the commit of pool %q", pool))
	}
	cs, err := s.Store.Commit(ctx, pool, expect, d)
	if err == nil {
		s.written.Add(1)
		if f == LandedError {
			return nodestore.CommitStats{}, fmt.Errorf("%w: commit of pool %q (written)", ErrInjected, pool)
		}
	}
	return cs, err
}

// Load implements nodestore.Store.
func (s *Store) Load(ctx context.Context, pool string) (*statev1.PoolState, int64, error) {
	s.mu.Lock()
	fail := s.loadFails != 0
	if s.loadFails > 0 {
		s.loadFails--
	}
	s.mu.Unlock()
	if fail {
		return nil, 0, fmt.Errorf("%w: load of pool %q", ErrInjected, pool)
	}
	return s.Store.Load(ctx, pool)
}
