package storespec

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

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
	defer again.Close()
	if pools, err := again.ListPools(ctx); err != nil || len(pools) != 1 || pools[0] != "p" {
		t.Errorf("reopened embedded store lists %v, %v; want [p]", pools, err)
	}

	m, err := Open(ctx, "memory", Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()

	for _, spec := range []string{"", "embedded", "embedded:", "memory:x", "bolt:/tmp/x"} {
		if _, err := Open(ctx, spec, Options{}); err == nil {
			t.Errorf("Open(%q) succeeded", spec)
		} else if !strings.Contains(err.Error(), "embedded") {
			t.Errorf("Open(%q): %v; want an error that names the kinds", spec, err)
		}
	}
}
