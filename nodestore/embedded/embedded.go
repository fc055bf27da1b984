// Package embedded is the default nodestore.Store: a bbolt file,
// <dir>/pools.db, so that a single process keeps its pools across restarts
// with no setup.
//
// Per pool the file holds a small head record (generation, current snapshot,
// shard count, creation time), the current snapshot split into compressed
// shards, and an append-only log of the deltas committed since (see
// layout.go). A commit is one bbolt transaction that checks the head's
// generation, appends the entry and advances the generation; bbolt syncs the
// file before Commit returns, so a commit that returned nil survives a crash.
// It writes the entry and the head only, in proportion to the delta.
//
// A background goroutine snapshots a pool once its log since the last
// snapshot holds Options.SnapshotEvery entries or Options.SnapshotBytes
// bytes: it reads the snapshot and the log from the file in a short read
// transaction, rebuilds the state outside any transaction, writes the shards
// one transaction each, and installs the snapshot with a transaction that
// moves the head's snapshot pointer without changing its generation. Shards
// of replaced snapshots and log entries covered by a snapshot are deleted only
// once that snapshot has been installed for Options.GCLag.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/blob"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/upkeep"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"
)

// FileName is the database file's name inside the directory given to Open.
const FileName = "pools.db"

// Defaults of Options.
const (
	DefaultSnapshotEvery = upkeep.DefaultSnapshotEvery
	DefaultSnapshotBytes = upkeep.DefaultSnapshotBytes
	DefaultShardBytes    = 900_000
	DefaultGCLag         = upkeep.DefaultGCLag
	DefaultMaintainEvery = upkeep.DefaultMaintainEvery
	DefaultLockTimeout   = time.Second
	DefaultCheckWrite    = 1 << 20
)

// MinShardBytes is the smallest Options.ShardBytes accepted.
const MinShardBytes = 1024

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// CodeVersion is recorded in every log entry and snapshot (at most 256
	// bytes), to tell which build wrote what.
	CodeVersion string
	// A pool is snapshotted once its log since the last snapshot holds
	// SnapshotEvery entries (default 20000) or SnapshotBytes bytes (default
	// 8 MiB). The byte bound keeps what a snapshot writes in proportion to
	// the log it replaces (at 100,000 waiting tasks a snapshot is about
	// 2 MB, a batch's entry about 1.3 KB); snapshotting every few thousand
	// small commits instead would write, and keep for GCLag, far more
	// snapshot bytes than log bytes.
	SnapshotEvery int
	SnapshotBytes int64
	// ShardBytes bounds every stored value: snapshot shards and the parts of
	// a log entry (default 900 KB, at least MinShardBytes).
	ShardBytes int
	// GCLag is how long a snapshot must have been installed before the log
	// entries it covers and the snapshot it replaced are deleted (default
	// 10 minutes), measured with Now.
	GCLag time.Duration
	// MaintainEvery is how often the background goroutine checks every pool
	// for a due snapshot (e.g. one that failed before) and collects garbage
	// (default 1 minute; negative: never, only after snapshots).
	MaintainEvery time.Duration
	// LockTimeout is how long Open waits for the file lock another store
	// holds before failing (default 1 s).
	LockTimeout time.Duration
	// CheckWriteBytes is how much CheckWrite writes beside the file to
	// prove that the disk has room (default 1 MiB: more than a snapshot
	// shard; negative: nothing).
	CheckWriteBytes int
	// Now is the clock of GC decisions and recorded times (default time.Now).
	Now func() time.Time
	// OnSnapshot, if set, is called after each snapshot is installed with
	// the pool, the generation it holds and its size in bytes (compressed).
	OnSnapshot func(pool string, gen int64, bytes int)
	// Logger receives background errors (default slog.Default()).
	Logger *slog.Logger
}

// Store is the embedded nodestore.Store. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options

	gate upkeep.Gate

	// snapMu serializes snapshots and collections: a pending snapshot
	// record seen by a collection is then known to be abandoned.
	snapMu sync.Mutex

	policy upkeep.Policy
	bg     *upkeep.Worker

	stats upkeep.Counters

	// testHookBeforeInstall, if set, runs after a snapshot's shards are
	// written and before it is installed.
	testHookBeforeInstall func()
}

var (
	_ nodestore.Store         = (*Store)(nil)
	_ nodestore.StatsReporter = (*Store)(nil)
	_ nodestore.WriteChecker  = (*Store)(nil)
)

// Open opens (creating them if needed) dir and the store in it. It fails
// after Options.LockTimeout if another store has the file open, and at once,
// with an error wrapping nodestore.ErrCorrupt that names the file, if the
// file is empty, is not a bbolt file, or is shorter than its pages need
// (truncated: bbolt would fault reading the missing pages).
func Open(dir string, opts Options) (*Store, error) {
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = DefaultSnapshotEvery
	}
	if opts.SnapshotBytes <= 0 {
		opts.SnapshotBytes = DefaultSnapshotBytes
	}
	if opts.ShardBytes == 0 {
		opts.ShardBytes = DefaultShardBytes
	}
	if opts.ShardBytes < MinShardBytes {
		return nil, fmt.Errorf("embedded: ShardBytes %d is less than %d", opts.ShardBytes, MinShardBytes)
	}
	if len(opts.CodeVersion) > blob.MaxCodeVersion {
		return nil, fmt.Errorf("embedded: CodeVersion of %d bytes, more than %d", len(opts.CodeVersion), blob.MaxCodeVersion)
	}
	if opts.GCLag <= 0 {
		opts.GCLag = DefaultGCLag
	}
	if opts.MaintainEvery == 0 {
		opts.MaintainEvery = DefaultMaintainEvery
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.CheckWriteBytes == 0 {
		opts.CheckWriteBytes = DefaultCheckWrite
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := checkFile(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		// The free list is rebuilt when the file is opened instead of being
		// rewritten by every commit; durability is unaffected.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("embedded: %s is in use by another store (gave up after %v): %w", path, opts.LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketPools); err != nil {
			return err
		}
		switch v := meta.Get(keyFormat); {
		case v == nil:
			return meta.Put(keyFormat, []byte{layoutVersion})
		case len(v) != 1 || v[0] != layoutVersion:
			return fmt.Errorf("layout version %v, this code reads %d", v, layoutVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("embedded: initializing %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts, policy: upkeep.Policy{SnapshotEvery: opts.SnapshotEvery, SnapshotBytes: opts.SnapshotBytes}}
	s.bg = upkeep.Start(opts.MaintainEvery, upkeep.Work{
		Name:      "embedded",
		ListPools: s.ListPools,
		Snapshot:  func(ctx context.Context, pool string) error { _, err := s.snapshot(ctx, pool, false); return err },
		Collect:   s.collectPool,
		Logger:    opts.Logger,
	})
	return s, nil
}

// Close implements nodestore.Store: it stops the background work, waits for
// it and closes the file. Closing twice is allowed.
func (s *Store) Close() error {
	s.bg.Stop()
	return s.gate.Close(s.db.Close)
}

func poolBucket(tx *bolt.Tx, pool string) (*bolt.Bucket, error) {
	b := tx.Bucket(bucketPools).Bucket([]byte(pool))
	if b == nil {
		return nil, fmt.Errorf("%w: %q", nodestore.ErrNotFound, pool)
	}
	return b, nil
}

// poolHead returns the pool's bucket and its head.
func poolHead(tx *bolt.Tx, pool string) (*bolt.Bucket, head, error) {
	pb, err := poolBucket(tx, pool)
	if err != nil {
		return nil, head{}, err
	}
	h, err := decodeHead(pb.Get(keyHead))
	if err != nil {
		return nil, head{}, err
	}
	return pb, h, nil
}

// CreatePool implements nodestore.Store. The state is stored in the
// canonical form Load returns (every list sorted by id).
func (s *Store) CreatePool(ctx context.Context, pool string, st *statev1.PoolState) error {
	if err := nodestore.CheckPoolID(pool); err != nil {
		return err
	}
	if err := s.gate.Begin(ctx); err != nil {
		return err
	}
	defer s.gate.End()
	bl, err := s.newBlob(nodestore.NewShadow(st).State(), 1)
	if err != nil {
		return err
	}
	hdr, shards := bl.SnapshotShards(s.opts.ShardBytes)
	now := s.opts.Now().UnixNano()
	return s.db.Update(func(tx *bolt.Tx) error {
		pools := tx.Bucket(bucketPools)
		if pools.Bucket([]byte(pool)) != nil {
			return fmt.Errorf("%w: %q", nodestore.ErrAlreadyExists, pool)
		}
		pb, err := pools.CreateBucket([]byte(pool))
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketSnaps, bucketShards, bucketLog} {
			if _, err := pb.CreateBucket(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		inc, err := meta.NextSequence()
		if err != nil {
			return err
		}
		id, err := meta.NextSequence()
		if err != nil {
			return err
		}
		rec := snapRec{state: snapInstalled, installed: now, hdr: hdr}
		if err := pb.Bucket(bucketSnaps).Put(u64(id), rec.encode()); err != nil {
			return err
		}
		for i, sh := range shards {
			if err := pb.Bucket(bucketShards).Put(shardKey(id, i), sh); err != nil {
				return err
			}
		}
		h := head{gen: 1, snapID: id, snapGen: 1, shards: uint32(len(shards)), created: now, incarnation: inc}
		return pb.Put(keyHead, h.encode())
	})
}

// CheckWrite implements nodestore.WriteChecker, in two steps:
//
//   - room to grow: it writes Options.CheckWriteBytes of incompressible
//     bytes to a file beside pools.db (FileName + ".writecheck"), syncs and
//     removes it. bbolt alone cannot tell: a transaction that changes
//     little reuses the pages the previous one freed, so on a full disk
//     (a 2 MiB tmpfs, measured) a small transaction keeps succeeding while
//     commits, whose log only grows, fail with ENOSPC.
//   - bbolt commits: one transaction writes a key in the meta bucket and
//     deletes it again, so that bbolt writes a page and its meta page and
//     syncs the file, as a commit does.
//
// Pools are untouched.
func (s *Store) CheckWrite(ctx context.Context) error {
	if err := s.gate.Begin(ctx); err != nil {
		return err
	}
	defer s.gate.End()
	if err := s.checkRoom(); err != nil {
		return fmt.Errorf("embedded: write check beside %s: %w", s.db.Path(), err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyWriteCheck, u64(uint64(s.opts.Now().UnixNano()))); err != nil {
			return err
		}
		return meta.Delete(keyWriteCheck)
	})
	if err != nil {
		return fmt.Errorf("embedded: write check of %s: %w", s.db.Path(), err)
	}
	return nil
}

// checkRoom writes, syncs and removes the probe file of CheckWrite.
func (s *Store) checkRoom() (err error) {
	path := s.db.Path() + ".writecheck"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(path); err == nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		}
	}()
	// Random bytes, so that a compressing file system stores them all.
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	rng := rand.NewChaCha8(seed)
	buf := make([]byte, max(0, min(s.opts.CheckWriteBytes, 64<<10)))
	for left := s.opts.CheckWriteBytes; left > 0; left -= len(buf) {
		b := buf[:min(left, len(buf))]
		rng.Read(b)
		if _, err := f.Write(b); err != nil {
			return err
		}
	}
	return f.Sync()
}

// DeletePool implements nodestore.Store.
func (s *Store) DeletePool(ctx context.Context, pool string) error {
	if err := s.gate.Begin(ctx); err != nil {
		return err
	}
	defer s.gate.End()
	return s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketPools).DeleteBucket([]byte(pool))
		if errors.Is(err, bolterrors.ErrBucketNotFound) || errors.Is(err, bolterrors.ErrBucketNameRequired) {
			return fmt.Errorf("%w: %q", nodestore.ErrNotFound, pool)
		}
		return err
	})
}

// ListPools implements nodestore.Store. bbolt orders keys bytewise, which
// is Go's string order.
func (s *Store) ListPools(ctx context.Context) ([]string, error) {
	if err := s.gate.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.gate.End()
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPools).ForEachBucket(func(k []byte) error {
			ids = append(ids, string(k))
			return nil
		})
	})
	return ids, err
}

// stored is what a read transaction copies out of the file, to be decoded
// after it ends.
type stored struct {
	head    head
	snap    snapRec
	shards  [][]byte
	entries []blob.Entry
}

// readSnapshot copies the head's snapshot out of pb.
func readSnapshot(pb *bolt.Bucket, h head) (snapRec, [][]byte, error) {
	v := pb.Bucket(bucketSnaps).Get(u64(h.snapID))
	if v == nil {
		return snapRec{}, nil, fmt.Errorf("%w: snapshot %d of generation %d missing", nodestore.ErrCorrupt, h.snapID, h.snapGen)
	}
	rec, err := decodeSnapRec(v)
	if err != nil {
		return snapRec{}, nil, err
	}
	if rec.blob.Gen != h.snapGen || rec.blob.Parts != h.shards {
		return snapRec{}, nil, fmt.Errorf("%w: snapshot %d holds generation %d in %d shards, head says %d in %d", nodestore.ErrCorrupt, h.snapID, rec.blob.Gen, rec.blob.Parts, h.snapGen, h.shards)
	}
	shards := make([][]byte, rec.blob.Parts)
	sb := pb.Bucket(bucketShards)
	for i := range shards {
		v := sb.Get(shardKey(h.snapID, i))
		if v == nil {
			return snapRec{}, nil, fmt.Errorf("%w: shard %d of snapshot %d missing", nodestore.ErrCorrupt, i, h.snapID)
		}
		shards[i] = bytes.Clone(v)
	}
	return rec, shards, nil
}

// readEntries copies the log entries of generations after+1..to out of pb.
func readEntries(pb *bolt.Bucket, after, to int64) ([]blob.Entry, error) {
	var out []blob.Entry
	c := pb.Bucket(bucketLog).Cursor()
	next := after + 1
	for k, v := c.Seek(logKey(next, 0)); k != nil; k, v = c.Next() {
		gen, part, ok := parseLogKey(k)
		if !ok {
			return nil, fmt.Errorf("%w: log key %x", nodestore.ErrCorrupt, k)
		}
		if gen > to {
			break
		}
		switch {
		case part == 0 && gen == next:
			out = append(out, blob.Entry{Gen: gen})
			next++
		case part > 0 && len(out) > 0 && gen == next-1 && part == len(out[len(out)-1].Parts):
		default:
			return nil, fmt.Errorf("%w: log part %d of generation %d out of sequence (expected generation %d)", nodestore.ErrCorrupt, part, gen, next)
		}
		e := &out[len(out)-1]
		e.Parts = append(e.Parts, bytes.Clone(v))
	}
	if next != to+1 {
		return nil, fmt.Errorf("%w: log entries %d..%d missing", nodestore.ErrCorrupt, next, to)
	}
	return out, nil
}

// readState copies the head, snapshot and later log entries in one read
// transaction.
func (s *Store) readState(pool string) (stored, error) {
	var r stored
	err := s.db.View(func(tx *bolt.Tx) error {
		pb, h, err := poolHead(tx, pool)
		if err != nil {
			return err
		}
		r.head = h
		if r.snap, r.shards, err = readSnapshot(pb, r.head); err != nil {
			return err
		}
		r.entries, err = readEntries(pb, r.head.snapGen, r.head.gen)
		return err
	})
	return r, err
}

// build decodes what readState copied into the state at r.head.gen.
func (r *stored) build(pool string) (*statev1.PoolState, error) {
	st, err := blob.Build(&r.snap.blob, r.snap.hdr, r.shards, r.entries)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", pool, err)
	}
	return st, nil
}

// Load implements nodestore.Store. One read transaction sees a consistent
// head, snapshot and log; decoding happens after it.
func (s *Store) Load(ctx context.Context, pool string) (*statev1.PoolState, int64, error) {
	if err := s.gate.Begin(ctx); err != nil {
		return nil, 0, err
	}
	defer s.gate.End()
	r, err := s.readState(pool)
	if err != nil {
		return nil, 0, err
	}
	st, err := r.build(pool)
	if err != nil {
		return nil, 0, err
	}
	return st, r.head.gen, nil
}

// ReadLog implements nodestore.Store. Asking for the entries after a
// generation the pool has not reached (after a DeletePool and CreatePool,
// say) or below 1 also gives ErrLogTruncated: the caller reloads.
func (s *Store) ReadLog(ctx context.Context, pool string, after int64) ([]*statev1.PoolDelta, int64, error) {
	if err := s.gate.Begin(ctx); err != nil {
		return nil, 0, err
	}
	defer s.gate.End()
	var h head
	var entries []blob.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		pb, ph, err := poolHead(tx, pool)
		if err != nil {
			return err
		}
		h = ph
		oldest := h.gen + 1 // the oldest generation kept in the log
		if k, _ := pb.Bucket(bucketLog).Cursor().First(); k != nil {
			gen, _, ok := parseLogKey(k)
			if !ok {
				return fmt.Errorf("%w: log key %x", nodestore.ErrCorrupt, k)
			}
			oldest = gen
		}
		if after > h.gen || after < oldest-1 {
			return fmt.Errorf("%w: pool %q keeps generations %d..%d, asked for those after %d", nodestore.ErrLogTruncated, pool, oldest, h.gen, after)
		}
		entries, err = readEntries(pb, after, h.gen)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	ds, err := blob.DecodeEntries(entries)
	if err != nil {
		return nil, 0, fmt.Errorf("pool %q: %w", pool, err)
	}
	return ds, h.gen, nil
}

// Commit implements nodestore.Store. The entry is encoded before the
// transaction, which then only compares the generation and writes the entry
// and the head.
func (s *Store) Commit(ctx context.Context, pool string, expect int64, d *statev1.PoolDelta) (nodestore.CommitStats, error) {
	if err := s.gate.Begin(ctx); err != nil {
		return nodestore.CommitStats{}, err
	}
	defer s.gate.End()
	if d == nil {
		d = &statev1.PoolDelta{}
	}
	bl, err := s.newBlob(d, expect+1)
	if err != nil {
		return nodestore.CommitStats{}, err
	}
	parts := bl.EntryParts(s.opts.ShardBytes)
	n := blob.Size(parts)
	var before, after head
	err = s.db.Update(func(tx *bolt.Tx) error {
		pb, ph, err := poolHead(tx, pool)
		if err != nil {
			return err
		}
		before = ph
		if before.gen != expect {
			return fmt.Errorf("%w: pool %q is at generation %d, not %d", nodestore.ErrConflict, pool, before.gen, expect)
		}
		lb := pb.Bucket(bucketLog)
		for i, p := range parts {
			if err := lb.Put(logKey(expect+1, i), p); err != nil {
				return err
			}
		}
		after = before
		after.gen++
		after.logBytes += int64(n)
		return pb.Put(keyHead, after.encode())
	})
	if err != nil {
		return nodestore.CommitStats{}, err
	}
	s.stats.Commits.Add(1)
	s.stats.LogBytes.Add(int64(n))
	if s.policy.Crossed(after.gen-after.snapGen, before.logBytes, after.logBytes) {
		s.bg.MarkDue(pool)
	}
	return nodestore.CommitStats{Generation: after.gen, LogBytes: n}, nil
}

// Stats implements nodestore.StatsReporter. The state a pool is created
// with is not counted as a snapshot.
func (s *Store) Stats() nodestore.Stats { return s.stats.Stats() }

// newBlob encodes m as the blob of generation gen.
func (s *Store) newBlob(m proto.Message, gen int64) (blob.Blob, error) {
	b, err := blob.New(m, gen, s.opts.Now(), s.opts.CodeVersion)
	if err != nil {
		return blob.Blob{}, fmt.Errorf("embedded: %w", err)
	}
	return b, nil
}
