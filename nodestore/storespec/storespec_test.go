package storespec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsemu"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/datastore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(ctx, "embedded:"+dir, Options{CodeVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	again, err := Open(ctx, "embedded:"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if pools, err := again.ListPools(ctx); err != nil || len(pools) != 1 || pools[0] != "p" {
		t.Errorf("reopened embedded store lists %v, %v; want [p]", pools, err)
	}
	again.Close()

	m, err := Open(ctx, "memory", Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()

	d, err := Open(ctx, "delay:1ms:embedded:"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.(*faultstore.Store); !ok {
		t.Errorf("delay: opened a %T, want the faultstore wrapper", d)
	}
	if pools, err := d.ListPools(ctx); err != nil || len(pools) != 1 {
		t.Errorf("the delayed store wraps another store: it lists %v, %v", pools, err)
	}
	d.Close()

	for _, spec := range []string{"", "embedded", "embedded:", "memory:x", "bolt:/tmp/x", "delay:memory", "delay:0s:memory", "delay:1x:memory", "delay:1ms:", "delay:1ms:bolt"} {
		if _, err := Open(ctx, spec, Options{}); err == nil {
			t.Errorf("Open(%q) succeeded", spec)
		} else if !strings.Contains(err.Error(), "embedded") {
			t.Errorf("Open(%q): %v; want an error that names the kinds", spec, err)
		}
	}
}

// TestDatastore: a datastore spec opens the store in that project (here on
// the emulator, which DATASTORE_EMULATOR_HOST names), with or without a
// database; a bad spec fails naming what is wrong.
func TestDatastore(t *testing.T) {
	ctx := t.Context()
	for spec, want := range map[string]string{
		"datastore":           "project",
		"datastore:":          "project",
		"datastore:/db":       "project",
		"datastore:p/":        "database",
		"datastore:p/db/x":    "one word",
		"datastore:my proj":   "one word",
		"delay:1ms:datastore": "project",
	} {
		if _, err := Open(ctx, spec, Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q): %v; want an error naming the %s", spec, err, want)
		}
	}
	t.Setenv("DATASTORE_EMULATOR_HOST", dsemu.Shared(t).Host())
	project := dsemu.ProjectID()
	for _, spec := range []string{"datastore:" + project, "datastore:" + project + "/other-db"} {
		s, err := Open(ctx, spec, Options{CodeVersion: "test"})
		if err != nil {
			t.Fatalf("Open(%q): %v", spec, err)
		}
		if _, ok := s.(*datastore.Store); !ok {
			t.Errorf("Open(%q) opened a %T", spec, s)
		}
		if err := s.CreatePool(ctx, "p", &statev1.PoolState{}); err != nil {
			t.Fatalf("%s: CreatePool: %v", spec, err)
		}
		if pools, err := s.ListPools(ctx); err != nil || len(pools) != 1 {
			t.Errorf("%s lists %v, %v; want [p]: each database is its own", spec, pools, err)
		}
		s.Close()
	}
}

func TestMain(m *testing.M) { os.Exit(dsemu.Main(m)) }
