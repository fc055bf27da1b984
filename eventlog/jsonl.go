package eventlog

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/encoding/protojson"
)

// JSONL appends rows as JSON lines to a file.
type JSONL struct {
	Counters
	instance string
	log      *slog.Logger

	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]byte
	max    int
	closed bool
	done   chan struct{}
	f      *os.File
	w      *bufio.Writer
}

// OpenJSONL opens (creating it and its folder) the file at path for
// appending. At most maxQueued rows wait to be written (default 100000); the
// oldest are dropped beyond that.
func OpenJSONL(path, instance string, maxQueued int, log *slog.Logger) (*JSONL, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	if maxQueued <= 0 {
		maxQueued = 100000
	}
	if log == nil {
		log = slog.Default()
	}
	j := &JSONL{instance: instance, log: log, max: maxQueued, done: make(chan struct{}), f: f, w: bufio.NewWriterSize(f, 1<<16)}
	j.cond = sync.NewCond(&j.mu)
	go j.loop()
	return j, nil
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
		for _, line := range batch {
			if _, err := j.w.Write(line); err == nil {
				_ = j.w.WriteByte('\n')
				j.Written.Add(1)
			} else {
				j.Failed.Add(1)
			}
		}
		if err := j.w.Flush(); err != nil {
			j.log.Error("event log write failed", "err", err)
		}
		if closed && len(batch) == 0 {
			return
		}
	}
}

// Close writes what is queued and closes the file.
func (j *JSONL) Close() error {
	j.mu.Lock()
	j.closed = true
	j.cond.Signal()
	j.mu.Unlock()
	<-j.done
	return j.f.Close()
}
