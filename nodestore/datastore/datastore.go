// Package datastore is the nodestore.Store on Cloud Datastore (Firestore in
// Datastore mode), for services that run several replicas or keep no local
// disk: --store datastore:<project>[/<database>].
//
// Per pool it keeps a head entity (generation, current snapshot, code
// version), the current snapshot split into compressed shards of at most
// Options.ShardBytes, and one log entity per committed batch, several when
// the entry is larger than one entity may be (see layout.go). A commit is
// one transaction that reads the head, checks its generation, writes the
// entry and advances the head; a transaction that finds another generation
// returns nodestore.ErrConflict. No commit goes beyond Cloud Datastore's
// limits of 500 mutations and 10 MiB: the store refuses such a commit with
// ErrCommitTooLarge, naming the limit, before sending anything.
//
// Snapshots and garbage collection follow nodestore/embedded: a background
// goroutine snapshots a pool once its log since the last snapshot holds
// Options.SnapshotEvery entries or Options.SnapshotBytes bytes, writes the
// shards outside any transaction and installs the snapshot by updating the
// head, generation unchanged. Log entries a snapshot covers, and the shards
// of the snapshot it replaced, are deleted once it has been installed for
// Options.GCLag, by key, without loading the state; a reader reads the
// shards the head it read points to, which stay for GCLag after the head
// stops pointing to them. The collection also removes the incarnations no
// head names (what a failed CreatePool, or a snapshot racing DeletePool,
// leaves).
//
// RPCs that fail with Aborted, Unavailable or DeadlineExceeded are retried
// with exponential backoff, Options.Attempts times in all (the client
// library's own retries are off); then the error is returned, which the
// pipeline answers as Unavailable. A transaction that landed though its
// answer was lost is recognized by its retry and reported as done (see
// Commit). docs/operations.md describes the behavior under each fault.
//
// The client library connects to the emulator named by
// DATASTORE_EMULATOR_HOST when it is set, and to Cloud Datastore with the
// application default credentials otherwise.
package datastore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	gds "cloud.google.com/go/datastore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/blob"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/upkeep"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Defaults of Options.
const (
	DefaultShardBytes = 900_000
	DefaultAttempts   = 5
	DefaultRetryDelay = 100 * time.Millisecond
	// DefaultAttemptTimeout bounds one attempt: the client library waits
	// for a connection to the database, up to 60 s, rather than failing.
	DefaultAttemptTimeout = 20 * time.Second
	// MaxRetryDelay bounds the backoff between two attempts.
	MaxRetryDelay = 2 * time.Second
)

// Bounds of Options.ShardBytes: a shard and its key must fit in an entity.
const (
	MinShardBytes = 1024
	MaxShardBytes = 1_000_000
)

// ErrCommitTooLarge: a commit would exceed Cloud Datastore's limit of
// MaxCommitMutations mutations or MaxCommitBytes bytes; the error names the
// limit. Nothing was written.
var ErrCommitTooLarge = errors.New("datastore: commit too large")

var errBadKey = fmt.Errorf("%w: unexpected key", nodestore.ErrCorrupt)

// Options configure a Store. The zero value gives the defaults.
type Options struct {
	// CodeVersion is recorded in every head, log entry and snapshot (at most
	// 256 bytes), to tell which build wrote what.
	CodeVersion string
	// A pool is snapshotted once its log since the last snapshot holds
	// SnapshotEvery entries (default 20000) or SnapshotBytes bytes (default
	// 8 MiB), as in nodestore/embedded.
	SnapshotEvery int
	SnapshotBytes int64
	// ShardBytes bounds the compressed bytes of every snapshot shard and
	// every part of a log entry (default 900 KB, MinShardBytes to
	// MaxShardBytes).
	ShardBytes int
	// GCLag is how long a snapshot must have been installed before the log
	// entries it covers and the snapshot it replaced are deleted (default
	// 10 minutes), measured with Now.
	GCLag time.Duration
	// MaintainEvery is how often the background goroutine checks every pool
	// for a due snapshot and collects garbage (default 1 minute; negative:
	// never, only after snapshots).
	MaintainEvery time.Duration
	// Attempts is how many times an RPC failing with Aborted, Unavailable
	// or DeadlineExceeded is tried in all (default 5). RetryDelay is the
	// first backoff (default 100 ms), doubled after each attempt up to
	// MaxRetryDelay.
	// Each attempt may take AttemptTimeout (default 20 s).
	Attempts       int
	RetryDelay     time.Duration
	AttemptTimeout time.Duration
	// Now is the clock of GC decisions and recorded times (default time.Now).
	Now func() time.Time
	// OnSnapshot, if set, is called after each snapshot is installed with
	// the pool, the generation it holds and its size in bytes (compressed).
	OnSnapshot func(pool string, gen int64, bytes int)
	// Logger receives background errors (default slog.Default()).
	Logger *slog.Logger
	// ClientOptions are passed to the client library.
	ClientOptions []option.ClientOption
}

// Store is the Cloud Datastore nodestore.Store. It is safe for concurrent use.
type Store struct {
	client *gds.Client
	opts   Options
	policy upkeep.Policy
	where  string // project/database, for errors

	gate upkeep.Gate

	// heads serializes this process's transactions that write a pool's
	// head (commits and snapshot installs), striped by pool id: two of
	// them at once both read and then write the head, and the database
	// makes one wait for the other (the emulator about 2 s).
	heads [64]sync.Mutex

	bg *upkeep.Worker

	stats upkeep.Counters
}

var (
	_ nodestore.Store         = (*Store)(nil)
	_ nodestore.StatsReporter = (*Store)(nil)
	_ nodestore.WriteChecker  = (*Store)(nil)
)

// Open returns the store in the database of project (database "" is the
// default database). It makes no RPC: an unreachable or forbidden database
// shows in the first operation's error.
func Open(ctx context.Context, project, database string, opts Options) (*Store, error) {
	if project == "" {
		return nil, errors.New("datastore: the project is empty")
	}
	if opts.ShardBytes == 0 {
		opts.ShardBytes = DefaultShardBytes
	}
	if opts.ShardBytes < MinShardBytes || opts.ShardBytes > MaxShardBytes {
		return nil, fmt.Errorf("datastore: ShardBytes %d is not within %d..%d", opts.ShardBytes, MinShardBytes, MaxShardBytes)
	}
	if len(opts.CodeVersion) > blob.MaxCodeVersion {
		return nil, fmt.Errorf("datastore: CodeVersion of %d bytes, more than %d", len(opts.CodeVersion), blob.MaxCodeVersion)
	}
	if opts.GCLag <= 0 {
		opts.GCLag = upkeep.DefaultGCLag
	}
	if opts.MaintainEvery == 0 {
		opts.MaintainEvery = upkeep.DefaultMaintainEvery
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = DefaultRetryDelay
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = DefaultAttemptTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	policy := upkeep.Policy{SnapshotEvery: opts.SnapshotEvery, SnapshotBytes: opts.SnapshotBytes}.WithDefaults()
	opts.SnapshotEvery, opts.SnapshotBytes = policy.SnapshotEvery, policy.SnapshotBytes
	// The store retries itself (retry.go). The client library's own
	// retries would resend a commit whose answer was lost under the same
	// transaction, which the database refuses as closed, hiding that the
	// commit landed; without them the store's next attempt finds out.
	copts := append([]option.ClientOption{
		option.WithGRPCDialOption(grpc.WithDisableRetry()),
		option.WithGRPCDialOption(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReadBytes))),
	}, opts.ClientOptions...)
	client, err := gds.NewClientWithDatabase(ctx, project, database, copts...)
	if err != nil {
		return nil, fmt.Errorf("datastore: project %q, database %q: %w", project, database, err)
	}
	where := project
	if database != "" {
		where += "/" + database
	}
	s := &Store{client: client, opts: opts, policy: policy, where: where}
	s.bg = upkeep.Start(opts.MaintainEvery, upkeep.Work{
		Name:      "datastore",
		ListPools: s.listAllPools,
		Snapshot:  func(ctx context.Context, pool string) error { _, err := s.snapshot(ctx, pool, false); return err },
		Collect:   s.collectPool,
		Logger:    opts.Logger,
	})
	return s, nil
}

// Close implements nodestore.Store: it stops the background work, waits for
// it and closes the client. Closing twice is allowed.
func (s *Store) Close() error {
	s.bg.Stop()
	return s.gate.Close(s.client.Close)
}

// getHead reads the pool's head, in tx if not nil. A pool being deleted is
// not found.
func (s *Store) getHead(ctx context.Context, tx *gds.Transaction, pool string) (headEnt, error) {
	var h headEnt
	var err error
	if tx != nil {
		err = tx.Get(poolKey(pool), &h)
	} else {
		err = s.client.Get(ctx, poolKey(pool), &h)
	}
	switch {
	case errors.Is(err, gds.ErrNoSuchEntity):
		return headEnt{}, fmt.Errorf("%w: %q", nodestore.ErrNotFound, pool)
	case err != nil:
		return headEnt{}, fmt.Errorf("datastore: reading the head of pool %q: %w", pool, err)
	case h.State != poolLive:
		return h, fmt.Errorf("%w: %q is being deleted", nodestore.ErrNotFound, pool)
	}
	return h, nil
}

// readHead reads the pool's head outside any transaction, with retries.
func (s *Store) readHead(ctx context.Context, pool string) (headEnt, error) {
	var h headEnt
	err := s.retry(ctx, func(ctx context.Context) error {
		var err error
		h, err = s.getHead(ctx, nil, pool)
		return err
	})
	return h, err
}

// newBlob encodes m as the blob of generation gen.
func (s *Store) newBlob(m proto.Message, gen int64) (blob.Blob, error) {
	b, err := blob.New(m, gen, s.opts.Now(), s.opts.CodeVersion)
	if err != nil {
		return blob.Blob{}, fmt.Errorf("datastore: %w", err)
	}
	return b, nil
}

// putBlobs writes values under keys outside any transaction, in requests
// of at most MaxCommitMutations entities and maxWriteBytes bytes.
func (s *Store) putBlobs(ctx context.Context, keys []*gds.Key, values [][]byte) error {
	for len(keys) > 0 {
		n, size := 0, 0
		for n < len(keys) && n < MaxCommitMutations {
			add := keyBytes(keys[n]) + entityOverhead + len(values[n])
			if n > 0 && size+add > maxWriteBytes {
				break
			}
			size += add
			n++
		}
		ents := make([]blobEnt, n)
		for i := range ents {
			ents[i].Data = values[i]
		}
		if err := s.retry(ctx, func(ctx context.Context) error {
			_, err := s.client.PutMulti(ctx, keys[:n], ents)
			return err
		}); err != nil {
			return err
		}
		keys, values = keys[n:], values[n:]
	}
	return nil
}

// deleteKeys deletes keys outside any transaction, MaxCommitMutations at a
// time.
func (s *Store) deleteKeys(ctx context.Context, keys []*gds.Key) error {
	for len(keys) > 0 {
		n := min(len(keys), MaxCommitMutations)
		if err := s.retry(ctx, func(ctx context.Context) error { return s.client.DeleteMulti(ctx, keys[:n]) }); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

func shardKeys(inc *gds.Key, id int64, n int) []*gds.Key {
	keys := make([]*gds.Key, n)
	for i := range keys {
		keys[i] = shardKey(inc, id, i)
	}
	return keys
}

// CreatePool implements nodestore.Store. The state is stored in the
// canonical form Load returns (every list sorted by id). Under a new
// incarnation, the snapshot's record is written first, pending, then the
// shards; one transaction then creates the head and marks the snapshot
// installed. Whatever a failed CreatePool leaves is an incarnation no head
// names, with a pending record: the collection removes it after GCLag. A
// retry that finds the head of this incarnation takes it as an earlier
// attempt's, whose answer was lost.
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
	inc, id := randomID(), randomID()
	ik := incKey(pool, inc)
	keys := shardKeys(ik, id, len(shards))
	now := s.opts.Now().UnixNano()
	pending := snapEnt{State: snapPending, Gen: 1, Shards: int64(len(shards)), Started: now, Header: hdr}
	err = s.retry(ctx, func(ctx context.Context) error {
		_, err := s.client.Put(ctx, snapKey(ik, id), &pending)
		return err
	})
	if err == nil {
		err = s.putBlobs(ctx, keys, shards)
	}
	if err != nil {
		// Best effort: the collection removes what stays.
		_ = s.deleteKeys(context.WithoutCancel(ctx), append(keys, snapKey(ik, id)))
		return s.errorf("creating pool %q", pool, err)
	}
	h := headEnt{
		Pool: pool, State: poolLive, Gen: 1, Incarnation: inc,
		SnapID: id, SnapGen: 1, Shards: int64(len(shards)), SnapHeader: hdr,
		LogFrom: 2, Created: now, CodeVersion: s.opts.CodeVersion,
	}
	rec := snapEnt{State: snapInstalled, Gen: 1, Shards: int64(len(shards)), Started: now, Installed: now, Header: hdr}
	for range 2 {
		var old headEnt
		err = s.transact(ctx, func(tx *gds.Transaction) error {
			old = headEnt{}
			if err := tx.Get(poolKey(pool), &old); err == nil && old.Incarnation == inc {
				return nil // an earlier attempt created it; its answer was lost
			} else if err == nil {
				return fmt.Errorf("%w: %q", nodestore.ErrAlreadyExists, pool)
			} else if !errors.Is(err, gds.ErrNoSuchEntity) {
				return err
			}
			if _, err := tx.Put(poolKey(pool), &h); err != nil {
				return err
			}
			_, err := tx.Put(snapKey(ik, id), &rec)
			return err
		})
		if errors.Is(err, nodestore.ErrAlreadyExists) && old.State == poolDeleting {
			// A deletion that stopped half-way: finish it, then create.
			if err = s.finishDelete(ctx, pool, old.Incarnation); err == nil {
				continue
			}
		}
		break
	}
	if err != nil {
		// Best effort: nothing refers to these shards; the collection
		// removes what stays. The record goes last.
		_ = s.deleteKeys(context.WithoutCancel(ctx), append(keys, snapKey(ik, id)))
		return s.errorf("creating pool %q", pool, err)
	}
	return nil
}

// errorf wraps err in the store's context, unless it is one of nodestore's
// errors already saying it all.
func (s *Store) errorf(format, pool string, err error) error {
	for _, e := range []error{nodestore.ErrNotFound, nodestore.ErrAlreadyExists, nodestore.ErrConflict, nodestore.ErrLogTruncated, nodestore.ErrClosed, context.Canceled} {
		if errors.Is(err, e) {
			return err
		}
	}
	return fmt.Errorf("datastore %s: "+format+": %w", s.where, pool, err)
}

func randomID() int64 { return rand.Int64N(1<<63-1) + 1 }

// DeletePool implements nodestore.Store: one transaction marks the head as
// being deleted (the pool is gone from then on), then the pool's entities
// are deleted, the head last. A retry that finds the head marked for the
// incarnation an earlier attempt read takes it as that attempt's: the pool
// asked for is deleted either way. A deletion that stops half-way is finished by
// the background collection or by a CreatePool of the same id.
func (s *Store) DeletePool(ctx context.Context, pool string) error {
	if err := s.gate.Begin(ctx); err != nil {
		return err
	}
	defer s.gate.End()
	var inc int64 // the incarnation an earlier attempt read
	err := s.transact(ctx, func(tx *gds.Transaction) error {
		h, err := s.getHead(ctx, tx, pool)
		if errors.Is(err, nodestore.ErrNotFound) && h.State == poolDeleting && inc != 0 && h.Incarnation == inc {
			return nil // an earlier attempt marked it; its answer was lost
		}
		if err != nil {
			return err
		}
		inc = h.Incarnation
		h.State = poolDeleting
		_, err = tx.Put(poolKey(pool), &h)
		return err
	})
	if err != nil {
		return s.errorf("deleting pool %q", pool, err)
	}
	if err := s.finishDelete(ctx, pool, inc); err != nil {
		// The pool is deleted; the collection removes what is left.
		s.opts.Logger.Warn("nodestore/datastore: deleting the entities of a deleted pool", slog.String("pool", pool), slog.Any("error", err))
	}
	return nil
}

// finishDelete deletes every entity of the pool's incarnation inc, then its
// head if it is still that incarnation, being deleted.
func (s *Store) finishDelete(ctx context.Context, pool string, inc int64) error {
	if _, err := s.deleteIncarnation(ctx, pool, inc); err != nil {
		return err
	}
	return s.transact(ctx, func(tx *gds.Transaction) error {
		var h headEnt
		err := tx.Get(poolKey(pool), &h)
		if errors.Is(err, gds.ErrNoSuchEntity) || err == nil && (h.State != poolDeleting || h.Incarnation != inc) {
			return nil
		}
		if err != nil {
			return err
		}
		return tx.Delete(poolKey(pool))
	})
}

// deleteIncarnation deletes every entity of the pool's incarnation inc, the
// snapshot records last: while any entity stays, a record stays, by which
// the collection finds the incarnation again. It returns how many shards it
// deleted.
func (s *Store) deleteIncarnation(ctx context.Context, pool string, inc int64) (int, error) {
	var keys []*gds.Key
	err := s.retry(ctx, func(ctx context.Context) error {
		var err error
		keys, err = s.client.GetAll(ctx, gds.NewQuery("").Ancestor(incKey(pool, inc)).KeysOnly(), nil)
		return err
	})
	if err != nil {
		return 0, err
	}
	slices.SortStableFunc(keys, func(a, b *gds.Key) int {
		return cmpBool(a.Kind == KindSnapshot, b.Kind == KindSnapshot)
	})
	shards := 0
	for _, k := range keys {
		if k.Kind == KindShard {
			shards++
		}
	}
	return shards, s.deleteKeys(ctx, keys)
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// ListPools implements nodestore.Store.
func (s *Store) ListPools(ctx context.Context) ([]string, error) {
	return s.listPools(ctx, false)
}

// listAllPools lists the pools for the background work: those with a
// head, being deleted too (the collection finishes their deletion), and
// the ids under which snapshot records or shards are stored without a head
// (what a failed CreatePool, or a snapshot racing DeletePool, left; the
// collection removes it).
func (s *Store) listAllPools(ctx context.Context) ([]string, error) {
	ids, err := s.listPools(ctx, true)
	if err != nil {
		return nil, err
	}
	if err := s.gate.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.gate.End()
	var keys []*gds.Key
	for _, kind := range []string{KindSnapshot, KindShard} {
		var found []*gds.Key
		err = s.retry(ctx, func(ctx context.Context) error {
			var err error
			found, err = s.client.GetAll(ctx, gds.NewQuery(kind).KeysOnly(), nil)
			return err
		})
		keys = append(keys, found...)
		if err != nil {
			return nil, fmt.Errorf("datastore %s: listing %s entities: %w", s.where, kind, err)
		}
	}
	for _, k := range keys {
		root := k
		for root.Parent != nil {
			root = root.Parent
		}
		if id, ok := poolOfKey(root); ok {
			if i, found := slices.BinarySearch(ids, id); !found {
				ids = slices.Insert(ids, i, id)
			}
		}
	}
	return ids, nil
}

// listPools reads every head and returns the pools' ids, sorted; those
// being deleted too if all.
func (s *Store) listPools(ctx context.Context, all bool) ([]string, error) {
	if err := s.gate.Begin(ctx); err != nil {
		return nil, err
	}
	defer s.gate.End()
	var heads []headEnt
	err := s.retry(ctx, func(ctx context.Context) error {
		heads = nil
		_, err := s.client.GetAll(ctx, gds.NewQuery(KindPool), &heads)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("datastore %s: listing pools: %w", s.where, err)
	}
	var ids []string
	for _, h := range heads {
		if all || h.State == poolLive {
			ids = append(ids, h.Pool)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// readLog reads the log entries of generations after+1..to of incarnation
// inc. It reports errMissingFirst when the first is missing (collected
// meanwhile); a gap further on is corruption.
func (s *Store) readLog(ctx context.Context, pool string, inc, after, to int64) ([]blob.Entry, error) {
	if after >= to {
		return nil, nil
	}
	ik := incKey(pool, inc)
	q := gds.NewQuery(KindLog).Ancestor(ik).
		FilterField("__key__", ">=", logKey(ik, after+1, 0)).
		FilterField("__key__", "<", logKey(ik, to+1, 0)).
		Order("__key__")
	var out []blob.Entry
	err := s.retry(ctx, func(ctx context.Context) error {
		out = out[:0]
		next := after + 1
		it := s.client.Run(ctx, q)
		for {
			var e blobEnt
			k, err := it.Next(&e)
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return err
			}
			gen, part, err := parseLogKey(k)
			if err != nil {
				return err
			}
			switch {
			case part == 0 && gen == next:
				out = append(out, blob.Entry{Gen: gen})
				next++
			case part > 0 && len(out) > 0 && gen == next-1 && part == len(out[len(out)-1].Parts):
			case len(out) == 0:
				return fmt.Errorf("%w: the log starts at generation %d part %d, not %d", errMissingFirst, gen, part, next)
			default:
				return fmt.Errorf("%w: log part %d of generation %d out of sequence (expected generation %d)", nodestore.ErrCorrupt, part, gen, next)
			}
			last := &out[len(out)-1]
			last.Parts = append(last.Parts, e.Data)
		}
		switch {
		case next == after+1:
			return fmt.Errorf("%w: log entries %d..%d missing", errMissingFirst, next, to)
		case next != to+1:
			return fmt.Errorf("%w: log entries %d..%d missing", nodestore.ErrCorrupt, next, to)
		}
		return nil
	})
	return out, err
}

var errMissingFirst = fmt.Errorf("%w: the log's first entry is missing", nodestore.ErrCorrupt)

// stored is a pool's head, snapshot shards and log after the snapshot, as
// read.
type stored struct {
	head    headEnt
	shards  [][]byte
	entries []blob.Entry
}

// readState reads the head, then the shards it points to and the log up to
// its generation. What the head points to stays for GCLag after another
// head replaces it; if a reader is slower than that, it starts again from
// the new head.
func (s *Store) readState(ctx context.Context, pool string) (stored, error) {
	for attempt := 0; ; attempt++ {
		r, err := s.readStateOnce(ctx, pool)
		if err == nil || attempt == 2 || !errors.Is(err, nodestore.ErrCorrupt) {
			return r, err
		}
		if h, herr := s.getHead(ctx, nil, pool); herr != nil || h.SnapID == r.head.SnapID && h.Incarnation == r.head.Incarnation {
			return r, err // the head did not move: the data is bad
		}
	}
}

func (s *Store) readStateOnce(ctx context.Context, pool string) (stored, error) {
	var r stored
	var err error
	r.head, err = s.readHead(ctx, pool)
	if err != nil {
		return r, err
	}
	h := r.head
	keys := shardKeys(incKey(pool, h.Incarnation), h.SnapID, int(h.Shards))
	ents := make([]blobEnt, len(keys))
	err = s.retry(ctx, func(ctx context.Context) error { return s.client.GetMulti(ctx, keys, ents) })
	var me gds.MultiError
	if errors.As(err, &me) {
		for i, e := range me {
			if errors.Is(e, gds.ErrNoSuchEntity) {
				return r, fmt.Errorf("%w: shard %d of snapshot %016x (generation %d) missing", nodestore.ErrCorrupt, i, uint64(h.SnapID), h.SnapGen)
			}
		}
	}
	if err != nil {
		return r, err
	}
	r.shards = make([][]byte, len(ents))
	for i := range ents {
		r.shards[i] = ents[i].Data
	}
	r.entries, err = s.readLog(ctx, pool, h.Incarnation, h.SnapGen, h.Gen)
	return r, err
}

// build decodes what readState read into the state at r.head.Gen.
func (r *stored) build(pool string) (*statev1.PoolState, error) {
	hdr, _, err := blob.DecodeHeader(r.head.SnapHeader)
	if err != nil {
		return nil, fmt.Errorf("pool %q: snapshot header: %w", pool, err)
	}
	if hdr.Gen != r.head.SnapGen {
		return nil, fmt.Errorf("pool %q: %w: snapshot header says generation %d, head %d", pool, nodestore.ErrCorrupt, hdr.Gen, r.head.SnapGen)
	}
	st, err := blob.Build(&hdr, r.head.SnapHeader, r.shards, r.entries)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", pool, err)
	}
	return st, nil
}

// Load implements nodestore.Store.
func (s *Store) Load(ctx context.Context, pool string) (*statev1.PoolState, int64, error) {
	if err := s.gate.Begin(ctx); err != nil {
		return nil, 0, err
	}
	defer s.gate.End()
	r, err := s.readState(ctx, pool)
	if err != nil {
		return nil, 0, s.errorf("loading pool %q", pool, err)
	}
	st, err := r.build(pool)
	if err != nil {
		return nil, 0, s.errorf("loading pool %q", pool, err)
	}
	return st, r.head.Gen, nil
}

// ReadLog implements nodestore.Store. Asking for the entries after a
// generation the pool has not reached (after a DeletePool and CreatePool,
// say) or below 1 also gives ErrLogTruncated: the caller reloads.
func (s *Store) ReadLog(ctx context.Context, pool string, after int64) ([]*statev1.PoolDelta, int64, error) {
	if err := s.gate.Begin(ctx); err != nil {
		return nil, 0, err
	}
	defer s.gate.End()
	h, err := s.readHead(ctx, pool)
	if err != nil {
		return nil, 0, s.errorf("reading the log of pool %q", pool, err)
	}
	if after > h.Gen || after < h.LogFrom-1 {
		return nil, 0, fmt.Errorf("%w: pool %q keeps generations %d..%d, asked for those after %d", nodestore.ErrLogTruncated, pool, h.LogFrom, h.Gen, after)
	}
	entries, err := s.readLog(ctx, pool, h.Incarnation, after, h.Gen)
	if errors.Is(err, errMissingFirst) {
		return nil, 0, fmt.Errorf("%w: pool %q: the entries after %d were collected meanwhile", nodestore.ErrLogTruncated, pool, after)
	}
	if err != nil {
		return nil, 0, s.errorf("reading the log of pool %q", pool, err)
	}
	ds, err := blob.DecodeEntries(entries)
	if err != nil {
		return nil, 0, s.errorf("reading the log of pool %q", pool, err)
	}
	return ds, h.Gen, nil
}

// Commit implements nodestore.Store: one transaction reads the head,
// compares its generation, writes the entry's parts and the head. If an
// attempt failed in a way that leaves its outcome unknown (its answer was
// lost) and a later one finds the generation advanced, the commit
// succeeded if the log's entry expect+1 is this one, byte for byte, even
// when other commits followed it: the caller gets generation expect+1 and
// catches up with the rest on its next commit. Only an entry collected
// meanwhile (GCLag after a snapshot covering it, far longer than the
// retries) leaves a landed commit reported as ErrConflict.
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
	// The keys' incarnation is not known before the head is read; the
	// estimate uses the longest.
	est := make([]*gds.Key, len(parts))
	for i := range est {
		est[i] = logKey(incKey(pool, 1<<62), expect+1, i)
	}
	if _, err := commitSize(fmt.Sprintf("the log entry of generation %d of pool %q (%d bytes in %d parts)", expect+1, pool, n, len(parts)), est, parts, 1); err != nil {
		return nodestore.CommitStats{}, err
	}
	var before, after headEnt
	var tried, done bool
	err = s.retry(ctx, func(ctx context.Context) error {
		mu := s.headMu(pool)
		mu.Lock()
		defer mu.Unlock()
		err := s.transactOnce(ctx, func(tx *gds.Transaction) error {
			h, err := s.getHead(ctx, tx, pool)
			if err != nil {
				return err
			}
			before, done = h, false
			ik := incKey(pool, h.Incarnation)
			if h.Gen != expect {
				// An earlier attempt may have landed, and other commits
				// may have followed it: the entry of expect+1 is this one
				// if it holds these very bytes (its header has the time
				// this call encoded it).
				if tried && h.Gen > expect && h.LogFrom <= expect+1 {
					var e blobEnt
					if err := tx.Get(logKey(ik, expect+1, 0), &e); err == nil && string(e.Data) == string(parts[0]) {
						after, done = h, true
						return nil
					} else if err != nil && !errors.Is(err, gds.ErrNoSuchEntity) {
						return err
					}
				}
				return fmt.Errorf("%w: pool %q is at generation %d, not %d", nodestore.ErrConflict, pool, h.Gen, expect)
			}
			keys := make([]*gds.Key, len(parts))
			ents := make([]blobEnt, len(parts))
			for i, p := range parts {
				keys[i], ents[i].Data = logKey(ik, expect+1, i), p
			}
			if _, err := tx.PutMulti(keys, ents); err != nil {
				return err
			}
			after = h
			after.Gen++
			after.LogBytes += int64(n)
			_, err = tx.Put(poolKey(pool), &after)
			return err
		})
		tried = tried || transient(err)
		return err
	})
	if err != nil {
		return nodestore.CommitStats{}, s.errorf("committing to pool %q", pool, err)
	}
	s.stats.Commits.Add(1)
	s.stats.LogBytes.Add(int64(n))
	if done {
		s.opts.Logger.Info("nodestore/datastore: a commit whose outcome was unknown had succeeded", slog.String("pool", pool), slog.Int64("generation", expect+1), slog.Int64("head", after.Gen))
		return nodestore.CommitStats{Generation: expect + 1, LogBytes: n}, nil
	}
	if s.policy.Crossed(after.Gen-after.SnapGen, before.LogBytes, after.LogBytes) {
		s.bg.MarkDue(pool)
	}
	return nodestore.CommitStats{Generation: after.Gen, LogBytes: n}, nil
}

// headMu is the lock of s.heads that pool's head-writing transactions take.
func (s *Store) headMu(pool string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(pool))
	return &s.heads[h.Sum32()%uint32(len(s.heads))]
}

// CheckWrite implements nodestore.WriteChecker: it writes a small entity of
// kind QSWriteCheck, outside any pool, and deletes it again. Pools are
// untouched.
func (s *Store) CheckWrite(ctx context.Context) error {
	if err := s.gate.Begin(ctx); err != nil {
		return err
	}
	defer s.gate.End()
	k := gds.NameKey(KindWriteCheck, fmt.Sprintf("%016x", uint64(randomID())), nil)
	err := s.retry(ctx, func(ctx context.Context) error {
		_, err := s.client.Put(ctx, k, &blobEnt{Data: []byte(s.opts.CodeVersion)})
		return err
	})
	if err == nil {
		err = s.retry(ctx, func(ctx context.Context) error { return s.client.Delete(ctx, k) })
	}
	if err != nil {
		return fmt.Errorf("datastore %s: write check: %w", s.where, err)
	}
	return nil
}

// Stats implements nodestore.StatsReporter. The state a pool is created
// with is not counted as a snapshot.
func (s *Store) Stats() nodestore.Stats { return s.stats.Stats() }
