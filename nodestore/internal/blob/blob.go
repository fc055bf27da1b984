// Package blob is the storage encoding the stores share for log entries and
// snapshots: a message marshaled deterministically, compressed, checksummed
// with CRC32C and split into parts of a bounded size, behind a header that
// records the generation, the sizes, the part count and the code version
// that wrote it.
package blob

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

// Version is the format version of headers.
const Version = 1

// Compression codecs of a payload.
const (
	CodecNone  = 0
	CodecFlate = 1
)

// MaxCodeVersion bounds the code version a header records, in bytes.
const MaxCodeVersion = 256

// FixedLen is the length of an encoded header without its code version.
const FixedLen = 1 + 1 + 4 + 8 + 8 + 8 + 8 + 4 + 2

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header describes a compressed, checksummed, possibly split payload: a log
// entry (the encoded header starts its part 0) or a snapshot (the store
// keeps the encoded header beside the shards).
type Header struct {
	Version     byte
	Codec       byte
	CRC         uint32 // CRC32C of the encoded header after this field, then the payload
	Gen         int64  // the log entry's or snapshot's generation
	Written     int64  // unix nanos
	Length      uint64 // payload bytes (compressed), over all parts
	RawLength   uint64 // marshaled message bytes
	Parts       uint32
	CodeVersion string
}

// EncodedLen is the length of the encoded header.
func (h *Header) EncodedLen() int { return FixedLen + len(h.CodeVersion) }

// Encode returns the header with its checksum computed over payload.
func (h *Header) Encode(payload []byte) []byte {
	b := make([]byte, 0, h.EncodedLen())
	b = append(b, h.Version, h.Codec, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Gen))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Written))
	b = binary.BigEndian.AppendUint64(b, h.Length)
	b = binary.BigEndian.AppendUint64(b, h.RawLength)
	b = binary.BigEndian.AppendUint32(b, h.Parts)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.CodeVersion)))
	b = append(b, h.CodeVersion...)
	h.CRC = crc32.Update(crc32.Checksum(b[6:], castagnoli), castagnoli, payload)
	binary.BigEndian.PutUint32(b[2:], h.CRC)
	return b
}

// DecodeHeader parses the header at the start of b and returns it and its
// encoded length. The checksum is verified later, with the payload.
func DecodeHeader(b []byte) (Header, int, error) {
	if len(b) < FixedLen {
		return Header{}, 0, fmt.Errorf("%w: blob header of %d bytes", nodestore.ErrCorrupt, len(b))
	}
	be := binary.BigEndian
	h := Header{
		Version:   b[0],
		Codec:     b[1],
		CRC:       be.Uint32(b[2:]),
		Gen:       int64(be.Uint64(b[6:])),
		Written:   int64(be.Uint64(b[14:])),
		Length:    be.Uint64(b[22:]),
		RawLength: be.Uint64(b[30:]),
		Parts:     be.Uint32(b[38:]),
	}
	if h.Version != Version {
		return Header{}, 0, fmt.Errorf("%w: blob format version %d, this code reads %d", nodestore.ErrCorrupt, h.Version, Version)
	}
	n := int(be.Uint16(b[42:]))
	if len(b) < FixedLen+n {
		return Header{}, 0, fmt.Errorf("%w: blob header truncated", nodestore.ErrCorrupt)
	}
	h.CodeVersion = string(b[FixedLen : FixedLen+n])
	return h, FixedLen + n, nil
}

// Verify checks the header's checksum against the encoded header hdr and
// the whole payload.
func (h *Header) Verify(hdr, payload []byte) error {
	if uint64(len(payload)) != h.Length {
		return fmt.Errorf("%w: payload of %d bytes, header says %d", nodestore.ErrCorrupt, len(payload), h.Length)
	}
	if got := crc32.Update(crc32.Checksum(hdr[6:], castagnoli), castagnoli, payload); got != h.CRC {
		return fmt.Errorf("%w: checksum %08x, header says %08x (written by %q)", nodestore.ErrCorrupt, got, h.CRC, h.CodeVersion)
	}
	return nil
}

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

func decompress(h *Header, payload []byte) ([]byte, error) {
	switch h.Codec {
	case CodecNone:
		if uint64(len(payload)) != h.RawLength {
			return nil, fmt.Errorf("%w: %d payload bytes, header says %d", nodestore.ErrCorrupt, len(payload), h.RawLength)
		}
		return payload, nil
	case CodecFlate:
	default:
		return nil, fmt.Errorf("%w: unknown codec %d", nodestore.ErrCorrupt, h.Codec)
	}
	if h.RawLength > maxRawLength {
		return nil, fmt.Errorf("%w: header claims %d bytes", nodestore.ErrCorrupt, h.RawLength)
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
	out := make([]byte, h.RawLength)
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

// Blob is a message encoded for storage, before it is split.
type Blob struct {
	Hdr     Header
	Payload []byte
}

// New marshals and compresses m as the blob of generation gen, written at
// the time written by the code of codeVersion.
func New(m proto.Message, gen int64, written time.Time, codeVersion string) (Blob, error) {
	raw, err := marshalOptions.Marshal(m)
	if err != nil {
		return Blob{}, fmt.Errorf("marshaling: %w", err)
	}
	payload := compress(raw)
	return Blob{
		Hdr: Header{
			Version:     Version,
			Codec:       CodecFlate,
			Gen:         gen,
			Written:     written.UnixNano(),
			Length:      uint64(len(payload)),
			RawLength:   uint64(len(raw)),
			CodeVersion: codeVersion,
		},
		Payload: payload,
	}, nil
}

// EntryParts splits a log entry into values of at most shard bytes; part 0
// begins with the header.
func (b *Blob) EntryParts(shard int) [][]byte {
	first := min(shard-b.Hdr.EncodedLen(), len(b.Payload))
	rest := b.Payload[first:]
	b.Hdr.Parts = uint32(1 + (len(rest)+shard-1)/shard)
	hdr := b.Hdr.Encode(b.Payload)
	parts := [][]byte{append(hdr, b.Payload[:first]...)}
	for len(rest) > 0 {
		n := min(shard, len(rest))
		parts = append(parts, rest[:n])
		rest = rest[n:]
	}
	return parts
}

// SnapshotShards splits a snapshot's payload into shards of at most shard
// bytes and returns them with the encoded header.
func (b *Blob) SnapshotShards(shard int) ([]byte, [][]byte) {
	var shards [][]byte
	for rest := b.Payload; len(rest) > 0 || len(shards) == 0; {
		n := min(shard, len(rest))
		shards = append(shards, rest[:n])
		rest = rest[n:]
	}
	b.Hdr.Parts = uint32(len(shards))
	return b.Hdr.Encode(b.Payload), shards
}

// Size is the total length of parts.
func Size(parts [][]byte) int {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return n
}

// DecodeEntry verifies and decodes the parts of the log entry of gen.
func DecodeEntry(gen int64, parts [][]byte) (*statev1.PoolDelta, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("log entry %d: %w: no parts", gen, nodestore.ErrCorrupt)
	}
	h, n, err := DecodeHeader(parts[0])
	if err != nil {
		return nil, fmt.Errorf("log entry %d: %w", gen, err)
	}
	if int(h.Parts) != len(parts) || h.Gen != gen {
		return nil, fmt.Errorf("log entry %d: %w: header says generation %d in %d parts, found %d parts", gen, nodestore.ErrCorrupt, h.Gen, h.Parts, len(parts))
	}
	payload := make([]byte, 0, Size(parts)-n)
	payload = append(payload, parts[0][n:]...)
	for _, p := range parts[1:] {
		payload = append(payload, p...)
	}
	d := &statev1.PoolDelta{}
	if err := decode(&h, parts[0][:n], payload, d); err != nil {
		return nil, fmt.Errorf("log entry %d: %w", gen, err)
	}
	return d, nil
}

// DecodeSnapshot verifies and decodes a snapshot from its header h (encoded:
// hdr) and its shards.
func DecodeSnapshot(h *Header, hdr []byte, shards [][]byte) (*statev1.PoolState, error) {
	if int(h.Parts) != len(shards) {
		return nil, fmt.Errorf("snapshot of generation %d: %w: header says %d shards, found %d", h.Gen, nodestore.ErrCorrupt, h.Parts, len(shards))
	}
	payload := bytes.Join(shards, nil)
	st := &statev1.PoolState{}
	if err := decode(h, hdr, payload, st); err != nil {
		return nil, fmt.Errorf("snapshot of generation %d: %w", h.Gen, err)
	}
	return st, nil
}

func decode(h *Header, hdr, payload []byte, m proto.Message) error {
	if err := h.Verify(hdr, payload); err != nil {
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

// Entry is a log entry as a store reads it back: its generation and parts.
type Entry struct {
	Gen   int64
	Parts [][]byte
}

// Size is the entry's bytes.
func (e *Entry) Size() int { return Size(e.Parts) }

// DecodeEntries verifies and decodes entries, in order.
func DecodeEntries(entries []Entry) ([]*statev1.PoolDelta, error) {
	out := make([]*statev1.PoolDelta, len(entries))
	for i, e := range entries {
		d, err := DecodeEntry(e.Gen, e.Parts)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

// Build is a pool's state from its snapshot (header h, encoded as hdr, and
// its shards) and the log entries after it, applied in order.
func Build(h *Header, hdr []byte, shards [][]byte, entries []Entry) (*statev1.PoolState, error) {
	st, err := DecodeSnapshot(h, hdr, shards)
	if err != nil {
		return nil, err
	}
	ds, err := DecodeEntries(entries)
	if err != nil {
		return nil, err
	}
	sh := nodestore.NewShadow(st)
	for _, d := range ds {
		sh.Apply(d)
	}
	return sh.State(), nil
}
