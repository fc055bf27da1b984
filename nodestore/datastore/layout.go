package datastore

import (
	"encoding/base64"
	"fmt"
	"strings"

	gds "cloud.google.com/go/datastore"
)

// The entities, all in the database's default namespace (docs/operations.md,
// "Cloud Datastore store", describes them for operators):
//
//	QSPool/<"p" + base64url(pool id)>      the head (headEnt)
//	  QSIncarnation/<incarnation, hex>     a key only, never an entity: the
//	                                       parent of everything below, so
//	                                       that a pool created again under
//	                                       the same id never sees the
//	                                       entities of the earlier one
//	    QSSnapshot/<snapshot id, hex>      a snapshot's lifecycle (snapEnt)
//	    QSShard/<snapshot id>-<index>      its payload, split (blobEnt)
//	    QSLog/<generation>-<part>          the log (blobEnt); part 0 starts
//	                                       with the entry's blob header
//	QSWriteCheck/<random>                  exists only during CheckWrite
//
// Numbers in key names are zero-padded decimals, so that key order is
// generation order. No property is indexed: the store looks entities up by
// key and queries only by kind, ancestor and key range, which the built-in
// indexes serve.
const (
	KindPool        = "QSPool"
	KindIncarnation = "QSIncarnation"
	KindSnapshot    = "QSSnapshot"
	KindShard       = "QSShard"
	KindLog         = "QSLog"
	KindWriteCheck  = "QSWriteCheck"
)

// Limits of Cloud Datastore (Firestore in Datastore mode) that the store
// enforces itself: the emulator does not.
const (
	// MaxEntityBytes is the largest entity.
	MaxEntityBytes = 1 << 20
	// MaxCommitMutations is the most entities one commit writes or deletes.
	MaxCommitMutations = 500
	// MaxCommitBytes is the largest commit request.
	MaxCommitBytes = 10 << 20
	// maxWriteBytes bounds the shards written by one request outside a
	// commit's transaction (snapshots, CreatePool): the emulator's gRPC
	// server refuses requests over 4 MiB, Cloud Datastore's over 10 MiB.
	maxWriteBytes = 4<<20 - 256<<10
	// maxReadBytes is the largest answer the client accepts: a read of
	// many shards or log entries may exceed gRPC's default of 4 MiB.
	maxReadBytes = 256 << 20
	// entityOverhead is what the store adds to an entity's key and values
	// when it estimates the size of a commit: property names, types, the
	// project and database ids.
	entityOverhead = 256
)

// Head states.
const (
	poolLive     = 1
	poolDeleting = 2 // DeletePool is removing its entities; the pool is gone
)

// headEnt is a pool's head: what a commit reads and rewrites. It stays small
// so that a commit's cost does not depend on the state.
type headEnt struct {
	Pool        string `datastore:"pool,noindex"`
	State       int64  `datastore:"state,noindex"`
	Gen         int64  `datastore:"gen,noindex"`
	Incarnation int64  `datastore:"incarnation,noindex"`
	SnapID      int64  `datastore:"snapshot,noindex"`
	SnapGen     int64  `datastore:"snapshotGen,noindex"`
	Shards      int64  `datastore:"shards,noindex"`
	SnapHeader  []byte `datastore:"snapshotHeader,noindex"`
	LogFrom     int64  `datastore:"logFrom,noindex"`  // the oldest generation the log keeps
	LogBytes    int64  `datastore:"logBytes,noindex"` // bytes of the entries after SnapGen
	Created     int64  `datastore:"created,noindex"`  // unix nanos
	CodeVersion string `datastore:"codeVersion,noindex"`
}

// Snapshot states.
const (
	snapPending   = 1 // shards being written; not referenced by the head
	snapInstalled = 2 // the head's current snapshot
	snapRetired   = 3 // replaced by a newer snapshot
)

// snapEnt is a snapshot's lifecycle, which decides when it and the log
// entries it covers are collected.
type snapEnt struct {
	State     int64  `datastore:"state,noindex"`
	Gen       int64  `datastore:"gen,noindex"`
	Shards    int64  `datastore:"shards,noindex"`
	Started   int64  `datastore:"started,noindex"` // unix nanos, as are the next two
	Installed int64  `datastore:"installed,noindex"`
	Retired   int64  `datastore:"retired,noindex"`
	Header    []byte `datastore:"header,noindex"`
}

// blobEnt is a snapshot shard or a part of a log entry.
type blobEnt struct {
	Data []byte `datastore:"data,noindex"`
}

func poolKey(pool string) *gds.Key {
	return gds.NameKey(KindPool, "p"+base64.RawURLEncoding.EncodeToString([]byte(pool)), nil)
}

// poolOfKey returns the pool id a head's key names.
func poolOfKey(k *gds.Key) (string, bool) {
	if k.Kind != KindPool || !strings.HasPrefix(k.Name, "p") {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(k.Name[1:])
	if err != nil {
		return "", false
	}
	return string(b), true
}

func incKey(pool string, inc int64) *gds.Key {
	return gds.NameKey(KindIncarnation, fmt.Sprintf("%016x", uint64(inc)), poolKey(pool))
}

func snapKey(inc *gds.Key, id int64) *gds.Key {
	return gds.NameKey(KindSnapshot, fmt.Sprintf("%016x", uint64(id)), inc)
}

func shardKey(inc *gds.Key, id int64, i int) *gds.Key {
	return gds.NameKey(KindShard, fmt.Sprintf("%016x-%06d", uint64(id), i), inc)
}

func logKey(inc *gds.Key, gen int64, part int) *gds.Key {
	return gds.NameKey(KindLog, fmt.Sprintf("%019d-%04d", gen, part), inc)
}

// parseLogKey returns the generation and part a log key names.
func parseLogKey(k *gds.Key) (gen int64, part int, err error) {
	if _, err := fmt.Sscanf(k.Name, "%019d-%04d", &gen, &part); err != nil || k.Kind != KindLog {
		return 0, 0, fmt.Errorf("log key %v: %w", k, errBadKey)
	}
	return gen, part, nil
}

// keyBytes estimates the size of k in a request.
func keyBytes(k *gds.Key) int {
	n := 0
	for ; k != nil; k = k.Parent {
		n += len(k.Kind) + len(k.Name) + 16
	}
	return n
}

// commitSize checks that one commit writing values under keys (nil values
// for deletions) and mut mutations in all stays within Cloud Datastore's
// limits, and returns its estimated size.
func commitSize(what string, keys []*gds.Key, values [][]byte, extra int) (int, error) {
	muts := len(keys) + extra
	if muts > MaxCommitMutations {
		return 0, fmt.Errorf("%w: %s needs %d mutations in one commit, Cloud Datastore allows %d", ErrCommitTooLarge, what, muts, MaxCommitMutations)
	}
	n := extra * (entityOverhead + 2048)
	for i, k := range keys {
		n += keyBytes(k) + entityOverhead
		if i < len(values) {
			n += len(values[i])
		}
	}
	if n > MaxCommitBytes {
		return 0, fmt.Errorf("%w: %s needs a commit of about %d bytes, Cloud Datastore allows %d (10 MiB)", ErrCommitTooLarge, what, n, MaxCommitBytes)
	}
	return n, nil
}
