package embedded

import (
	"context"
	"fmt"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/upkeep"
	bolt "go.etcd.io/bbolt"
)

// collectBatch bounds the keys one collection transaction deletes, so that
// collecting a long log never holds the writer lock for long.
const collectBatch = 1000

// SnapshotNow snapshots the pool now, unless nothing was committed since its
// last snapshot. It returns when the snapshot is installed.
func (s *Store) SnapshotNow(ctx context.Context, pool string) error {
	_, err := s.snapshot(ctx, pool, true)
	return err
}

// CollectNow deletes, in every pool, what the clock and Options.GCLag allow:
// log entries covered by a snapshot installed at least GCLag ago, snapshots
// replaced at least GCLag ago, and abandoned partial snapshots.
func (s *Store) CollectNow(ctx context.Context) error {
	return upkeep.CollectAll(ctx, s.ListPools, s.collectPool)
}

// errGone: the pool was deleted, or deleted and created again, while a
// snapshot or collection was in progress.
var errGone = fmt.Errorf("%w: pool deleted meanwhile", nodestore.ErrNotFound)

// poolFor returns the pool's bucket if it still is the incarnation inc.
func poolFor(tx *bolt.Tx, pool string, inc uint64) (*bolt.Bucket, head, error) {
	pb, h, err := poolHead(tx, pool)
	if err != nil {
		return nil, head{}, err
	}
	if h.incarnation != inc {
		return nil, head{}, errGone
	}
	return pb, h, nil
}

// snapshot takes a snapshot of the pool if force and anything was committed
// since the last one, or if the pool is due. It reports whether it installed
// one.
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

// snapshotLocked does snapshot's work under snapMu and returns the
// generation and size of the snapshot installed, or n < 0 if none was.
func (s *Store) snapshotLocked(ctx context.Context, pool string, force bool) (gen int64, n int, err error) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()

	// 1. Copy the current snapshot and the log after it out of the file.
	r, err := s.readState(pool)
	if err != nil {
		return 0, -1, err
	}
	h := r.head
	if h.gen == h.snapGen || !force && !s.policy.Due(h.gen-h.snapGen, h.logBytes) {
		return 0, -1, nil
	}

	// 2. Rebuild the state at h.gen and encode it, outside any transaction.
	if err := ctx.Err(); err != nil {
		return 0, -1, err
	}
	st, err := r.build(pool)
	if err != nil {
		return 0, -1, err
	}
	if err := ctx.Err(); err != nil {
		return 0, -1, err
	}
	bl, err := s.newBlob(st, h.gen)
	if err != nil {
		return 0, -1, err
	}
	hdr, shards := bl.SnapshotShards(s.opts.ShardBytes)

	// 3. Write the shards, one transaction each, so that commits interleave.
	// The record is written first as pending: if this is abandoned, the next
	// collection finds and deletes it.
	var id uint64
	for i, sh := range shards {
		if err := ctx.Err(); err != nil {
			return 0, -1, err
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			pb, _, err := poolFor(tx, pool, h.incarnation)
			if err != nil {
				return err
			}
			if i == 0 {
				if id, err = tx.Bucket(bucketMeta).NextSequence(); err != nil {
					return err
				}
				rec := snapRec{state: snapPending, hdr: hdr}
				if err := pb.Bucket(bucketSnaps).Put(u64(id), rec.encode()); err != nil {
					return err
				}
			}
			return pb.Bucket(bucketShards).Put(shardKey(id, i), sh)
		})
		if err != nil {
			return 0, -1, err
		}
	}
	if s.testHookBeforeInstall != nil {
		s.testHookBeforeInstall()
	}
	if err := ctx.Err(); err != nil {
		return 0, -1, err
	}

	// 4. Install: move the head's snapshot pointer; the generation stays.
	err = s.db.Update(func(tx *bolt.Tx) error {
		pb, cur, err := poolFor(tx, pool, h.incarnation)
		if err != nil {
			return err
		}
		if cur.snapGen >= h.gen {
			return fmt.Errorf("embedded: pool %q already has a snapshot of generation %d", pool, cur.snapGen)
		}
		now := s.opts.Now().UnixNano()
		snaps := pb.Bucket(bucketSnaps)
		if err := setSnapState(snaps, cur.snapID, snapRetired, now); err != nil {
			return err
		}
		if err := setSnapState(snaps, id, snapInstalled, now); err != nil {
			return err
		}
		cur.snapID, cur.snapGen, cur.shards = id, h.gen, uint32(len(shards))
		cur.logBytes = 0
		c := pb.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(logKey(h.gen+1, 0)); k != nil; k, v = c.Next() {
			cur.logBytes += int64(len(v))
		}
		return pb.Put(keyHead, cur.encode())
	})
	if err != nil {
		return 0, -1, err
	}
	return h.gen, len(bl.Payload), nil
}

func setSnapState(snaps *bolt.Bucket, id uint64, state byte, now int64) error {
	v := snaps.Get(u64(id))
	if v == nil {
		return fmt.Errorf("%w: snapshot record %d missing", nodestore.ErrCorrupt, id)
	}
	rec, err := decodeSnapRec(v)
	if err != nil {
		return err
	}
	rec.state = state
	switch state {
	case snapInstalled:
		rec.installed = now
	case snapRetired:
		rec.retired = now
	}
	return snaps.Put(u64(id), rec.encode())
}

// collectPool deletes what the lag allows in one pool (see CollectNow).
func (s *Store) collectPool(ctx context.Context, pool string) error {
	if err := s.gate.Begin(ctx); err != nil {
		return err
	}
	defer s.gate.End()
	s.snapMu.Lock()
	defer s.snapMu.Unlock()

	cutoff := s.opts.Now().Add(-s.opts.GCLag).UnixNano()
	var h head
	var logCut int64            // delete log entries up to this generation
	dead := map[uint64]uint32{} // snapshots to delete → their shard count
	var logKeys [][]byte        // log keys to delete
	err := s.db.View(func(tx *bolt.Tx) error {
		pb, ph, err := poolHead(tx, pool)
		if err != nil {
			return err
		}
		h = ph
		err = pb.Bucket(bucketSnaps).ForEach(func(k, v []byte) error {
			rec, err := decodeSnapRec(v)
			if err != nil {
				return err
			}
			id := decodeU64(k)
			switch {
			case rec.state == snapPending: // abandoned: snapMu is held
				dead[id] = rec.blob.Parts
			case rec.state == snapRetired && rec.retired <= cutoff:
				dead[id] = rec.blob.Parts
			}
			if rec.state != snapPending && rec.installed <= cutoff {
				logCut = max(logCut, rec.blob.Gen)
			}
			return nil
		})
		if err != nil {
			return err
		}
		delete(dead, h.snapID)
		logCut = min(logCut, h.snapGen)
		c := pb.Bucket(bucketLog).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if gen, _, _ := parseLogKey(k); gen > logCut {
				break
			}
			logKeys = append(logKeys, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}

	// Oldest log entries first, so that the log stays contiguous.
	for len(logKeys) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := logKeys[:min(collectBatch, len(logKeys))]
		logKeys = logKeys[len(batch):]
		var entries int64
		err := s.db.Update(func(tx *bolt.Tx) error {
			pb, _, err := poolFor(tx, pool, h.incarnation)
			if err != nil {
				return err
			}
			lb := pb.Bucket(bucketLog)
			for _, k := range batch {
				if _, part, _ := parseLogKey(k); part == 0 {
					entries++
				}
				if err := lb.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.stats.CollectedLogs.Add(entries)
	}
	for id, parts := range dead {
		for i := 0; i < int(parts) || i == 0; i += collectBatch {
			if err := ctx.Err(); err != nil {
				return err
			}
			last := i+collectBatch >= int(parts)
			err := s.db.Update(func(tx *bolt.Tx) error {
				pb, _, err := poolFor(tx, pool, h.incarnation)
				if err != nil {
					return err
				}
				sb := pb.Bucket(bucketShards)
				for j := i; j < min(int(parts), i+collectBatch); j++ {
					if err := sb.Delete(shardKey(id, j)); err != nil {
						return err
					}
				}
				if last {
					return pb.Bucket(bucketSnaps).Delete(u64(id))
				}
				return nil
			})
			if err != nil {
				return err
			}
			s.stats.CollectedShards.Add(int64(min(int(parts), i+collectBatch) - i))
		}
	}
	return nil
}

func decodeU64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}
