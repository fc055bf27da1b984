package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsemu"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/storespec"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

var exportedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// qsstore runs the command and returns its exit status, output and errors.
func qsstore(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, bytes.NewReader(stdin), &out, &errOut, func() time.Time { return exportedAt })
	return code, out.String(), errOut.String()
}

// seedPool creates pool id in the store spec names, with an account, waiting
// tasks and running ones, and commits a few batches on top of it, so that
// its latest state is the snapshot plus log entries. It returns that state.
func seedPool(t *testing.T, spec, id string) *statev1.PoolState {
	t.Helper()
	ctx := context.Background()
	st := openStore(t, spec)
	defer st.Close()
	s, err := scheduler.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddAccount("team", &statev1.AccountConfig{ChargeRate: []float32{1, 2}, MaxChargeSeconds: 600}, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePool(ctx, id, s.ToProto()); err != nil {
		t.Fatal(err)
	}
	s.TrackChanges()
	gen := int64(1)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for batch := range 4 {
		at := t0.Add(time.Duration(batch) * time.Minute)
		for i := range 5 {
			n := scheduler.Notification{Kind: scheduler.NotifyWaiting, Time: at, Task: scheduler.Task{
				ID: scheduler.RequestID(fmt.Sprintf("t%d-%d", batch, i)), Account: "team", EnqueueTime: at, BaseLabels: []string{"pool:x"}}}
			if err := s.Notify(n, false); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.AssignTasks(at, []scheduler.IdleWorker{{ID: scheduler.WorkerID(fmt.Sprintf("bot%d", batch)), Labels: []string{"pool:x"}}}); err != nil {
			t.Fatal(err)
		}
		s.DiscardEvents()
		if _, err := st.Commit(ctx, id, gen, s.TakeDelta()); err != nil {
			t.Fatal(err)
		}
		gen++
	}
	want, _, err := st.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Waiting) == 0 || len(want.Workers) == 0 {
		t.Fatalf("the seeded pool has %d waiting and %d workers; the test needs both", len(want.Waiting), len(want.Workers))
	}
	return want
}

// openStore opens the store spec names; the caller closes it.
func openStore(t *testing.T, spec string) nodestore.Store {
	t.Helper()
	st, err := storespec.Open(context.Background(), spec, storespec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// load returns a pool's latest state and generation in the store spec names.
func load(t *testing.T, spec, id string) (*statev1.PoolState, int64) {
	t.Helper()
	st := openStore(t, spec)
	defer st.Close()
	s, gen, err := st.Load(context.Background(), id)
	if err != nil {
		t.Fatalf("loading %q from %s: %v", id, spec, err)
	}
	return s, gen
}

// TestExportImportRoundTrip: a pool exported from one embedded store and
// imported into another, through a file and through a pipe, has the same
// state there (at generation 1), and lists; exported back and imported
// into the first store under another id, it is the same again.
func TestExportImportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a, b := "embedded:"+filepath.Join(dir, "a"), "embedded:"+filepath.Join(dir, "b")
	want := seedPool(t, a, "prod")
	file := filepath.Join(dir, "prod.qsexport")

	if code, _, errOut := qsstore(t, nil, "export", "-store", a, "-pool", "prod", "-out", file); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	code, out, errOut := qsstore(t, nil, "import", "-store", b, "-in", file)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, `imported pool "prod"`) || !strings.Contains(out, "at generation 5") || !strings.Contains(out, "2026-03-01T12:00:00Z") {
		t.Errorf("import says %q; want the pool, its generation and the export time", out)
	}
	got, gen := load(t, b, "prod")
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("imported state differs (-exported +imported):\n%s", diff)
	}
	if gen != 1 {
		t.Errorf("imported pool at generation %d, want 1", gen)
	}
	if code, out, _ := qsstore(t, nil, "list", "-store", b); code != 0 || out != "prod\n" {
		t.Errorf("list: exit %d, %q; want prod", code, out)
	}

	// Back the other way, through a pipe, under another id.
	code, pipe, errOut := qsstore(t, nil, "export", "-store", b, "-pool", "prod")
	if code != 0 {
		t.Fatalf("export to standard output: exit %d: %s", code, errOut)
	}
	if code, _, errOut := qsstore(t, []byte(pipe), "import", "-store", a, "-pool", "debug"); code != 0 {
		t.Fatalf("import from standard input: exit %d: %s", code, errOut)
	}
	got, _ = load(t, a, "debug")
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("state imported back differs (-exported +imported):\n%s", diff)
	}
	if code, out, _ := qsstore(t, nil, "list", "-store", a); code != 0 || out != "debug\nprod\n" {
		t.Errorf("list: exit %d, %q; want debug and prod", code, out)
	}
}

// TestImportRefusals: an import never overwrites a pool unless asked to,
// and never writes a file that is not an export or whose state the
// scheduler refuses; each refusal says why.
func TestImportRefusals(t *testing.T) {
	dir := t.TempDir()
	a, b := "embedded:"+filepath.Join(dir, "a"), "embedded:"+filepath.Join(dir, "b")
	want := seedPool(t, a, "p")
	other := seedPool(t, b, "p")
	_, exp, _ := qsstore(t, nil, "export", "-store", a, "-pool", "p")

	code, _, errOut := qsstore(t, []byte(exp), "import", "-store", b)
	if code != 1 || !strings.Contains(errOut, `pool "p" already exists`) || !strings.Contains(errOut, "-replace") {
		t.Errorf("import over an existing pool: exit %d, %q; want 1 naming the pool and -replace", code, errOut)
	}
	if got, _ := load(t, b, "p"); !cmp.Equal(other, got, protocmp.Transform()) {
		t.Error("a refused import changed the existing pool")
	}
	if code, _, errOut := qsstore(t, []byte(exp), "import", "-store", b, "-replace"); code != 0 {
		t.Fatalf("import -replace: exit %d: %s", code, errOut)
	}
	if got, _ := load(t, b, "p"); !cmp.Equal(want, got, protocmp.Transform()) {
		t.Error("import -replace did not leave the exported state")
	}

	gz := func(data []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(data)
		zw.Close()
		return buf.Bytes()
	}
	bad := &statev1.PoolState{Waiting: []*statev1.Request{{Id: ""}}}
	badExport, _ := protoMarshal(&statev1.PoolExport{PoolId: "q", State: bad})
	noState, _ := protoMarshal(&statev1.PoolExport{PoolId: "q"})
	badID, _ := protoMarshal(&statev1.PoolExport{PoolId: "", State: &statev1.PoolState{}})
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"not gzip", []byte("hello"), "not a qsstore export"},
		{"gzip of garbage", gz([]byte{0xff, 0xff, 0xff}), "not a qsstore export"},
		{"truncated", []byte(exp)[:len(exp)/2], "damaged"},
		{"no state", gz(noState), "holds no pool state"},
		{"bad pool id", gz(badID), "pool_id"},
		{"state the scheduler refuses", gz(badExport), "the scheduler does not accept its state"},
	} {
		code, _, errOut := qsstore(t, tc.in, "import", "-store", b)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, %q; want 1 and %q", tc.name, code, errOut, tc.want)
		}
	}
	st := openStore(t, b)
	defer st.Close()
	if pools, err := st.ListPools(context.Background()); err != nil || len(pools) != 1 {
		t.Errorf("after refused imports the store lists %v, %v; want only p", pools, err)
	}
}

// TestCommandLine: usage errors exit 2 and name what is wrong; a missing
// pool exits 1 naming it and leaves no file behind.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	spec := "embedded:" + filepath.Join(dir, "s")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"list"}, "-store is required"},
		{[]string{"export", "-store", spec}, "-pool is required"},
		{[]string{"list", "-store", "bolt:x"}, "embedded:<dir>"},
		{[]string{"import", "-store", spec, "-pool", "\xff"}, "-pool: invalid pool id"},
		{[]string{"list", "-store", spec, "extra"}, `unexpected argument "extra"`},
	} {
		code, _, errOut := qsstore(t, nil, tc.args...)
		want := 2
		if strings.HasPrefix(tc.want, "embedded") {
			want = 1 // a spec it cannot open is an operation that failed
		}
		if code != want || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, %q; want %d and %q", tc.args, code, errOut, want, tc.want)
		}
	}
	out := filepath.Join(dir, "x.qsexport")
	code, _, errOut := qsstore(t, nil, "export", "-store", spec, "-pool", "absent", "-out", out)
	if code != 1 || !strings.Contains(errOut, `"absent"`) || !strings.Contains(errOut, nodestore.ErrNotFound.Error()) {
		t.Errorf("export of a missing pool: exit %d, %q; want 1 naming it", code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed export left %d entries in its folder, want only the store", len(entries))
	}
	if code, out, _ := qsstore(t, nil, "help"); code != 0 || !strings.Contains(out, "qsstore export") {
		t.Errorf("help: exit %d, %q", code, out)
	}
}

func protoMarshal(m *statev1.PoolExport) ([]byte, error) { return proto.Marshal(m) }

func TestMain(m *testing.M) { os.Exit(dsemu.Main(m)) }

// TestDatastoreBothWays: a pool moves from an embedded store into Cloud
// Datastore (the real emulator) and from there into another embedded store,
// the state equal at each step: a first deployment, and a production pool
// looked at on a laptop.
func TestDatastoreBothWays(t *testing.T) {
	emu := dsemu.Shared(t)
	t.Setenv("DATASTORE_EMULATOR_HOST", emu.Host())
	dir := t.TempDir()
	local, laptop := "embedded:"+filepath.Join(dir, "local"), "embedded:"+filepath.Join(dir, "laptop")
	prod := "datastore:" + dsemu.ProjectID()
	want := seedPool(t, local, "lab")
	file := filepath.Join(dir, "lab.qsexport")
	for _, step := range [][]string{
		{"export", "-store", local, "-pool", "lab", "-out", file},
		{"import", "-store", prod, "-in", file},
		{"export", "-store", prod, "-pool", "lab", "-out", file},
		{"import", "-store", laptop, "-in", file},
	} {
		if code, _, errOut := qsstore(t, nil, step...); code != 0 {
			t.Fatalf("%q: exit %d: %s", step, code, errOut)
		}
	}
	for _, spec := range []string{prod, laptop} {
		got, gen := load(t, spec, "lab")
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" || gen != 1 {
			t.Errorf("%s: generation %d, state differs (-exported +imported):\n%s", spec, gen, diff)
		}
	}
}
