// Package nodestore persists scheduler pools: a head record per pool (its
// generation and latest snapshot), a snapshot split into shards, and an
// append-only log of the deltas committed since that snapshot
// (docs/service.md §4). A commit writes one log entry and advances the
// generation in one compare-and-swap, so it writes in proportion to what the
// batch changed. Snapshots are taken in the background and old shards and log
// entries are garbage-collected after a safe lag.
//
// Implementations: embedded (a bbolt file, the default), memory (for tests)
// and datastore (Cloud Datastore, Firestore in Datastore mode). One
// conformance suite, nodestore/storetest, runs against all of them, the
// datastore store on the Firestore emulator.
package nodestore

import (
	"context"
	"errors"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
)

// Errors of Store methods; callers classify them with errors.Is.
var (
	// ErrNotFound: the pool does not exist.
	ErrNotFound = errors.New("nodestore: pool not found")
	// ErrAlreadyExists: CreatePool of an existing pool.
	ErrAlreadyExists = errors.New("nodestore: pool already exists")
	// ErrConflict: Commit found another generation than expected; the caller
	// catches up (ReadLog) and retries.
	ErrConflict = errors.New("nodestore: generation moved")
	// ErrLogTruncated: ReadLog cannot return every entry after the given
	// generation any more (a snapshot covers them and they were collected);
	// the caller reloads with Load.
	ErrLogTruncated = errors.New("nodestore: log entries collected")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("nodestore: closed")
	// ErrCorrupt: stored data failed its checksum or could not be decoded.
	ErrCorrupt = errors.New("nodestore: corrupt data")
)

// Store persists pools. Implementations are safe for concurrent use.
type Store interface {
	// CreatePool stores st as the pool's state at generation 1.
	CreatePool(ctx context.Context, pool string, st *statev1.PoolState) error
	// DeletePool removes the pool and everything stored for it.
	DeletePool(ctx context.Context, pool string) error
	// ListPools returns the pool ids, sorted.
	ListPools(ctx context.Context) ([]string, error)
	// Load returns the pool's latest committed state and its generation:
	// the latest snapshot with every later log entry applied.
	Load(ctx context.Context, pool string) (*statev1.PoolState, int64, error)
	// ReadLog returns, in order, the deltas committed after generation after
	// and the generation of the last one (after itself when there are none).
	ReadLog(ctx context.Context, pool string, after int64) ([]*statev1.PoolDelta, int64, error)
	// Commit appends d as generation expect+1 if the pool is at generation
	// expect, atomically and durably, and returns what it wrote.
	Commit(ctx context.Context, pool string, expect int64, d *statev1.PoolDelta) (CommitStats, error)
	// Close stops background work and releases resources.
	Close() error
}

// CommitStats describes one commit.
type CommitStats struct {
	Generation int64
	// LogBytes is what the log entry took in the store (after compression).
	LogBytes int
}

// Stats describes a store's background work, for metrics and benchmarks.
type Stats struct {
	Commits         int64
	LogBytes        int64 // log bytes written by commits
	Snapshots       int64
	SnapshotBytes   int64 // shard bytes written by snapshots
	CollectedLogs   int64 // log entries garbage-collected
	CollectedShards int64
}

// StatsReporter is implemented by stores that count their work.
type StatsReporter interface {
	Stats() Stats
}

// WriteChecker is implemented by stores that can prove, cheaply, that they
// take durable writes: CheckWrite makes one small write the way a commit
// does (for the embedded store, a key written and deleted in one fsynced
// transaction) and reports its error. It changes no pool. The pipeline
// calls it while the store is unhealthy (a write failed), so that health
// recovers without waiting for traffic.
type WriteChecker interface {
	CheckWrite(ctx context.Context) error
}
