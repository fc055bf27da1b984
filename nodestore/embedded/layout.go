package embedded

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/internal/blob"
)

// The file holds two top-level buckets:
//
//	meta                      "format" → the layout version; its sequence numbers
//	                          pool incarnations and snapshots; "writecheck" exists
//	                          only inside CheckWrite's transaction
//	pools/<pool id>/          one nested bucket per pool, keyed by the id's bytes
//	    head                  the head record (see head)
//	    snaps/<snapshot id>   one snapshot record per snapshot not yet collected
//	    shards/<snapshot id><shard index>   the snapshot's payload, split
//	    log/<generation><part index>        the log entries; part 0 starts
//	                          with the entry's blob header
//
// Integers in keys are big-endian so that cursors visit them in order.
// Nesting the pool buckets under "pools" means no pool id can collide with
// the store's own keys.
var (
	bucketMeta    = []byte("meta")
	bucketPools   = []byte("pools")
	keyFormat     = []byte("format")
	keyWriteCheck = []byte("writecheck")
	keyHead       = []byte("head")
	bucketSnaps   = []byte("snaps")
	bucketShards  = []byte("shards")
	bucketLog     = []byte("log")
)

// layoutVersion is the version of the bucket layout, in meta/format.
const layoutVersion = 1

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// logKey is the key of part i of the log entry of generation gen. Keys are
// freshly allocated: bbolt keeps them until the transaction ends.
func logKey(gen int64, part int) []byte {
	return binary.BigEndian.AppendUint32(u64(uint64(gen)), uint32(part))
}

func parseLogKey(k []byte) (gen int64, part int, ok bool) {
	if len(k) != 12 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(k)), int(binary.BigEndian.Uint32(k[8:])), true
}

func shardKey(snap uint64, i int) []byte {
	return binary.BigEndian.AppendUint32(u64(snap), uint32(i))
}

// head is a pool's head record: what a commit reads and rewrites. It stays
// small so that a commit's cost does not depend on the state.
type head struct {
	gen         int64
	snapID      uint64 // key of the current snapshot in snaps
	snapGen     int64  // the generation the current snapshot holds
	shards      uint32 // its number of shards
	created     int64  // unix nanos, from Options.Now
	incarnation uint64 // distinguishes a pool from an earlier one of the same id
	logBytes    int64  // bytes of the log entries after snapGen
}

const headVersion = 1
const headLen = 1 + 8 + 8 + 8 + 4 + 8 + 8 + 8

func (h *head) encode() []byte {
	b := make([]byte, 0, headLen)
	b = append(b, headVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(h.gen))
	b = binary.BigEndian.AppendUint64(b, h.snapID)
	b = binary.BigEndian.AppendUint64(b, uint64(h.snapGen))
	b = binary.BigEndian.AppendUint32(b, h.shards)
	b = binary.BigEndian.AppendUint64(b, uint64(h.created))
	b = binary.BigEndian.AppendUint64(b, h.incarnation)
	b = binary.BigEndian.AppendUint64(b, uint64(h.logBytes))
	return b
}

func decodeHead(b []byte) (head, error) {
	if len(b) != headLen || b[0] != headVersion {
		return head{}, fmt.Errorf("%w: head record of %d bytes, version %d", nodestore.ErrCorrupt, len(b), firstByte(b))
	}
	be := binary.BigEndian
	return head{
		gen:         int64(be.Uint64(b[1:])),
		snapID:      be.Uint64(b[9:]),
		snapGen:     int64(be.Uint64(b[17:])),
		shards:      be.Uint32(b[25:]),
		created:     int64(be.Uint64(b[29:])),
		incarnation: be.Uint64(b[37:]),
		logBytes:    int64(be.Uint64(b[45:])),
	}, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// Snapshot record states.
const (
	snapPending   = 1 // shards being written; not referenced by the head
	snapInstalled = 2 // the head's current snapshot
	snapRetired   = 3 // replaced by a newer snapshot
)

// snapRec is a snapshot's record in snaps: its lifecycle, which decides when
// it and the log entries it covers are collected, then its blob header.
type snapRec struct {
	state     byte
	installed int64 // unix nanos
	retired   int64 // unix nanos
	hdr       []byte
	blob      blob.Header
}

func (r *snapRec) encode() []byte {
	b := make([]byte, 0, 17+len(r.hdr))
	b = append(b, r.state)
	b = binary.BigEndian.AppendUint64(b, uint64(r.installed))
	b = binary.BigEndian.AppendUint64(b, uint64(r.retired))
	return append(b, r.hdr...)
}

func decodeSnapRec(b []byte) (snapRec, error) {
	if len(b) < 17 || b[0] < snapPending || b[0] > snapRetired {
		return snapRec{}, fmt.Errorf("%w: snapshot record of %d bytes, state %d", nodestore.ErrCorrupt, len(b), firstByte(b))
	}
	r := snapRec{
		state:     b[0],
		installed: int64(binary.BigEndian.Uint64(b[1:])),
		retired:   int64(binary.BigEndian.Uint64(b[9:])),
	}
	var err error
	var n int
	if r.blob, n, err = blob.DecodeHeader(b[17:]); err != nil {
		return snapRec{}, err
	}
	r.hdr = bytes.Clone(b[17 : 17+n])
	return r, nil
}
