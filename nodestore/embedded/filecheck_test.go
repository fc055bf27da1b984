package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// truncFixture is a real store file of several pools, with the size its
// pages need (what bbolt reports as the transaction's size) and its page
// size.
type truncFixture struct {
	data       []byte
	need, page int64
	states     map[string]*statev1.PoolState
}

func newTruncFixture(t *testing.T) *truncFixture {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, Options{Logger: testLogger(t), MaintainEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	f := &truncFixture{states: map[string]*statev1.PoolState{}}
	for i := range 12 {
		pool := fmt.Sprintf("pool-%02d", i)
		st := &statev1.PoolState{}
		for j := range 300 {
			// Distinct texts, so that compression leaves several pages.
			st.TaskErrors = append(st.TaskErrors, &statev1.TaskError{TaskId: fmt.Sprintf("%s-task-%04d", pool, j), Error: fmt.Sprintf("error %d of %s: %x", j, pool, j*7919*(i+1))})
		}
		if err := s.CreatePool(t.Context(), pool, st); err != nil {
			t.Fatal(err)
		}
		for g := int64(1); g <= 3; g++ {
			d := delta(int(g))
			if _, err := s.Commit(t.Context(), pool, g, d); err != nil {
				t.Fatal(err)
			}
			st = nodestore.ApplyDelta(st, d)
		}
		f.states[pool] = st
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	f.page = int64(db.Info().PageSize)
	if err := db.View(func(tx *bolt.Tx) error { f.need = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if f.data, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if f.need < 20*f.page || int64(len(f.data)) < f.need {
		t.Fatalf("fixture of %d bytes needs %d (pages of %d): too small to truncate meaningfully", len(f.data), f.need, f.page)
	}
	t.Logf("fixture: %d bytes, its pages need %d (%d pages of %d)", len(f.data), f.need, f.need/f.page, f.page)
	return f
}

// write puts the fixture's first n bytes, with edit applied, as pools.db in
// a new folder and returns the folder.
func (f *truncFixture) write(t *testing.T, n int64, edit func([]byte)) string {
	t.Helper()
	dir := t.TempDir()
	b := append([]byte(nil), f.data[:n]...)
	if edit != nil {
		edit(b)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTruncatedFile: a pools.db cut short anywhere gives an error naming
// the file and what is wrong, never a fault: Open runs in the test process,
// so a SIGBUS or a panic on one of bbolt's goroutines would kill the test.
// A file cut only in its slack past the pages in use opens and loads.
func TestTruncatedFile(t *testing.T) {
	f := newTruncFixture(t)
	zeroFirstPage := func(b []byte) { clear(b[:f.page]) }
	for _, tc := range []struct {
		name string
		size int64
		edit func([]byte)
		want []string
	}{
		{"half", f.need / 2, nil, []string{"is truncated", fmt.Sprintf("has %d bytes", f.need/2), fmt.Sprintf("%d bytes (%d missing)", f.need, f.need-f.need/2)}},
		{"one page short", f.need - f.page, nil, []string{"is truncated", fmt.Sprintf("%d missing", f.page)}},
		{"one byte short", f.need - 1, nil, []string{"is truncated", "(1 missing)"}},
		{"first meta page damaged, half", f.need / 2, zeroFirstPage, []string{"is truncated"}},
		{"two meta pages only", 2 * f.page, nil, []string{"is truncated"}},
		{"one meta page only", f.page, nil, []string{"is truncated"}},
		{"less than a page", 100, nil, []string{"is truncated", "has 100 bytes"}},
		{"less than a meta page", 50, nil, []string{"has no valid bbolt meta page", "(50 bytes)"}},
		{"zero length", 0, nil, []string{"is empty (0 bytes)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := f.write(t, tc.size, tc.edit)
			s, err := Open(dir, Options{Logger: testLogger(t)})
			if err == nil {
				s.Close()
				t.Fatalf("Open of a file of %d bytes whose pages need %d succeeded", tc.size, f.need)
			}
			path := filepath.Join(dir, FileName)
			if !errors.Is(err, nodestore.ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v; want ErrCorrupt naming %s", err, path)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open: %v; want it to say %q", err, w)
				}
			}
			t.Log(err)
			if fi, _ := os.Stat(path); fi.Size() != tc.size {
				t.Errorf("the refused file is now %d bytes, was %d: Open must not touch it", fi.Size(), tc.size)
			}
		})
	}
	t.Run("not a store file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), []byte(strings.Repeat("not a database\n", 2000)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(dir, Options{Logger: testLogger(t)})
		if !errors.Is(err, nodestore.ErrCorrupt) || !strings.Contains(err.Error(), "no valid bbolt meta page") {
			t.Errorf("Open: %v; want ErrCorrupt saying there is no meta page", err)
		}
	})
	// Cut to exactly what its pages need: nothing is lost.
	for _, n := range []int64{f.need, int64(len(f.data))} {
		t.Run(fmt.Sprintf("%d bytes of %d", n, len(f.data)), func(t *testing.T) {
			s := open(t, f.write(t, n, nil), Options{})
			for pool, want := range f.states {
				got, gen, err := s.Load(t.Context(), pool)
				if err != nil || gen != 4 || !proto.Equal(got, want) {
					t.Errorf("Load(%s): generation %d, %v; want generation 4 and the committed state", pool, gen, err)
				}
			}
			if _, err := s.Commit(t.Context(), "pool-00", 4, delta(4)); err != nil {
				t.Errorf("Commit after reopening: %v", err)
			}
		})
	}
}

// TestTruncatedFileKillsBbolt shows what checkFile prevents: bbolt alone,
// given a file cut in half, kills the process (in a child process here)
// when it reads the pages in use, all of which the child reads.
func TestTruncatedFileKillsBbolt(t *testing.T) {
	if path := os.Getenv("EMBEDDED_TRUNCATED_CHILD"); path != "" {
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		if err == nil {
			// Every page in use is read: every bucket, nested ones too.
			var walk func(b *bolt.Bucket) error
			walk = func(b *bolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					if v == nil {
						return walk(b.Bucket(k))
					}
					return nil
				})
			}
			err = db.View(func(tx *bolt.Tx) error {
				return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
			})
		}
		fmt.Println("bbolt returned:", err)
		os.Exit(0)
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	f := newTruncFixture(t)
	dir := f.write(t, f.need/2, nil)
	cmd := exec.CommandContext(context.Background(), os.Args[0], "-test.run=^TestTruncatedFileKillsBbolt$")
	cmd.Env = append(os.Environ(), "EMBEDDED_TRUNCATED_CHILD="+filepath.Join(dir, FileName))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("bbolt survived a file cut in half; checkFile may be unneeded now:\n%s", out)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	t.Logf("bbolt on a file cut in half: %v: %s", err, first)
}

// TestNewStoreWarning: a new or empty store beside an event log that has
// content is warned about; anything else is not.
func TestNewStoreWarning(t *testing.T) {
	base := t.TempDir()
	events := filepath.Join(base, "events.jsonl")
	newDir := filepath.Join(base, "new")
	check := func(what, dir, wantIn string) {
		t.Helper()
		msg, err := NewStoreWarning(dir, events)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if wantIn == "" && msg != "" || !strings.Contains(msg, wantIn) {
			t.Errorf("%s: warning %q, want one saying %q", what, msg, wantIn)
		}
		if msg != "" {
			t.Logf("%s: %s", what, msg)
		}
		if msg != "" && (!strings.Contains(msg, events) || !strings.Contains(msg, filepath.Join(dir, FileName))) {
			t.Errorf("%s: warning %q does not name both files", what, msg)
		}
	}
	check("no event log", newDir, "")
	if err := os.WriteFile(events, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	check("an empty event log", newDir, "")
	if err := os.WriteFile(events, []byte(`{"rowId":"x-1"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("a missing store", newDir, "does not exist (a new store), but the event log")
	check("a missing store", newDir, "holds 16 bytes of events")

	s, err := Open(newDir, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStoreWarning(newDir, events); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("while the store is open: %v, want an error saying it is in use", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check("a store without pools", newDir, "holds no pool, but the event log")

	s = open(t, newDir, Options{})
	if err := s.CreatePool(t.Context(), "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	check("a store with a pool", newDir, "")

	if err := os.Truncate(filepath.Join(newDir, FileName), 5000); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStoreWarning(newDir, events); !errors.Is(err, nodestore.ErrCorrupt) {
		t.Errorf("a truncated store: %v, want ErrCorrupt", err)
	}
}
