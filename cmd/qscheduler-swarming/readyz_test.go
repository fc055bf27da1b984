package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"github.com/qscheduler-swarming/qscheduler-swarming/state"
)

// TestReadyzReportsPoolsDown: /readyz answers 503 naming a pool that is
// down after a failed commit, and 200 once its state is restored.
func TestReadyzReportsPoolsDown(t *testing.T) {
	ctx := context.Background()
	fs := faultstore.New(memory.New(memory.Options{}))
	p := state.New(fs, nil, state.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RestoreBackoff: time.Millisecond, RestoreBackoffMax: time.Millisecond})
	defer p.Close()
	if err := p.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.CreatePool(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	var ready atomic.Bool
	ready.Store(true)
	h := readyz(&ready, fs, p)
	get := func() (int, string) {
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest("GET", "/readyz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != 200 {
		t.Fatalf("/readyz = %d %s before any failure", code, body)
	}
	fs.FailLoads(-1)
	fs.FailCommits(faultstore.Error)
	n := scheduler.Notification{Kind: scheduler.NotifyWaiting, Time: time.Unix(1, 0), Task: scheduler.Task{ID: "t", EnqueueTime: time.Unix(1, 0)}}
	if err := p.Notify(ctx, "lab", state.NotifyInput{Items: []scheduler.Notification{n}}); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("Notify with a failing commit: %v", err)
	}
	if code, body := get(); code != 503 || !strings.Contains(body, `pool "lab" down since`) || !strings.Contains(body, "injected failure") {
		t.Errorf("/readyz = %d %q while lab is down, want 503 naming lab and the error", code, body)
	}
	fs.FailLoads(0)
	testutil.WaitFor(t, "pool lab to be restored", func() bool { return len(p.Outages()) == 0 })
	if code, body := get(); code != 200 {
		t.Errorf("/readyz = %d %s after lab was restored", code, body)
	}
}
