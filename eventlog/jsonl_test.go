package eventlog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	eventsv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/events/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// faultyFile writes at most budget more bytes (negative: no limit), then
// fails like a full disk; its next truncFails truncations fail.
type faultyFile struct {
	*os.File
	mu         sync.Mutex
	budget     int
	truncFails int
}

func (f *faultyFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget < 0 || len(p) <= f.budget {
		if f.budget >= 0 {
			f.budget -= len(p)
		}
		return f.File.Write(p)
	}
	n, err := f.File.Write(p[:f.budget])
	f.budget = 0
	if err == nil {
		err = syscall.ENOSPC
	}
	return n, err
}

func (f *faultyFile) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.truncFails > 0 {
		f.truncFails--
		return errors.New("injected truncate failure")
	}
	return f.File.Truncate(size)
}

func (f *faultyFile) set(budget, truncFails int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.budget, f.truncFails = budget, truncFails
}

// readRows checks that the file at path holds whole lines only, each a
// row, and returns them.
func readRows(t *testing.T, path string) []*eventsv1.TaskEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s ends with a torn line: %q", path, b[max(0, bytes.LastIndexByte(b, '\n')+1):])
	}
	var rows []*eventsv1.TaskEvent
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'}) {
		if len(b) == 0 {
			break
		}
		r := &eventsv1.TaskEvent{}
		if err := protojson.Unmarshal(line, r); err != nil {
			t.Fatalf("line %d of %s does not parse (%v): %q", i+1, path, err, line)
		}
		rows = append(rows, r)
	}
	return rows
}

// waitCounts waits until the writer has written and failed that many rows.
func waitCounts(t *testing.T, j *JSONL, written, failed int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for j.Written.Load() != written || j.Failed.Load() != failed {
		if time.Now().After(deadline) {
			t.Fatalf("written %d and failed %d rows, want %d and %d", j.Written.Load(), j.Failed.Load(), written, failed)
		}
		runtime.Gosched()
	}
}

// TestJSONLShortWritesLeaveWholeLines: a write cut short by a full disk is
// cut back to its last complete line; the rows it lost are counted and
// logged; once the disk has room the writer goes on; every line of the
// file parses.
func TestJSONLShortWritesLeaveWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	var ff *faultyFile
	log := &testutil.Buffer{}
	j, err := openJSONL(path, "inst", 0, slog.New(slog.NewTextHandler(log, nil)), func(f *os.File) file {
		ff = &faultyFile{File: f, budget: -1}
		return ff
	})
	if err != nil {
		t.Fatal(err)
	}
	j.Emit("p", events(3))
	waitCounts(t, j, 3, 0)
	if rows := readRows(t, path); len(rows) != 3 {
		t.Fatalf("%d rows after the first write, want 3", len(rows))
	}
	b, _ := os.ReadFile(path)
	lineLen := len(b) / 3

	// Room for one line and a half: one row kept, the torn one cut, three lost.
	ff.set(lineLen+lineLen/2, 0)
	j.Emit("p", events(4))
	waitCounts(t, j, 4, 3)
	if got := readRows(t, path); len(got) != 4 {
		t.Fatalf("%d rows after a write cut in its second line, want 4", len(got))
	}
	// No room at all.
	ff.set(0, 0)
	j.Emit("p", events(2))
	waitCounts(t, j, 4, 5)
	// Half a line, and cutting it fails once: it is cut before the next write.
	ff.set(lineLen/2, 1)
	j.Emit("p", events(1))
	waitCounts(t, j, 4, 6)
	ff.set(-1, 0)
	j.Emit("p", events(2))
	waitCounts(t, j, 6, 6)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	rows := readRows(t, path)
	if len(rows) != 6 {
		t.Fatalf("%d rows, want 6 (3, 1 of 4, 0 of 2, 0 of 1, 2)", len(rows))
	}
	ids := map[string]bool{}
	for _, r := range rows {
		if ids[r.RowId] {
			t.Errorf("row %s twice", r.RowId)
		}
		ids[r.RowId] = true
	}
	out := log.String()
	if !strings.Contains(out, "event log write failed") || !strings.Contains(out, "rows_lost=3") || !strings.Contains(out, "no space left on device") {
		t.Errorf("the first loss is not logged with its count and error:\n%s", out)
	}
	if n := strings.Count(out, "event log write failed"); n != 1 {
		t.Errorf("%d lines for three failed writes within ten seconds, want 1:\n%s", n, out)
	}
}

// TestJSONLCutsTornTailAtOpen: a torn last line left by a crash is cut off
// when the file is opened, and logged.
func TestJSONLCutsTornTailAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	j, err := OpenJSONL(path, "inst", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	j.Emit("p", events(2))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	whole, _ := os.ReadFile(path)
	want := 2
	for _, tail := range []string{`{"rowId":"inst-9","pool":"p","ty`, strings.Repeat("x", 200_000)} {
		if err := os.WriteFile(path, append(append([]byte(nil), whole...), tail...), 0o644); err != nil {
			t.Fatal(err)
		}
		log := &testutil.Buffer{}
		j, err := OpenJSONL(path, "inst", 0, slog.New(slog.NewTextHandler(log, nil)))
		if err != nil {
			t.Fatal(err)
		}
		j.Emit("p", events(1))
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		want++
		if got := readRows(t, path); len(got) != want {
			t.Errorf("%d rows after reopening, want %d", len(got), want)
		}
		if !strings.Contains(log.String(), "last line was torn") || !strings.Contains(log.String(), fmt.Sprintf("bytes_cut=%d", len(tail))) {
			t.Errorf("the cut is not logged with its size:\n%s", log)
		}
		whole, _ = os.ReadFile(path)
	}
	// A file that is one torn line becomes empty.
	if err := os.WriteFile(path, []byte("no newline"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, err = OpenJSONL(path, "inst", 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("file %q, want empty", b)
	}
}

// TestJSONLSecondWriterFails: a second writer on the same path, in this
// process, fails to open with an error naming the file; once the first is
// closed, it opens.
func TestJSONLSecondWriterFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	j, err := OpenJSONL(path, "a", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	j2, err := OpenJSONL(path, "b", 0, nil)
	if err == nil {
		j2.Close()
		t.Fatal("a second writer opened the event log")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "in use by another writer") {
		t.Errorf("second writer: %v, want an error naming %s and saying it is in use", err, path)
	}
	t.Log(err)
	j.Emit("p", events(1))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err = OpenJSONL(path, "b", 0, nil)
	if err != nil {
		t.Fatalf("after the first writer closed: %v", err)
	}
	j2.Emit("p", events(1))
	j2.Close()
	if got := readRows(t, path); len(got) != 2 {
		t.Errorf("%d rows, want 2", len(got))
	}
}

// TestJSONLSecondWriterInAnotherProcess: the lock holds across processes
// and goes with the process that held it.
func TestJSONLSecondWriterInAnotherProcess(t *testing.T) {
	if path := os.Getenv("EVENTLOG_LOCK_CHILD"); path != "" {
		j, err := OpenJSONL(path, "child", 0, nil)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin) // until the parent closes it
		j.Close()
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	cmd := exec.Command(os.Args[0], "-test.run=^TestJSONLSecondWriterInAnotherProcess$")
	cmd.Env = append(os.Environ(), "EVENTLOG_LOCK_CHILD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	if j, err := OpenJSONL(path, "parent", 0, nil); err == nil {
		j.Close()
		t.Fatal("opened the event log another process holds")
	} else if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "in use by another writer") {
		t.Errorf("while the child holds it: %v, want an error naming %s and saying it is in use", err, path)
	} else {
		t.Log(err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJSONL(path, "parent", 0, nil)
	if err != nil {
		t.Fatalf("after the child exited: %v", err)
	}
	j.Close()
}
