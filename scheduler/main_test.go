package scheduler

import (
	"flag"
	"os"
	"testing"
)

// TestMain sets the number of random cases of the property tests (rapid's
// -rapid.checks): 300 by default, enough to catch most regressions in a run
// of `go test ./scheduler` that takes seconds, and 3,000 when the
// environment variable QSCHEDULER_SOAK is 1, the long soak CI runs
// (TestInvariantsUnderRandomOperations alone takes about 100 s at 3,000 on
// two cores). -rapid.checks on the command line wins over both.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "rapid.checks" {
			explicit = true
		}
	})
	if !explicit {
		checks := "300"
		if soak() {
			checks = "3000"
		}
		if err := flag.Set("rapid.checks", checks); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// soak reports whether the long tests run (QSCHEDULER_SOAK=1).
func soak() bool { return os.Getenv("QSCHEDULER_SOAK") == "1" }
