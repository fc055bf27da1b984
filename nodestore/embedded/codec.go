package embedded

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// compressionLevel trades snapshot time for size. Pool states are mostly
// repeated label strings and ids; level 1 already removes most of that and is
// several times faster than the default level.
const compressionLevel = flate.BestSpeed

// maxRawLength bounds the decompressed size a header may claim.
const maxRawLength = 1 << 34

var flateWriters = sync.Pool{New: func() any {
	w, err := flate.NewWriter(nil, compressionLevel)
	if err != nil {
		panic(err) // only for an invalid level
	}
	return w
}}

var flateReaders sync.Pool // of io.ReadCloser implementing flate.Resetter

func compress(raw []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(raw)/3 + 64)
	w := flateWriters.Get().(*flate.Writer)
	w.Reset(&buf)
	// Writes to a bytes.Buffer do not fail.
	_, _ = w.Write(raw)
	_ = w.Close()
	flateWriters.Put(w)
	return buf.Bytes()
}

func decompress(h *blobHeader, payload []byte) ([]byte, error) {
	switch h.codec {
	case codecNone:
		if uint64(len(payload)) != h.rawLength {
			return nil, fmt.Errorf("%w: %d payload bytes, header says %d", nodestore.ErrCorrupt, len(payload), h.rawLength)
		}
		return payload, nil
	case codecFlate:
	default:
		return nil, fmt.Errorf("%w: unknown codec %d", nodestore.ErrCorrupt, h.codec)
	}
	if h.rawLength > maxRawLength {
		return nil, fmt.Errorf("%w: header claims %d bytes", nodestore.ErrCorrupt, h.rawLength)
	}
	src := bytes.NewReader(payload)
	var r io.ReadCloser
	if v := flateReaders.Get(); v != nil {
		r = v.(io.ReadCloser)
		_ = r.(flate.Resetter).Reset(src, nil)
	} else {
		r = flate.NewReader(src)
	}
	defer flateReaders.Put(r)
	out := make([]byte, h.rawLength)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("%w: decompressing: %v", nodestore.ErrCorrupt, err)
	}
	var one [1]byte
	if n, err := r.Read(one[:]); n != 0 || !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: decompressed data longer than its header says", nodestore.ErrCorrupt)
	}
	return out, nil
}

var marshalOptions = proto.MarshalOptions{Deterministic: true}

// blob is a message encoded for storage, before it is split.
type blob struct {
	hdr     blobHeader
	payload []byte
}

func (s *Store) newBlob(m proto.Message, gen int64) (blob, error) {
	raw, err := marshalOptions.Marshal(m)
	if err != nil {
		return blob{}, fmt.Errorf("embedded: marshaling: %w", err)
	}
	payload := compress(raw)
	return blob{
		hdr: blobHeader{
			version:     blobVersion,
			codec:       codecFlate,
			gen:         gen,
			written:     s.opts.Now().UnixNano(),
			length:      uint64(len(payload)),
			rawLength:   uint64(len(raw)),
			codeVersion: s.opts.CodeVersion,
		},
		payload: payload,
	}, nil
}

// entryParts splits a log entry into values of at most shard bytes; part 0
// begins with the header.
func (b *blob) entryParts(shard int) [][]byte {
	first := min(shard-b.hdr.encodedLen(), len(b.payload))
	rest := b.payload[first:]
	b.hdr.parts = uint32(1 + (len(rest)+shard-1)/shard)
	hdr := b.hdr.encode(b.payload)
	parts := [][]byte{append(hdr, b.payload[:first]...)}
	for len(rest) > 0 {
		n := min(shard, len(rest))
		parts = append(parts, rest[:n])
		rest = rest[n:]
	}
	return parts
}

// snapshotShards splits a snapshot's payload into shards of at most shard
// bytes and returns them with the encoded header.
func (b *blob) snapshotShards(shard int) ([]byte, [][]byte) {
	var shards [][]byte
	for rest := b.payload; len(rest) > 0 || len(shards) == 0; {
		n := min(shard, len(rest))
		shards = append(shards, rest[:n])
		rest = rest[n:]
	}
	b.hdr.parts = uint32(len(shards))
	return b.hdr.encode(b.payload), shards
}

func size(parts [][]byte) int {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return n
}

// decodeEntry verifies and decodes the parts of the log entry of gen.
func decodeEntry(gen int64, parts [][]byte) (*statev1.PoolDelta, error) {
	h, n, err := decodeBlobHeader(parts[0])
	if err != nil {
		return nil, fmt.Errorf("log entry %d: %w", gen, err)
	}
	if int(h.parts) != len(parts) || h.gen != gen {
		return nil, fmt.Errorf("log entry %d: %w: header says generation %d in %d parts, found %d parts", gen, nodestore.ErrCorrupt, h.gen, h.parts, len(parts))
	}
	payload := make([]byte, 0, size(parts)-n)
	payload = append(payload, parts[0][n:]...)
	for _, p := range parts[1:] {
		payload = append(payload, p...)
	}
	d := &statev1.PoolDelta{}
	if err := decodeBlob(&h, parts[0][:n], payload, d); err != nil {
		return nil, fmt.Errorf("log entry %d: %w", gen, err)
	}
	return d, nil
}

// decodeSnapshot verifies and decodes a snapshot from its record and shards.
func decodeSnapshot(rec *snapRec, shards [][]byte) (*statev1.PoolState, error) {
	if int(rec.blob.parts) != len(shards) {
		return nil, fmt.Errorf("snapshot of generation %d: %w: header says %d shards, found %d", rec.blob.gen, nodestore.ErrCorrupt, rec.blob.parts, len(shards))
	}
	payload := bytes.Join(shards, nil)
	st := &statev1.PoolState{}
	if err := decodeBlob(&rec.blob, rec.hdr, payload, st); err != nil {
		return nil, fmt.Errorf("snapshot of generation %d: %w", rec.blob.gen, err)
	}
	return st, nil
}

func decodeBlob(h *blobHeader, hdr, payload []byte, m proto.Message) error {
	if err := h.verify(hdr, payload); err != nil {
		return err
	}
	raw, err := decompress(h, payload)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(raw, m); err != nil {
		return fmt.Errorf("%w: %v", nodestore.ErrCorrupt, err)
	}
	return nil
}
