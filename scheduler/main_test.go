package scheduler

import (
	"flag"
	"os"
	"testing"
)

// TestMain raises rapid's default number of cases so that the property tests
// cover thousands of random states in every `go test` run; -rapid.checks on
// the command line still wins.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			explicit = true
		}
	})
	if !explicit {
		if err := flag.Set("rapid.checks", "3000"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
