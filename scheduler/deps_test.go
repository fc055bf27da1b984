package scheduler

import (
	"go/ast"
	"go/parser"
	"go/token"
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

// TestNoClockNoGoroutines: the core never reads a clock, draws random
// numbers (SCHEDULER.md §1.6) or starts a goroutine (no go statement at
// all): every call does its work on the caller's goroutine and returns.
func TestNoClockNoGoroutines(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := regexp.MustCompile(`time\.(Now|Since|Until|Sleep|After|Tick|NewTimer|NewTicker)\(|"math/rand|"crypto/rand`)
	checked := 0
	fset := token.NewFileSet()
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
			if forbidden.MatchString(code) {
				t.Errorf("%s:%d: %s", f, i+1, strings.TrimSpace(line))
			}
		}
		file, err := parser.ParseFile(fset, f, data, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if g, ok := n.(*ast.GoStmt); ok {
				t.Errorf("%s: a go statement; the core starts no goroutine", fset.Position(g.Pos()))
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}
