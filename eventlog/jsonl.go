package eventlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/encoding/protojson"
)

// JSONL appends rows as JSON lines to a file.
//
// One writer at a time: the file is locked (an advisory flock, released
// when the file is closed or the process dies), so a second JSONL on the
// same path, in this process or another, fails to open. Every line in the
// file is complete: a write that fails or is cut short (a full disk) is cut
// back to the last complete line and its other rows are counted in Failed
// and logged, and a torn last line found at open (a crash in mid-write) is
// cut off.
type JSONL struct {
	Counters
	instance string
	log      *slog.Logger
	path     string

	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]byte
	max    int
	closed bool
	done   chan struct{}

	// Only the writing goroutine touches these.
	f       file
	buf     []byte
	torn    bool // a failed write left a torn line that could not be cut yet
	failLog struct {
		last time.Time
		lost int64 // rows lost since the last line logged
	}
}

// file is what JSONL writes to: an *os.File opened for appending, or a
// wrapper injecting faults in tests.
type file interface {
	io.Writer
	io.ReaderAt
	io.Seeker
	Truncate(size int64) error
	Close() error
}

// chunkBytes bounds one write: a batch's lines are written in chunks of
// whole lines of about this size.
const chunkBytes = 1 << 20

// OpenJSONL opens (creating it and its folder) the file at path for
// appending, and locks it. At most maxQueued rows wait to be written
// (default 100000); the oldest are dropped beyond that. It fails, naming
// the file and if it can the process holding it, when another writer has
// it open.
func OpenJSONL(path, instance string, maxQueued int, log *slog.Logger) (*JSONL, error) {
	return openJSONL(path, instance, maxQueued, log, nil)
}

// openJSONL is OpenJSONL writing through wrap(the file), if wrap is set.
func openJSONL(path, instance string, maxQueued int, log *slog.Logger, wrap func(*os.File) file) (*JSONL, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	osf, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	if err := lockFile(osf); err != nil {
		osf.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("event log: %s is in use by another writer%s: %w", path, lockHolder(path), err)
		}
		return nil, fmt.Errorf("event log: locking %s: %w", path, err)
	}
	if maxQueued <= 0 {
		maxQueued = 100000
	}
	if log == nil {
		log = slog.Default()
	}
	var f file = osf
	if wrap != nil {
		f = wrap(osf)
	}
	j := &JSONL{instance: instance, log: log, path: path, max: maxQueued, done: make(chan struct{}), f: f}
	cut, size, err := j.cutTorn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("event log: cutting the torn last line of %s: %w", path, err)
	}
	if cut > 0 {
		log.Warn("event log: its last line was torn (a crash or a failed write in mid-line); cut off", "path", path,
			"bytes_cut", cut, "size", size)
	}
	j.cond = sync.NewCond(&j.mu)
	go j.loop()
	return j, nil
}

// cutTorn cuts a last line without its newline (a crash in mid-write, a
// failed write) off the file, and returns how many bytes it cut and the
// size left.
func (j *JSONL) cutTorn() (cut, size int64, err error) {
	end, err := j.f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, 0, err
	}
	keep, err := lastLineEnd(j.f, end)
	if err != nil {
		return 0, 0, err
	}
	if keep < end {
		if err := j.f.Truncate(keep); err != nil {
			return 0, 0, err
		}
	}
	return end - keep, keep, nil
}

// lastLineEnd returns the offset just after the last newline in the first
// size bytes of r, or 0 if there is none.
func lastLineEnd(r io.ReaderAt, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := r.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// Emit queues the rows of events.
func (j *JSONL) Emit(pool string, events []scheduler.Event) {
	lines := make([][]byte, 0, len(events))
	for _, e := range events {
		b, err := protojson.Marshal(Row(j.instance, pool, e))
		if err != nil {
			j.Failed.Add(1)
			continue
		}
		lines = append(lines, b)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		j.Dropped.Add(int64(len(lines)))
		return
	}
	j.queue = append(j.queue, lines...)
	if over := len(j.queue) - j.max; over > 0 {
		j.queue = j.queue[over:]
		j.Dropped.Add(int64(over))
	}
	j.cond.Signal()
}

func (j *JSONL) loop() {
	defer close(j.done)
	for {
		j.mu.Lock()
		for len(j.queue) == 0 && !j.closed {
			j.cond.Wait()
		}
		batch := j.queue
		j.queue = nil
		closed := j.closed
		j.mu.Unlock()
		j.buf = j.buf[:0]
		rows := 0
		for _, line := range batch {
			// protojson writes no newline inside a row.
			j.buf = append(append(j.buf, line...), '\n')
			rows++
			if len(j.buf) >= chunkBytes {
				j.write(j.buf, rows)
				j.buf, rows = j.buf[:0], 0
			}
		}
		if rows > 0 {
			j.write(j.buf, rows)
		}
		if cap(j.buf) > 4*chunkBytes {
			j.buf = nil
		}
		if closed && len(batch) == 0 {
			return
		}
	}
}

// write appends b, rows whole lines, to the file. If the write fails, what
// it wrote past the last complete line is cut off, so that the file holds
// whole lines only; the rows not written whole are lost, counted in Failed
// and logged.
func (j *JSONL) write(b []byte, rows int) {
	if j.torn {
		if _, _, err := j.cutTorn(); err != nil {
			j.lost(rows, 0, fmt.Errorf("not written: cutting the torn line of an earlier failed write failed again: %w", err))
			return
		}
		j.torn = false
	}
	n, err := j.f.Write(b)
	if err == nil && n == len(b) {
		j.Written.Add(int64(rows))
		return
	}
	if err == nil {
		err = io.ErrShortWrite
	}
	// The lines the write finished stay; a torn one is cut back to the
	// end of the last complete line.
	keep := bytes.LastIndexByte(b[:n], '\n') + 1
	kept := bytes.Count(b[:keep], []byte{'\n'})
	j.Written.Add(int64(kept))
	if keep < n {
		if _, _, cerr := j.cutTorn(); cerr != nil {
			j.torn = true
			err = fmt.Errorf("%w; then cutting the torn line: %v (retried before the next write)", err, cerr)
		}
	}
	j.lost(rows-kept, kept, err)
}

// lost counts rows lost to a failed write and logs them, at most every ten
// seconds (with the count since the last line).
func (j *JSONL) lost(rows, kept int, err error) {
	j.Failed.Add(int64(rows))
	j.failLog.lost += int64(rows)
	now := time.Now()
	if !j.failLog.last.IsZero() && now.Sub(j.failLog.last) < 10*time.Second {
		return
	}
	j.log.Error("event log write failed: rows lost; the file keeps whole lines only", "path", j.path,
		"rows_lost", j.failLog.lost, "rows_kept_of_this_write", kept, "err", err)
	j.failLog.last, j.failLog.lost = now, 0
}

// Close writes what is queued and closes the file, releasing its lock.
func (j *JSONL) Close() error {
	j.mu.Lock()
	j.closed = true
	j.cond.Signal()
	j.mu.Unlock()
	<-j.done
	return j.f.Close()
}
