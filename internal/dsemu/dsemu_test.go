package dsemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
)

// TestStartStop: the emulator answers on 127.0.0.1 once Start returns, and
// once Stop returns nothing keeps listening on its port (the Java child
// went with the script that started it).
func TestStartStop(t *testing.T) {
	started := time.Now()
	e, err := Start(context.Background())
	SkipOrFail(t, err)
	t.Logf("the emulator answered on %s after %v", e.Host(), time.Since(started).Round(time.Millisecond))
	c, err := net.Dial("tcp", e.Host())
	if err != nil {
		e.Stop()
		t.Fatalf("Start returned, yet %s refuses connections: %v", e.Host(), err)
	}
	c.Close()
	e.Stop()
	e.Stop()
	testutil.WaitFor(t, "the emulator's port to close", func() bool {
		c, err := net.DialTimeout("tcp", e.Host(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// TestMissingEmulator runs this test binary again without gcloud on PATH:
// a test that needs the emulator skips, saying why, unless CI=true, where
// it fails.
func TestMissingEmulator(t *testing.T) {
	if os.Getenv("DSEMU_CHILD") == "1" {
		Shared(t)
		t.Log("the emulator started without gcloud on PATH")
		return
	}
	for _, tc := range []struct{ ci, want string }{{"", "--- SKIP"}, {"false", "--- SKIP"}, {"true", "--- FAIL"}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingEmulator$", "-test.v")
		cmd.Env = append(os.Environ(), "DSEMU_CHILD=1", "PATH="+t.TempDir(), "CI="+tc.ci)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "no gcloud on PATH") {
			t.Errorf("CI=%q without gcloud: want %q and the reason in the output, got:\n%s", tc.ci, tc.want, out)
		}
	}
}

// TestOrphan: an emulator whose test process dies without stopping it
// (a test timeout, a kill) goes with it.
func TestOrphan(t *testing.T) {
	if os.Getenv("DSEMU_CHILD") == "orphan" {
		e, err := Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("HOST", e.Host())
		os.Exit(0) // no Stop
	}
	if _, err := Find(context.Background()); err != nil {
		SkipOrFail(t, err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOrphan$")
	cmd.Env = append(os.Environ(), "DSEMU_CHILD=orphan")
	out, err := cmd.CombinedOutput()
	_, host, ok := strings.Cut(string(out), "HOST ")
	if err != nil || !ok {
		t.Fatalf("the child test: %v\n%s", err, out)
	}
	host = strings.TrimSpace(strings.SplitN(host, "\n", 2)[0])
	testutil.WaitFor(t, "the orphaned emulator's port to close", func() bool {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

func TestMain(m *testing.M) { os.Exit(Main(m)) }
