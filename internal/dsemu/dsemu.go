// Package dsemu runs the real Firestore emulator in Datastore mode for
// tests: the one the Google Cloud SDK installs, found with `gcloud info`.
//
// A test binary starts one emulator, on first use, with Shared, and stops
// it from TestMain with Main. Tests isolate their data by project: the
// emulator accepts any project id, and ProjectID gives a new one each call.
// Without the emulator, Shared skips the test, unless the environment has
// CI=true: there a missing emulator fails it.
package dsemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
)

// Binary is the emulator's path inside the SDK root.
const Binary = "platform/cloud-firestore-emulator/cloud_firestore_emulator"

// StartTimeout bounds how long Start waits for the emulator to answer.
const StartTimeout = 90 * time.Second

// ErrNotInstalled: gcloud or the emulator component is missing.
var ErrNotInstalled = errors.New("dsemu: the Firestore emulator is not installed")

// Emulator is a running emulator.
type Emulator struct {
	host string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	out  *testutil.Buffer
	// stdin stays open while this process runs (see Start).
	stdin io.WriteCloser
}

// Host is the emulator's address, the value for DATASTORE_EMULATOR_HOST.
func (e *Emulator) Host() string { return e.host }

// Find returns the emulator binary's path: the SDK root comes from
// `gcloud info --format=value(installation.sdk_root)`. Its error wraps
// ErrNotInstalled if gcloud or the component is missing.
func Find(ctx context.Context) (string, error) {
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		return "", fmt.Errorf("%w: no gcloud on PATH", ErrNotInstalled)
	}
	out, err := exec.CommandContext(ctx, gcloud, "info", "--format=value(installation.sdk_root)").Output()
	if err != nil {
		return "", fmt.Errorf("%w: gcloud info: %v", ErrNotInstalled, err)
	}
	root := strings.TrimSpace(string(out))
	if root == "" {
		return "", fmt.Errorf("%w: gcloud info gives no SDK root", ErrNotInstalled)
	}
	bin := filepath.Join(root, Binary)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%w: %v (install it with: gcloud components install cloud-firestore-emulator)", ErrNotInstalled, err)
	}
	return bin, nil
}

// Start starts the emulator on 127.0.0.1 and a free port, and returns once
// it answers HTTP requests, polling it until StartTimeout.
func Start(ctx context.Context) (*Emulator, error) {
	bin, err := Find(ctx)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	e := &Emulator{host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{}), out: &testutil.Buffer{}}
	// A shell runs the emulator and waits on a pipe from this process; when
	// the pipe closes (this process exited, even killed or timed out), it
	// kills its process group: the emulator script and its Java child.
	e.cmd = exec.Command("bash", "-c", `"$0" "$@" & read -r _; kill -KILL 0`,
		bin, "--database-mode=datastore-mode", "--host=127.0.0.1", "--port="+strconv.Itoa(port))
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	// A group of its own, which Stop kills.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := e.cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("dsemu: %w", err)
	}
	e.stdin = stdin
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("dsemu: starting %s: %w", bin, err)
	}
	go func() {
		_ = e.cmd.Wait()
		close(e.done)
	}()
	if err := e.waitReady(ctx); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dsemu: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls the emulator's HTTP root until it answers 200.
func (e *Emulator) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.host+"/", nil)
		if err != nil {
			return fmt.Errorf("dsemu: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-e.done:
			return fmt.Errorf("dsemu: the emulator exited before answering on %s:\n%s", e.host, e.out.String())
		case <-ctx.Done():
			return fmt.Errorf("dsemu: the emulator did not answer on %s within %v:\n%s", e.host, StartTimeout, e.out.String())
		case <-tick.C:
		}
	}
}

// Stop kills the emulator's process group and waits for the process to
// exit. Stopping twice is allowed.
func (e *Emulator) Stop() {
	if e.cmd.Process != nil {
		// The negative pid is the group Start made.
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-e.done
}

// Output is what the emulator printed so far.
func (e *Emulator) Output() string { return e.out.String() }

var shared struct {
	once sync.Once
	emu  *Emulator
	err  error
}

// Shared returns the test binary's emulator, started on first use. If the
// emulator is not installed it skips t, or fails it when CI=true; any other
// start failure fails t.
func Shared(t testing.TB) *Emulator {
	t.Helper()
	shared.once.Do(func() {
		shared.emu, shared.err = Start(context.Background())
	})
	SkipOrFail(t, shared.err)
	return shared.emu
}

// SkipOrFail does nothing if err is nil. If err wraps ErrNotInstalled it
// skips t, or fails it when the environment has CI=true; any other error
// fails t.
func SkipOrFail(t testing.TB, err error) {
	t.Helper()
	switch {
	case err == nil:
	case errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "true":
		t.Fatalf("CI=true and the Cloud Datastore tests cannot run: %v", err)
	case errors.Is(err, ErrNotInstalled):
		t.Skipf("skipping the Cloud Datastore tests: %v", err)
	default:
		t.Fatal(err)
	}
}

// Main runs the tests and then stops the emulator Shared started, if any:
// call os.Exit(dsemu.Main(m)) from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.emu != nil {
		shared.emu.Stop()
	}
	return code
}

var projects atomic.Int64

// ProjectID returns a project id no other call in this process returned,
// to isolate one store's data in the shared emulator.
func ProjectID() string {
	return fmt.Sprintf("test-%d-%d", os.Getpid(), projects.Add(1))
}
