package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/qscheduler-swarming/qscheduler-swarming/"

// TestImportRules checks the package rules with go list -deps (as
// Tailscale's deptest does): the core is pure, the pipeline knows only
// interfaces, the stores and sinks know nothing of the pipeline or the
// handlers, the handlers know the pipeline and not the store, the pRPC
// transport knows neither the handlers nor what is behind them, and nothing
// imports cmd.
func TestImportRules(t *testing.T) {
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"state", []string{module + "nodestore/embedded", module + "nodestore/memory", module + "nodestore/datastore", module + "eventlog", module + "frontend", "google.golang.org/grpc", "go.etcd.io/bbolt", "cloud.google.com/"}},
		{"nodestore/...", []string{module + "frontend", module + "state", module + "eventlog"}},
		{"eventlog/...", []string{module + "frontend", module + "state", module + "nodestore"}},
		{"frontend/...", []string{module + "nodestore/embedded", module + "nodestore/memory", module + "nodestore/datastore", module + "eventlog", "go.etcd.io/bbolt"}},
		{"prpc", []string{module + "frontend", module + "state", module + "nodestore", module + "scheduler"}},
		{"scheduler", []string{module + "state", module + "frontend", module + "nodestore", module + "eventlog", "google.golang.org/grpc"}},
	} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../../"+tc.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", tc.pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 {
			t.Fatalf("go list %s printed nothing", tc.pkg)
		}
		for _, d := range deps {
			for _, f := range tc.forbidden {
				if d == f || strings.HasPrefix(d, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) {
					t.Errorf("%s depends on %s", tc.pkg, d)
				}
			}
		}
	}
	// The handlers reach the store only through the pipeline.
	direct, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", "../../frontend/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, direct)
	}
	for _, d := range strings.Fields(string(direct)) {
		if strings.HasPrefix(d, module+"nodestore") {
			t.Errorf("frontend imports %s directly", d)
		}
	}
	imp, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}} {{join .TestImports \" \"}}", "../../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, imp)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(imp)), "\n") {
		f := strings.Fields(line)
		for _, d := range f[1:] {
			if strings.HasPrefix(d, module+"cmd/") {
				t.Errorf("%s imports %s: nothing may import cmd", f[0], d)
			}
		}
	}
}
