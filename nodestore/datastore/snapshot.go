package datastore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	gds "cloud.google.com/go/datastore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/upkeep"
)

// SnapshotNow snapshots the pool now, unless nothing was committed since its
// last snapshot. It returns when the snapshot is installed.
func (s *Store) SnapshotNow(ctx context.Context, pool string) error {
	_, err := s.snapshot(ctx, pool, true)
	return err
}

// CollectNow deletes, in every pool, what the clock and Options.GCLag allow:
// log entries covered by a snapshot installed at least GCLag ago, snapshots
// replaced at least GCLag ago, and snapshots left pending (their writer
// stopped) for GCLag. It also finishes deletions that stopped half-way.
func (s *Store) CollectNow(ctx context.Context) error {
	return upkeep.CollectAll(ctx, s.listAllPools, s.collectPool)
}

// errGone: the pool was deleted, or deleted and created again, while a
// snapshot was in progress.
var errGone = fmt.Errorf("%w: pool deleted meanwhile", nodestore.ErrNotFound)

// snapshot takes a snapshot of the pool if force and anything was committed
// since the last one, or if the pool is due. It reports whether it
// installed one. Several replicas may snapshot a pool at once: the first to
// install wins, the others' shards stay pending and are collected.
func (s *Store) snapshot(ctx context.Context, pool string, force bool) (bool, error) {
	if err := s.gate.Begin(ctx); err != nil {
		return false, err
	}
	gen, n, err := s.snapshotLocked(ctx, pool, force)
	s.gate.End()
	if err != nil || n < 0 {
		return false, err
	}
	s.stats.Snapshotted(pool, gen, n, s.opts.OnSnapshot)
	return true, nil
}

func (s *Store) snapshotLocked(ctx context.Context, pool string, force bool) (gen int64, n int, err error) {
	// 1. Read the current snapshot and the log after it, and rebuild.
	r, err := s.readState(ctx, pool)
	if err != nil {
		return 0, -1, err
	}
	h := r.head
	if h.Gen == h.SnapGen || !force && !s.policy.Due(h.Gen-h.SnapGen, h.LogBytes) {
		return 0, -1, nil
	}
	st, err := r.build(pool)
	if err != nil {
		return 0, -1, err
	}
	bl, err := s.newBlob(st, h.Gen)
	if err != nil {
		return 0, -1, err
	}
	hdr, shards := bl.SnapshotShards(s.opts.ShardBytes)
	sizes := map[int64]int64{} // generation → bytes of its entry
	for _, e := range r.entries {
		sizes[e.Gen] = int64(e.Size())
	}

	// 2. Record the snapshot as pending, then write its shards.
	ik := incKey(pool, h.Incarnation)
	id := randomID()
	rec := snapEnt{State: snapPending, Gen: h.Gen, Shards: int64(len(shards)), Started: s.opts.Now().UnixNano(), Header: hdr}
	err = s.retry(ctx, func(ctx context.Context) error {
		_, err := s.client.Put(ctx, snapKey(ik, id), &rec)
		return err
	})
	if err != nil {
		return 0, -1, s.errorf("snapshotting pool %q", pool, err)
	}
	keys := shardKeys(ik, id, len(shards))
	if err := s.putBlobs(ctx, keys, shards); err != nil {
		return 0, -1, s.errorf("snapshotting pool %q", pool, err)
	}

	// 3. Install: point the head at it; the generation stays. This
	// process's commits to the pool wait meanwhile (headMu).
	err = s.retry(ctx, func(ctx context.Context) error {
		mu := s.headMu(pool)
		mu.Lock()
		defer mu.Unlock()
		return s.transactOnce(ctx, func(tx *gds.Transaction) error {
			cur, err := s.getHead(ctx, tx, pool)
			if err != nil {
				return err
			}
			if cur.Incarnation != h.Incarnation {
				return errGone
			}
			if cur.SnapID == id {
				return nil // an earlier attempt installed it; its answer was lost
			}
			if cur.SnapGen >= h.Gen {
				return fmt.Errorf("datastore: pool %q already has a snapshot of generation %d", pool, cur.SnapGen)
			}
			now := s.opts.Now().UnixNano()
			recs := make([]snapEnt, 2)
			rkeys := []*gds.Key{snapKey(ik, cur.SnapID), snapKey(ik, id)}
			if err := tx.GetMulti(rkeys, recs); err != nil {
				return fmt.Errorf("snapshot records: %w", err)
			}
			recs[0].State, recs[0].Retired = snapRetired, now
			recs[1].State, recs[1].Installed = snapInstalled, now
			if _, err := tx.PutMulti(rkeys, recs); err != nil {
				return err
			}
			for g := cur.SnapGen + 1; g <= h.Gen; g++ {
				cur.LogBytes -= sizes[g]
			}
			cur.SnapID, cur.SnapGen, cur.Shards, cur.SnapHeader = id, h.Gen, int64(len(shards)), hdr
			_, err = tx.Put(poolKey(pool), &cur)
			return err
		})
	})
	if err != nil {
		if errors.Is(err, nodestore.ErrNotFound) {
			// Nothing will refer to them: delete them now (best effort).
			_ = s.deleteKeys(context.WithoutCancel(ctx), append(keys, snapKey(ik, id)))
		}
		return 0, -1, s.errorf("installing a snapshot of pool %q", pool, err)
	}
	return h.Gen, len(bl.Payload), nil
}

// collectPool deletes what the lag allows in one pool (see CollectNow). It
// decides from the head and the snapshot records alone and deletes by key.
func (s *Store) collectPool(ctx context.Context, pool string) error {
	if err := s.gate.Begin(ctx); err != nil {
		return err
	}
	defer s.gate.End()
	h, err := s.readHead(ctx, pool)
	switch {
	case h.State == poolDeleting:
		if err := s.finishDelete(ctx, pool, h.Incarnation); err != nil {
			return s.errorf("collecting pool %q", pool, err)
		}
		return s.sweep(ctx, pool, 0)
	case h.State == 0 && errors.Is(err, nodestore.ErrNotFound):
		// No head: at most what failed creations or snapshots racing a
		// deletion left.
		return s.sweep(ctx, pool, 0)
	case err != nil:
		return err
	}
	ik := incKey(pool, h.Incarnation)
	var recs []snapEnt
	var rkeys []*gds.Key
	err = s.retry(ctx, func(ctx context.Context) error {
		recs = nil
		var err error
		rkeys, err = s.client.GetAll(ctx, gds.NewQuery(KindSnapshot).Ancestor(ik), &recs)
		return err
	})
	if err != nil {
		return s.errorf("collecting pool %q", pool, err)
	}
	cutoff := s.opts.Now().Add(-s.opts.GCLag).UnixNano()
	var logCut int64 // delete log entries up to this generation
	var dead []int   // indexes of the snapshot records to delete
	for i, rec := range recs {
		if rkeys[i].Equal(snapKey(ik, h.SnapID)) {
			continue
		}
		switch {
		case rec.State == snapPending && rec.Started <= cutoff, // its writer gave up
			rec.State == snapRetired && rec.Retired <= cutoff:
			dead = append(dead, i)
		}
	}
	for _, rec := range recs {
		if rec.State != snapPending && rec.Installed <= cutoff {
			logCut = max(logCut, rec.Gen)
		}
	}
	logCut = min(logCut, h.SnapGen)

	if logCut >= h.LogFrom {
		// Readers learn from the head that the entries are going before
		// they go.
		err := s.transact(ctx, func(tx *gds.Transaction) error {
			cur, err := s.getHead(ctx, tx, pool)
			if err != nil {
				return err
			}
			if cur.Incarnation != h.Incarnation {
				return errGone
			}
			if cur.LogFrom > logCut {
				return nil
			}
			cur.LogFrom = logCut + 1
			_, err = tx.Put(poolKey(pool), &cur)
			return err
		})
		if err != nil {
			return s.errorf("collecting pool %q", pool, err)
		}
		var keys []*gds.Key
		err = s.retry(ctx, func(ctx context.Context) error {
			var err error
			keys, err = s.client.GetAll(ctx, gds.NewQuery(KindLog).Ancestor(ik).
				FilterField("__key__", "<", logKey(ik, logCut+1, 0)).KeysOnly(), nil)
			return err
		})
		if err != nil {
			return s.errorf("collecting pool %q", pool, err)
		}
		if err := s.deleteKeys(ctx, keys); err != nil {
			return s.errorf("collecting pool %q", pool, err)
		}
		entries := 0
		for _, k := range keys {
			if _, part, err := parseLogKey(k); err == nil && part == 0 {
				entries++
			}
		}
		s.stats.CollectedLogs.Add(int64(entries))
	}
	for _, i := range dead {
		keys := shardKeys(ik, parseHexID(rkeys[i]), int(recs[i].Shards))
		if err := s.deleteKeys(ctx, slices.Concat(keys, []*gds.Key{rkeys[i]})); err != nil {
			return s.errorf("collecting pool %q", pool, err)
		}
		s.stats.CollectedShards.Add(recs[i].Shards)
	}
	return s.sweep(ctx, pool, h.Incarnation)
}

// sweep deletes every incarnation of the pool but keep (0: every one)
// that holds shards and no snapshot record, or whose records all changed
// state at least GCLag ago. No head names such an incarnation and none
// will: CreatePool writes an incarnation's first record before its shards
// and points the head at it within its retries, a snapshot only installs
// into the head's incarnation, and a pool deleted and created again gets a
// new one. What it finds are the leftovers of a CreatePool that failed and
// could not clean up, of a snapshot that raced DeletePool (its shards may
// land after the deletion removed its record), or of a deletion that
// stopped after deleting the head.
func (s *Store) sweep(ctx context.Context, pool string, keep int64) error {
	// The shards first: a shard read here has its record written before
	// it, which the second query then reads, unless it was deleted.
	var shards, rkeys []*gds.Key
	var recs []snapEnt
	err := s.retry(ctx, func(ctx context.Context) error {
		var err error
		shards, err = s.client.GetAll(ctx, gds.NewQuery(KindShard).Ancestor(poolKey(pool)).KeysOnly(), nil)
		return err
	})
	if err == nil {
		err = s.retry(ctx, func(ctx context.Context) error {
			recs = nil
			var err error
			rkeys, err = s.client.GetAll(ctx, gds.NewQuery(KindSnapshot).Ancestor(poolKey(pool)), &recs)
			return err
		})
	}
	if err != nil {
		return s.errorf("collecting the leftovers of pool %q", pool, err)
	}
	cutoff := s.opts.Now().Add(-s.opts.GCLag).UnixNano()
	var incs []int64
	young := map[int64]bool{}
	for i, k := range slices.Concat(rkeys, shards) {
		inc := parseHexID(k.Parent)
		if inc == keep {
			continue
		}
		if !slices.Contains(incs, inc) {
			incs = append(incs, inc)
		}
		if i < len(recs) && max(recs[i].Started, recs[i].Installed, recs[i].Retired) > cutoff {
			young[inc] = true
		}
	}
	for _, inc := range incs {
		if young[inc] {
			continue
		}
		n, err := s.deleteIncarnation(ctx, pool, inc)
		if err != nil {
			return s.errorf("collecting the leftovers of pool %q", pool, err)
		}
		s.stats.CollectedShards.Add(int64(n))
	}
	return nil
}

// parseHexID returns the id a snapshot's or an incarnation's key names.
func parseHexID(k *gds.Key) int64 {
	var id uint64
	_, _ = fmt.Sscanf(k.Name, "%016x", &id)
	return int64(id)
}
