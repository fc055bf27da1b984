package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsemu"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsproxy"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/datastore"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
)

// TestDatastoreFaults runs a pipeline on the Cloud Datastore store, whose
// calls go through a proxy that injects faults in front of the real
// emulator. The store retries a commit 3 times in all.
func TestDatastoreFaults(t *testing.T) {
	emu, err := dsemu.Start(context.Background())
	dsemu.SkipOrFail(t, err)
	t.Cleanup(emu.Stop)

	// open returns a pipeline with pool "p" holding the waiting task
	// "kept" (committed), its store, and the proxy in front of it.
	open := func(t *testing.T) (*Pipeline, *datastore.Store, *dsproxy.Proxy, *testutil.Buffer) {
		t.Helper()
		px, err := dsproxy.Start(emu.Host())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(px.Close)
		t.Setenv("DATASTORE_EMULATOR_HOST", px.Addr())
		s, err := datastore.Open(context.Background(), dsemu.ProjectID(), "", datastore.Options{MaintainEvery: -1, Attempts: 3, RetryDelay: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		log := &testutil.Buffer{}
		p := newPipeline(t, s, nil, Options{Logger: slog.New(slog.NewTextHandler(log, nil))})
		ctx := context.Background()
		if err := p.CreatePool(ctx, "p"); err != nil {
			t.Fatal(err)
		}
		if err := p.Notify(ctx, "p", NotifyInput{Items: []scheduler.Notification{waiting("kept", 1)}}); err != nil {
			t.Fatal(err)
		}
		return p, s, px, log
	}
	// same checks that the pipeline's reads give the state the store
	// holds, at generation gen.
	same := func(t *testing.T, p *Pipeline, s *datastore.Store, gen int64) {
		t.Helper()
		live, err := stateOf(p, "p")
		if err != nil {
			t.Fatalf("reading the pool: %v", err)
		}
		stored, got, err := s.Load(context.Background(), "p")
		if err != nil || got != gen {
			t.Fatalf("Load: generation %d, %v; want %d", got, err, gen)
		}
		if diff := cmp.Diff(live, stored, protocmp.Transform()); diff != "" {
			t.Errorf("the live state differs from the stored one (-live +stored):\n%s", diff)
		}
	}
	poll := func(p *Pipeline, bot string) ([]scheduler.TaskAssignment, error) {
		return p.Assign(context.Background(), "p", AssignInput{Time: t0.Add(4 * time.Second), Bots: []scheduler.IdleWorker{{ID: scheduler.WorkerID(bot), Labels: []string{"pool:x"}}}})
	}

	// Faults that clear within the attempts, and an answer lost after the
	// commit landed, are invisible: the caller is answered, the batch is
	// committed once.
	for _, tc := range []struct {
		times int
		fault dsproxy.Fault
	}{
		{2, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Aborted}},
		{2, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.Unavailable}},
		{2, dsproxy.Fault{Action: dsproxy.Fail, Code: codes.DeadlineExceeded}},
		{1, dsproxy.Fault{Action: dsproxy.Lose, Code: codes.Unavailable}},
	} {
		t.Run(fmt.Sprintf("%v-%v-cleared", tc.fault.Action, tc.fault.Code), func(t *testing.T) {
			p, s, px, _ := open(t)
			px.Inject(dsproxy.Rule{Method: dsproxy.Commit, Times: tc.times, Fault: tc.fault})
			if err := p.Notify(context.Background(), "p", NotifyInput{Items: []scheduler.Notification{waiting("new", 2)}}); err != nil {
				t.Fatalf("Notify through %d faults: %v", tc.times, err)
			}
			if n := px.Pending(); n != 0 {
				t.Fatalf("%d faults not used", n)
			}
			same(t, p, s, 3)
			st, _ := stateOf(p, "p")
			if got := mentions(st, "kept", "new"); len(got) != 2 {
				t.Errorf("the pool holds %v of kept and new, want both", got)
			}
			if got := countersOf(t, p, "p").FailedCommits; got != 0 {
				t.Errorf("%d failed commits counted, want 0", got)
			}
		})
	}

	// A fault that outlasts the attempts fails the batch's callers with
	// Unavailable and leaves the pool at its last committed generation,
	// for the pipeline's reads, Load and ReadLog; once the fault clears,
	// the same poll is served from the committed state.
	for _, code := range []codes.Code{codes.Aborted, codes.Unavailable} {
		t.Run(fmt.Sprintf("%v-forever", code), func(t *testing.T) {
			p, s, px, log := open(t)
			px.Inject(dsproxy.Rule{Method: dsproxy.Commit, Fault: dsproxy.Fault{Action: dsproxy.Fail, Code: code}})
			out, err := poll(p, "bot")
			if !errors.Is(err, ErrUnavailable) || len(out) > 0 {
				t.Fatalf("poll while every commit fails: %v, %v; want ErrUnavailable and no task", out, err)
			}
			px.Clear()
			same(t, p, s, 2)
			st, _ := stateOf(p, "p")
			if len(st.Workers) != 0 || len(mentions(st, "kept")) != 1 {
				t.Errorf("after the failed batch the pool has workers %v and kept waiting: %v", st.Workers, mentions(st, "kept"))
			}
			if ds, gen, err := s.ReadLog(context.Background(), "p", 2); err != nil || gen != 2 || len(ds) != 0 {
				t.Errorf("ReadLog after 2: %d entries up to %d, %v; want none", len(ds), gen, err)
			}
			if got := countersOf(t, p, "p").FailedCommits; got != 1 {
				t.Errorf("%d failed commits counted, want 1", got)
			}
			if !strings.Contains(log.String(), "batch not committed") || !strings.Contains(log.String(), "gave up after 3 attempts") {
				t.Errorf("the failure was not logged with the store's error:\n%s", log)
			}
			out, err = poll(p, "bot")
			if err != nil || len(out) != 1 || out[0].Task != "kept" {
				t.Fatalf("poll once the fault cleared: %v, %v; want kept", out, err)
			}
			same(t, p, s, 3)
		})
	}
}
