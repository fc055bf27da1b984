package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// startServer builds cmd/qscheduler-swarming, runs it on a memory store on
// free ports and waits until /readyz answers 200.
func startServer(t *testing.T) (grpcAddr, httpAddr string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "qscheduler-swarming")
	build := exec.Command("go", "build", "-o", bin, "./cmd/qscheduler-swarming")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--store=memory", "--eventlog=none", "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	select {
	case a := <-addrs:
		grpcAddr, httpAddr = a[0], a[1]
	case <-exited:
		t.Fatal("the server exited before serving")
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not log its addresses")
	}
	// The server is an external process: poll /readyz, briefly.
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return grpcAddr, httpAddr
			}
		}
		if i == 200 {
			t.Fatalf("/readyz not 200 after 2 s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestShortLoad(t *testing.T) {
	grpcAddr, httpAddr := startServer(t)
	for _, transport := range []string{"prpc", "grpc"} {
		t.Run(transport, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.Transport, cfg.HTTPAddr, cfg.GRPCAddr = transport, httpAddr, grpcAddr
			cfg.Pool = "qsload-" + transport
			cfg.Bots, cfg.Backlog, cfg.BacklogBatch = 20, 200, 50
			cfg.Duration = 2 * time.Second
			cfg.AssignRate, cfg.NotifyRate, cfg.NotifyBatch = 50, 10, 5
			cfg.Concurrency = 8
			cfg.ConfirmDelay, cfg.MedianRuntime = 200*time.Millisecond, 300*time.Millisecond
			cfg.Cron, cfg.Report = 500*time.Millisecond, time.Second
			cfg.Out = testWriter{t}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			sum, err := run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			sum.Print(&b)
			t.Log(b.String())

			if sum.Backlog == nil || sum.Backlog.Tasks != 200 || sum.Backlog.Failed != 0 {
				t.Errorf("backlog = %+v, want 200 tasks loaded", sum.Backlog)
			}
			a := sum.Assignments
			if a.HandedOut == 0 {
				t.Fatal("no assignment was handed out")
			}
			if a.Confirmed+a.AbortedBeforeConfirm != a.HandedOut || a.Unconfirmed != 0 {
				t.Errorf("assignments %+v: not every assignment was confirmed RUNNING", a)
			}
			if a.Completed == 0 {
				t.Errorf("no task completed (runtimes are 300 ms): %+v", a)
			}
			if a.DoubleAssigned != 0 || a.ForeignBot != 0 {
				t.Errorf("assignments %+v: a task went to two bots, or to a bot that did not ask", a)
			}
			if sum.ErrorCancels != 0 {
				t.Errorf("%d ERROR cancellations: %q", sum.ErrorCancels, sum.ErrorSamples)
			}
			seen := map[string]RPCStats{}
			for _, r := range sum.RPCs {
				seen[r.Kind] = r
				if len(r.Errors) != 0 || r.OK != r.Calls {
					t.Errorf("%s: %d calls, %d ok, errors %v", r.Kind, r.Calls, r.OK, r.Errors)
				}
			}
			for _, k := range []string{kindAssign, kindNotifyBack, kindNotifyNew, kindNotifyStatus, kindCancel, kindCallbacks} {
				r := seen[k]
				if r.Calls == 0 {
					t.Errorf("%s: no calls", k)
					continue
				}
				if r.P50Ms <= 0 || r.P99Ms < r.P90Ms || r.P90Ms < r.P50Ms || r.MaxMs < r.P99Ms {
					t.Errorf("%s: percentiles p50 %v p90 %v p99 %v max %v are not positive and ordered", k, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs)
				}
			}
			if sum.AssignTicks.Started == 0 || sum.NewItems == 0 {
				t.Errorf("nothing was started: %+v, %d new items", sum.AssignTicks, sum.NewItems)
			}
		})
	}
}

// fakeSwarming answers like a server that hands out fixed assignments and
// records every notification.
type fakeSwarming struct {
	swarmingv1.ExternalSchedulerClient // unused methods panic
	mu                                 sync.Mutex
	assign                             map[string]string // bot -> task
	items                              []*swarmingv1.NotifyTasksItem
}

func (f *fakeSwarming) AssignTasks(_ context.Context, req *swarmingv1.AssignTasksRequest, _ ...grpc.CallOption) (*swarmingv1.AssignTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &swarmingv1.AssignTasksResponse{}
	for _, b := range req.IdleBots {
		if t, ok := f.assign[b.BotId]; ok {
			resp.Assignments = append(resp.Assignments, &swarmingv1.TaskAssignment{BotId: b.BotId, TaskId: t})
		}
	}
	return resp, nil
}

func (f *fakeSwarming) NotifyTasks(_ context.Context, req *swarmingv1.NotifyTasksRequest, _ ...grpc.CallOption) (*swarmingv1.NotifyTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items = append(f.items, req.Notifications...)
	return &swarmingv1.NotifyTasksResponse{}, nil
}

// take returns the notifications since the last call, by task; a task
// notified twice is an error.
func (f *fakeSwarming) take(t *testing.T) map[string]*swarmingv1.TaskSpec {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]*swarmingv1.TaskSpec{}
	for _, it := range f.items {
		if prev, dup := out[it.Task.Id]; dup {
			t.Errorf("%s notified twice in one tick: %v, then %v", it.Task.Id, prev.State, it.Task.State)
		}
		out[it.Task.Id] = it.Task
	}
	f.items = nil
	return out
}

// TestCancellations: a PREEMPTED cancellation of a running task is reported
// KILLED and frees the bot; an ERROR one is counted once and acknowledged.
func TestCancellations(t *testing.T) {
	cfg := defaultConfig()
	cfg.TaskPrefix, cfg.Out = "", io.Discard
	f := &fakeSwarming{assign: map[string]string{}}
	s := newSim(cfg, &clients{sw: f})
	s.w = benchdata.Lab(1, 2, 3)
	s.initBots()
	s.steps = []*stepCounters{{rec: newRecorder()}}
	s.addTasks(s.w.Tasks, func(t *benchdata.Task) time.Time { return t.Enqueue }, timestamppb.Now())
	ctx := context.Background()

	b0, b1 := s.bots[0].id, s.bots[1].id
	f.assign[b0], f.assign[b1] = "task-000000", "task-000001"
	for _, b := range []int{s.popIdle(), s.popIdle()} {
		s.assign(ctx, assignJob{bot: b})
	}
	s.statusTick(ctx, false)
	got := f.take(t)
	for _, id := range []string{"task-000000", "task-000001"} {
		if got[id].GetState() != swarmingv1.TaskSpec_RUNNING {
			t.Fatalf("%s: confirmation %v, want RUNNING", id, got[id])
		}
	}
	if s.bots[0].state != botRunning || s.bots[1].state != botRunning {
		t.Fatalf("bots not running: %v %v", s.bots[0].state, s.bots[1].state)
	}

	reason := swarmingv1.GetCancellationsResponse_Cancellation_PREEMPTED
	errReason := swarmingv1.GetCancellationsResponse_Cancellation_ERROR
	cs := []*swarmingv1.GetCancellationsResponse_Cancellation{
		{BotId: b0, TaskId: "task-000000", Reason: reason},
		{BotId: b1, TaskId: "task-999999", Reason: reason}, // stale: b1 runs task-000001
		{TaskId: "task-000002", Reason: errReason, ExtraInfo: "bad"},
	}
	s.cancellations(cs)
	s.cancellations(cs[2:]) // repeated until acknowledged: counted once
	s.statusTick(ctx, false)
	got = f.take(t)
	if k := got["task-000000"]; k.GetState() != swarmingv1.TaskSpec_KILLED || k.BotId != b0 {
		t.Errorf("preempted task reported as %v, want KILLED on %s", k, b0)
	}
	if k := got["task-000002"]; k.GetState() != swarmingv1.TaskSpec_CANCELED {
		t.Errorf("errored pending task reported as %v, want CANCELED", k)
	}
	if _, ok := got["task-000001"]; ok {
		t.Errorf("the stale cancellation touched task-000001: %v", got["task-000001"])
	}
	if s.bots[0].state != botIdle || s.bots[1].state != botRunning {
		t.Errorf("bot states %v %v, want idle and running", s.bots[0].state, s.bots[1].state)
	}
	if s.preempt.Load() != 1 || s.stale.Load() != 1 || s.errCancels.Load() != 1 {
		t.Errorf("preemptions %d stale %d errors %d, want 1 1 1", s.preempt.Load(), s.stale.Load(), s.errCancels.Load())
	}

	// Preempted before its confirmation went out: aborted, never confirmed.
	f.assign[b0] = "task-000002"
	delete(f.assign, b1)
	s.assign(ctx, assignJob{bot: s.popIdle()})
	s.cancellations([]*swarmingv1.GetCancellationsResponse_Cancellation{{BotId: b0, TaskId: "task-000002", Reason: reason}})
	s.statusTick(ctx, false)
	got = f.take(t)
	if k := got["task-000002"]; k.GetState() != swarmingv1.TaskSpec_KILLED {
		t.Errorf("aborted assignment reported as %v, want KILLED only", k)
	}
	if s.aborted.Load() != 1 || s.conf.Load() != 2 || s.handedOut.Load() != 3 {
		t.Errorf("aborted %d confirmed %d handed out %d, want 1 2 3", s.aborted.Load(), s.conf.Load(), s.handedOut.Load())
	}
}

// countingScheduler counts the AssignTasks calls it answers.
type countingScheduler struct {
	swarmingv1.UnimplementedExternalSchedulerServer
	calls atomic.Int32
}

func (c *countingScheduler) AssignTasks(context.Context, *swarmingv1.AssignTasksRequest) (*swarmingv1.AssignTasksResponse, error) {
	c.calls.Add(1)
	return &swarmingv1.AssignTasksResponse{}, nil
}

// TestAddressList: with several servers listed, calls go to each in turn,
// over both transports.
func TestAddressList(t *testing.T) {
	var http1, http2, grpc1, grpc2 countingScheduler
	startPRPC := func(es *countingScheduler) string {
		s := prpc.NewServer()
		swarmingv1.RegisterExternalSchedulerServer(s, es)
		ts := httptest.NewServer(s)
		t.Cleanup(ts.Close)
		return strings.TrimPrefix(ts.URL, "http://")
	}
	startGRPC := func(es *countingScheduler) string {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		swarmingv1.RegisterExternalSchedulerServer(s, es)
		go s.Serve(lis)
		t.Cleanup(s.Stop)
		return lis.Addr().String()
	}
	cfg := defaultConfig()
	cfg.HTTPAddr = startPRPC(&http1) + "," + startPRPC(&http2)
	cfg.GRPCAddr = startGRPC(&grpc1) + "," + startGRPC(&grpc2)
	for _, tc := range []struct {
		transport string
		a, b      *countingScheduler
	}{{"prpc", &http1, &http2}, {"grpc", &grpc1, &grpc2}} {
		cfg.Transport = tc.transport
		c, err := dial(cfg, cfg.HTTPAddr, cfg.GRPCAddr, false)
		if err != nil {
			t.Fatal(err)
		}
		for range 6 {
			if _, err := c.sw.AssignTasks(context.Background(), &swarmingv1.AssignTasksRequest{SchedulerId: "p"}); err != nil {
				t.Fatalf("%s: %v", tc.transport, err)
			}
		}
		c.close()
		if a, b := tc.a.calls.Load(), tc.b.calls.Load(); a != 3 || b != 3 {
			t.Errorf("%s: the two servers took %d and %d of 6 calls, want 3 each", tc.transport, a, b)
		}
	}
}
