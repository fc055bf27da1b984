package scheduler

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDependencies proves the core stays pure: besides the standard library
// it may import only the protobuf runtime and its own state messages.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/qscheduler-swarming/qscheduler-swarming/"
	allowed := func(p string) bool {
		return p == module+"scheduler" ||
			p == module+"proto/qscheduler/state/v1" ||
			strings.HasPrefix(p, "google.golang.org/protobuf/")
	}
	var n int
	for _, p := range strings.Fields(string(out)) {
		n++
		if !allowed(p) {
			t.Errorf("scheduler depends on %s; it may import only the standard library, google.golang.org/protobuf and proto/qscheduler/state/v1", p)
		}
	}
	if n == 0 {
		t.Fatal("go list printed no packages; the check checked nothing")
	}
}

// TestNoClockNoGoroutines: the core never reads a clock or draws random
// numbers (SCHEDULER.md §1.6), and starts no goroutine but entryFeed's, which
// ends before AssignTasks returns (DESIGN.md: none that outlive a call; its
// test runs under the race detector).
func TestNoClockNoGoroutines(t *testing.T) {
	allowedGo := map[string]int{"reconciler.go": 1} // file: its goroutine statements
	seenGo := map[string]int{}
	goStmt := regexp.MustCompile(`\bgo func\b|^\s*go [a-zA-Z_.]+\(`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := regexp.MustCompile(`time\.(Now|Since|Until|Sleep|After|Tick|NewTimer|NewTicker)\(|"math/rand|"crypto/rand|\bgo func\b|^\s*go [a-zA-Z_.]+\(`)
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for i, line := range strings.Split(string(data), "\n") {
			code, _, _ := strings.Cut(line, "//")
			if goStmt.MatchString(code) {
				seenGo[f]++
				if seenGo[f] <= allowedGo[f] {
					continue
				}
			}
			if forbidden.MatchString(code) {
				t.Errorf("%s:%d: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
	for f, n := range allowedGo {
		if seenGo[f] != n {
			t.Errorf("%s starts %d goroutines, want the %d this test allows: update the test with the change", f, seenGo[f], n)
		}
	}
}
