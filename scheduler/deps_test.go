package scheduler

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDependencies proves the core stays pure: besides the standard library
// package scheduler and its internal packages may import only the protobuf
// runtime, the state messages and each other.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".", "./internal/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/qscheduler-swarming/qscheduler-swarming/"
	allowed := func(p string) bool {
		return p == module+"scheduler" ||
			strings.HasPrefix(p, module+"scheduler/internal/") ||
			p == module+"proto/qscheduler/state/v1" ||
			strings.HasPrefix(p, "google.golang.org/protobuf/")
	}
	var n, internal int
	for _, p := range strings.Fields(string(out)) {
		n++
		if strings.HasPrefix(p, module+"scheduler/internal/") {
			internal++
		}
		if !allowed(p) {
			t.Errorf("%s is imported by the core; it may import only the standard library, google.golang.org/protobuf, proto/qscheduler/state/v1 and scheduler/internal/...", p)
		}
	}
	if n == 0 || internal == 0 {
		t.Fatalf("go list printed %d packages, %d of them internal; the check checked nothing", n, internal)
	}
}

// coreSources lists the non-test Go files of package scheduler and of every
// package under internal/.
func coreSources(t *testing.T) []string {
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && path != "internal" && !strings.HasPrefix(path, "internal"+string(filepath.Separator)) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestNoClockNoGoroutines: the core (package scheduler and its internal
// packages) never reads a clock, draws random numbers (algorithm.md §1.6)
// or starts a goroutine (no go statement at all): every call does its work
// on the caller's goroutine and returns.
func TestNoClockNoGoroutines(t *testing.T) {
	files := coreSources(t)
	forbidden := regexp.MustCompile(`time\.(Now|Since|Until|Sleep|After|Tick|NewTimer|NewTicker)\(|"math/rand|"crypto/rand`)
	checked := 0
	fset := token.NewFileSet()
	internal := 0
	for _, f := range files {
		if strings.HasPrefix(f, "internal") {
			internal++
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
	if checked == 0 || internal == 0 {
		t.Fatalf("%d source files checked, %d of them internal", checked, internal)
	}
}
