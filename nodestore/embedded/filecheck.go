package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// bbolt maps the file into memory and trusts its meta page: a page beyond
// the end of a truncated file is read through the mapping, which raises
// SIGBUS (or, on some kernels, reads zeros that bbolt's own checks turn into
// a panic on a goroutine of its own). Either kills the process with a stack
// dump instead of an error. checkFile therefore reads the two meta pages
// with ordinary reads before bbolt opens the file, and refuses a file
// shorter than the pages its meta page says are in use.

// The meta page, as bbolt (1.x, format version 2) writes it in the
// machine's byte order: a 16-byte page header, then magic, version, page
// size, flags (4 bytes each), the root bucket (page id, sequence), the
// freelist's page id, the high-water mark (pgid: the number of pages in
// use), the transaction id, and an FNV-64a checksum of what precedes it.
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	boltPageHeader   = 16
	boltMetaLen      = 64
	boltChecksumFrom = boltPageHeader
	boltChecksumTo   = boltPageHeader + 56
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

// readBoltMeta reads the meta page at off; ok is false if it is not a valid
// one (short, wrong magic or version, bad checksum), as bbolt decides.
func readBoltMeta(f *os.File, off int64) (m boltMeta, ok bool) {
	var b [boltPageHeader + boltMetaLen]byte
	if n, _ := f.ReadAt(b[:], off); n < len(b) {
		return m, false
	}
	ne := binary.NativeEndian
	h := fnv.New64a()
	h.Write(b[boltChecksumFrom:boltChecksumTo])
	if ne.Uint32(b[16:]) != boltMagic || ne.Uint32(b[20:]) != boltVersion || ne.Uint64(b[72:]) != h.Sum64() {
		return m, false
	}
	return boltMeta{pageSize: ne.Uint32(b[24:]), pgid: ne.Uint64(b[56:]), txid: ne.Uint64(b[64:])}, true
}

// checkFile returns an error wrapping nodestore.ErrCorrupt, naming path and
// saying what is wrong, if the bbolt file there is empty, has no valid meta
// page, or is shorter than its pages need. A missing file is fine (Open
// creates it).
//
// The meta pages are read before the file's size: bbolt only ever grows
// the file, and grows it before it writes a meta page that needs the
// space, so a writer committing meanwhile (another process, which Open
// will then find holding the lock) cannot make a sound file look short.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	defer f.Close()
	var metas []boltMeta
	if m, ok := readBoltMeta(f, 0); ok {
		metas = append(metas, m)
		if m1, ok := readBoltMeta(f, int64(m.pageSize)); ok && m1.pageSize == m.pageSize {
			metas = append(metas, m1)
		}
	} else {
		// The first meta page is damaged: look for the second at every
		// page size bbolt could have used, as bbolt does.
		for i := range 15 {
			ps := int64(1024) << i
			if m1, ok := readBoltMeta(f, ps); ok && int64(m1.pageSize) == ps {
				metas = append(metas, m1)
				break
			}
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	size := fi.Size()
	if size == 0 {
		return fmt.Errorf("%w: %s is empty (0 bytes): the store never leaves an empty file, so it was truncated, or the store's first start was interrupted; move it away to start with no pools, or restore it from a backup",
			nodestore.ErrCorrupt, path)
	}
	if len(metas) == 0 {
		return fmt.Errorf("%w: %s (%d bytes) has no valid bbolt meta page: it is not a store file, or it is truncated or damaged at its start",
			nodestore.ErrCorrupt, path, size)
	}
	m := metas[0] // bbolt uses the valid meta page of the latest transaction
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	ps := int64(m.pageSize)
	need := max(int64(m.pgid), 2) * ps
	if size < need {
		return fmt.Errorf("%w: %s is truncated: it has %d bytes, but its meta page (transaction %d) has %d pages of %d bytes in use, %d bytes (%d missing); restore it from a backup",
			nodestore.ErrCorrupt, path, size, m.txid, max(m.pgid, 2), ps, need, need-size)
	}
	return nil
}

// NewStoreWarning is for a start that may have been pointed at the wrong
// folder: it returns a warning when the store in dir is new — no pools.db,
// or one that holds no pool — while the file at eventLog (the event log
// written beside the store) already has content, i.e. events of an earlier
// state that this store does not hold. It returns "" when there is nothing
// to warn about, and an error when it cannot tell (a damaged pools.db, one
// in use). Call it before Open, which creates pools.db and locks it.
func NewStoreWarning(dir, eventLog string) (string, error) {
	ev, err := os.Stat(eventLog)
	if errors.Is(err, fs.ErrNotExist) || err == nil && (ev.Size() == 0 || !ev.Mode().IsRegular()) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("embedded: %w", err)
	}
	path := filepath.Join(dir, FileName)
	var store string
	switch _, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist):
		store = fmt.Sprintf("the store %s does not exist (a new store)", path)
	case err != nil:
		return "", fmt.Errorf("embedded: %w", err)
	default:
		n, err := countPools(path)
		if err != nil {
			return "", err
		}
		if n > 0 {
			return "", nil
		}
		store = fmt.Sprintf("the store %s holds no pool", path)
	}
	return fmt.Sprintf("%s, but the event log %s already holds %d bytes of events, last written %s: the pools those events came from are not in this store (was the store's folder changed, or its file lost?)",
		store, eventLog, ev.Size(), ev.ModTime().UTC().Format(time.RFC3339)), nil
}

// countPools counts the pools of the store file at path, opened read-only
// after checkFile.
func countPools(path string) (int, error) {
	if err := checkFile(path); err != nil {
		return 0, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return 0, fmt.Errorf("embedded: %s is in use by another store: %w", path, err)
	}
	if err != nil {
		return 0, fmt.Errorf("embedded: opening %s: %w", path, err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketPools); b != nil {
			return b.ForEachBucket(func([]byte) error { n++; return nil })
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("embedded: reading %s: %w", path, err)
	}
	return n, nil
}
