package main

// End-to-end tests: the real service (run) on 127.0.0.1 with ports chosen at
// run time, played against as Swarming and operators would, over pRPC with
// Swarming's headers and binary bodies, and over native gRPC.

import (
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/dsemu"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type testServer struct {
	grpcAddr, httpAddr string
	conn               *grpc.ClientConn
	log                *testutil.Buffer
	// stop shuts the server down as SIGTERM does and returns what run
	// returned; the test's cleanup calls it if the test did not.
	stop func() error
}

// clients are the three services over one transport.
type clients struct {
	swarming swarmingv1.ExternalSchedulerClient
	admin    qschedulerv1.QSchedulerAdminClient
	view     qschedulerv1.QSchedulerViewClient
}

func noEnv(string) string { return "" }

// startServer runs the service in-process and waits, through the gRPC
// health service, until it serves.
func startServer(t *testing.T, args ...string) *testServer {
	t.Helper()
	return startServerOn(t, nil, args...)
}

// startServerOn is startServer on the given store (nil: the one the flags
// name, memory by default).
func startServerOn(t *testing.T, store nodestore.Store, args ...string) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{log: &testutil.Buffer{}}
	addrs := make(chan [2]string, 1)
	done := make(chan error, 1)
	all := append([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--store=memory", "--eventlog=none", "--log-level=debug"}, args...)
	listening := func(g, h string) { addrs <- [2]string{g, h} }
	go func() {
		if store == nil {
			done <- run(ctx, all, noEnv, io.Discard, ts.log, listening)
			return
		}
		c, err := parseFlags(all, noEnv, io.Discard, io.Discard)
		if err != nil {
			done <- err
			return
		}
		log, err := newLogger(c, ts.log)
		if err != nil {
			done <- err
			return
		}
		events, err := openEventLog(c.eventLog, "test", log)
		if err != nil {
			done <- err
			return
		}
		done <- serve(ctx, c, log, store, events, time.Now(), listening)
	}()
	select {
	case a := <-addrs:
		ts.grpcAddr, ts.httpAddr = a[0], a[1]
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v\n%s", err, ts.log)
	}
	var stopped error
	var once sync.Once
	ts.stop = func() error {
		once.Do(func() {
			cancel()
			stopped = <-done
		})
		return stopped
	}
	t.Cleanup(func() {
		if err := ts.stop(); err != nil {
			t.Errorf("server exited with %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", ts.log)
		}
	})
	conn, err := grpc.NewClient(ts.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ts.conn = conn
	waitServing(t, conn)
	return ts
}

func waitServing(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := w.Recv()
		if err != nil {
			t.Fatalf("health watch: %v", err)
		}
		if r.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
	}
}

func (ts *testServer) grpcClients() clients {
	return clients{
		swarming: swarmingv1.NewExternalSchedulerClient(ts.conn),
		admin:    qschedulerv1.NewQSchedulerAdminClient(ts.conn),
		view:     qschedulerv1.NewQSchedulerViewClient(ts.conn),
	}
}

// prpcClients speak pRPC as Swarming does: binary bodies, its headers.
func (ts *testServer) prpcClients() clients {
	c := prpc.NewClient("http://"+ts.httpAddr, &http.Client{Timeout: 30 * time.Second})
	return clients{
		swarming: swarmingv1.NewExternalSchedulerClient(c),
		admin:    qschedulerv1.NewQSchedulerAdminClient(c),
		view:     qschedulerv1.NewQSchedulerViewClient(c),
	}
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec float64) *timestamppb.Timestamp {
	return timestamppb.New(base.Add(time.Duration(sec * float64(time.Second))))
}

func pendingTask(id, account string, slices ...[]string) *swarmingv1.TaskSpec {
	t := &swarmingv1.TaskSpec{Id: id, State: swarmingv1.TaskSpec_PENDING, EnqueuedTime: at(0), Tags: []string{"pool:lab"}}
	if account != "" {
		t.Tags = append(t.Tags, "qs_account:"+account)
	}
	for _, s := range slices {
		t.Slices = append(t.Slices, &swarmingv1.SliceSpec{Dimensions: s})
	}
	return t
}

// must(f())(t) fails the test if f returned an error, else gives its value.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("error %v, want code %v", err, code)
		return
	}
	if substr != "" && !strings.Contains(status.Convert(err).Message(), substr) {
		t.Errorf("error %q does not mention %q", status.Convert(err).Message(), substr)
	}
}

func notify(t *testing.T, c clients, pool string, sec float64, tasks ...*swarmingv1.TaskSpec) {
	t.Helper()
	req := &swarmingv1.NotifyTasksRequest{SchedulerId: pool}
	for _, task := range tasks {
		req.Notifications = append(req.Notifications, &swarmingv1.NotifyTasksItem{Time: at(sec), Task: task})
	}
	must(c.swarming.NotifyTasks(context.Background(), req))(t)
}

// poll is one bot's AssignTasks call, as Swarming makes it: one bot.
func poll(t *testing.T, c clients, pool, bot string, sec float64, dims ...string) *swarmingv1.TaskAssignment {
	t.Helper()
	resp := must(c.swarming.AssignTasks(context.Background(), &swarmingv1.AssignTasksRequest{
		SchedulerId: pool, Time: at(sec), IdleBots: []*swarmingv1.IdleBot{{BotId: bot, Dimensions: dims}},
	}))(t)
	switch len(resp.Assignments) {
	case 0:
		return nil
	case 1:
		return resp.Assignments[0]
	}
	t.Fatalf("one bot polled, %d assignments: %v", len(resp.Assignments), resp.Assignments)
	return nil
}

func running(id, bot string) *swarmingv1.TaskSpec {
	return &swarmingv1.TaskSpec{Id: id, State: swarmingv1.TaskSpec_RUNNING, BotId: bot}
}

func completed(id string) *swarmingv1.TaskSpec {
	return &swarmingv1.TaskSpec{Id: id, State: swarmingv1.TaskSpec_COMPLETED}
}

// TestPlaySwarming plays Swarming and an operator against the service, over
// each transport.
func TestPlaySwarming(t *testing.T) {
	playSwarming(t, startServer(t))
}

// TestPlaySwarmingDatastore plays the same against a server whose store is
// Cloud Datastore: the Firestore emulator, found through
// DATASTORE_EMULATOR_HOST as in production it would be found through the
// credentials.
func TestPlaySwarmingDatastore(t *testing.T) {
	t.Setenv("DATASTORE_EMULATOR_HOST", dsemu.Shared(t).Host())
	ts := startServer(t, "--store=datastore:"+dsemu.ProjectID())
	playSwarming(t, ts)
	if !strings.Contains(ts.log.String(), "datastore:") {
		t.Errorf("the server's log does not name its store:\n%s", ts.log)
	}
}

func TestMain(m *testing.M) { os.Exit(dsemu.Main(m)) }

func playSwarming(t *testing.T, ts *testServer) {
	for _, tr := range []struct {
		name string
		c    clients
	}{{"prpc", ts.prpcClients()}, {"grpc", ts.grpcClients()}} {
		t.Run(tr.name, func(t *testing.T) {
			c := tr.c
			ctx := context.Background()
			pool := "pool-" + tr.name
			must(c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool}))(t)
			_, err := c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool})
			wantCode(t, err, codes.AlreadyExists, pool)
			must(c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "gold", Config: &statev1.AccountConfig{ChargeRate: []float32{10}, MaxChargeSeconds: 100}}))(t)
			must(c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "bronze", Config: &statev1.AccountConfig{ChargeRate: []float32{1}, MaxChargeSeconds: 100}}))(t)

			// The clock starts and accounts charge for 10 s.
			// (The warmup bot has a dimension no task asks for.)
			poll(t, c, pool, "warmup", 0, "role:warmup")
			if a := poll(t, c, pool, "warmup", 10, "role:warmup"); a != nil {
				t.Fatalf("nothing waits, yet warmup got %v", a)
			}

			// A 1-slice task, a 2-slice task, and one Swarming cannot express.
			notify(t, c, pool, 11,
				pendingTask("t1", "gold", []string{"os:linux", "pool:lab"}),
				pendingTask("t2", "bronze", []string{"image:i7", "os:linux", "pool:lab"}, []string{"os:linux", "pool:lab"}),
				pendingTask("bad", "gold", []string{"a"}, []string{"a"}, []string{"a"}),
			)
			// Bots poll one at a time. Both accounts are at P0 and both
			// tasks were enqueued at 0, so FIFO by id gives bot1 t1 (a
			// provision match: it has no provisionable labels).
			a1 := poll(t, c, pool, "bot1", 12, "os:linux", "pool:lab")
			if a1 == nil || a1.TaskId != "t1" || a1.SliceNumber != 0 {
				t.Fatalf("bot1 got %v, want t1 slice 0", a1)
			}
			// A bot without the image gets t2's second slice (provision).
			a2 := poll(t, c, pool, "bot2", 12, "os:linux", "pool:lab")
			if a2 == nil || a2.TaskId != "t2" || a2.SliceNumber != 1 {
				t.Fatalf("bot2 got %v, want t2 slice 1", a2)
			}
			// Until RUNNING confirms it, a bot keeps getting its task.
			if again := poll(t, c, pool, "bot1", 13, "os:linux", "pool:lab"); again == nil || again.TaskId != "t1" {
				t.Fatalf("bot1 polled again and got %v, want t1 again", again)
			}
			notify(t, c, pool, 14, running("t1", "bot1"), running("t2", "bot2"))

			// The bad task is reported with its reason and message.
			cs := must(c.swarming.GetCancellations(ctx, &swarmingv1.GetCancellationsRequest{SchedulerId: pool}))(t)
			if len(cs.Cancellations) != 1 || cs.Cancellations[0].TaskId != "bad" ||
				cs.Cancellations[0].Reason != swarmingv1.GetCancellationsResponse_Cancellation_ERROR ||
				!strings.Contains(cs.Cancellations[0].ExtraInfo, "only 1-slice or 2-slice tasks are supported") {
				t.Fatalf("cancellations = %v, want the bad task with reason ERROR and its message", cs.Cancellations)
			}
			notify(t, c, pool, 15, &swarmingv1.TaskSpec{Id: "bad", State: swarmingv1.TaskSpec_CLIENT_ERROR})
			cs = must(c.swarming.GetCancellations(ctx, &swarmingv1.GetCancellationsRequest{SchedulerId: pool}))(t)
			if len(cs.Cancellations) != 0 {
				t.Fatalf("after absent, cancellations = %v, want none", cs.Cancellations)
			}

			// An accountless task takes bot3 at FreeBucket; then gold wants
			// a bot and no bot is idle: a pass (run for every batch) preempts it.
			notify(t, c, pool, 16, pendingTask("free1", "", []string{"pool:lab"}))
			if a := poll(t, c, pool, "bot3", 17, "pool:lab"); a == nil || a.TaskId != "free1" {
				t.Fatalf("bot3 got %v, want free1", a)
			}
			notify(t, c, pool, 18, running("free1", "bot3"))
			notify(t, c, pool, 19, pendingTask("t3", "gold", []string{"pool:lab"}))
			cs = must(c.swarming.GetCancellations(ctx, &swarmingv1.GetCancellationsRequest{SchedulerId: pool}))(t)
			if len(cs.Cancellations) != 1 || cs.Cancellations[0].TaskId != "free1" || cs.Cancellations[0].BotId != "bot3" ||
				cs.Cancellations[0].Reason != swarmingv1.GetCancellationsResponse_Cancellation_PREEMPTED {
				t.Fatalf("cancellations = %v, want free1 on bot3 PREEMPTED", cs.Cancellations)
			}
			// Swarming kills free1; bot3 polls and gets the preemptor.
			notify(t, c, pool, 20, &swarmingv1.TaskSpec{Id: "free1", State: swarmingv1.TaskSpec_KILLED})
			if a := poll(t, c, pool, "bot3", 21, "pool:lab"); a == nil || a.TaskId != "t3" {
				t.Fatalf("bot3 got %v, want the preemptor t3", a)
			}
			notify(t, c, pool, 22, running("t3", "bot3"))

			// t1 completes; the callbacks name the oldest confirmed tasks.
			notify(t, c, pool, 23, completed("t1"))
			cb := must(c.swarming.GetCallbacks(ctx, &swarmingv1.GetCallbacksRequest{SchedulerId: pool}))(t)
			if len(cb.TaskIds) != 1 || cb.TaskIds[0] != "t2" {
				t.Fatalf("callbacks = %v, want [t2] (the running task confirmed longest ago)", cb.TaskIds)
			}

			// Views.
			ip := must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool}))(t)
			// Running: t2 on bot2, t3 on bot3. Idle: warmup (bot1 was
			// forgotten when its running task was reported absent).
			if ip.NumRunningTasks != 2 || ip.NumWaitingTasks != 0 || ip.NumIdleBots != 1 {
				t.Errorf("InspectPool counts running=%d waiting=%d idle=%d, want 2, 0, 1", ip.NumRunningTasks, ip.NumWaitingTasks, ip.NumIdleBots)
			}
			if ip.SchedulerTime.AsTime() != at(23).AsTime() {
				t.Errorf("scheduler time %v, want the latest time a request carried (t1's completion) %v", ip.SchedulerTime.AsTime(), at(23).AsTime())
			}
			if got := ip.AccountBalances["gold"]; got == nil || len(got.Value) != 5 {
				t.Errorf("gold balance %v, want 5 values", got)
			}
			la := must(c.view.ListAccounts(ctx, &qschedulerv1.ListAccountsRequest{PoolId: pool}))(t)
			if len(la.Accounts) != 2 || la.Accounts["gold"].ChargeRate[0] != 10 {
				t.Errorf("ListAccounts = %v", la.Accounts)
			}
			lp := must(c.view.ListSchedulerPools(ctx, &qschedulerv1.ListSchedulerPoolsRequest{}))(t)
			found := false
			for _, id := range lp.PoolIds {
				found = found || id == pool
			}
			if !found {
				t.Errorf("ListSchedulerPools = %v, want it to include %s", lp.PoolIds, pool)
			}

			// Admin mutations.
			must(c.admin.ModAccount(ctx, &qschedulerv1.ModAccountRequest{PoolId: pool, AccountId: "bronze", MaxFanout: wrapperspb.Int32(3), Description: wrapperspb.String("cheap"), PerLabelTaskLimits: map[string]int32{"os": 2}}))(t)
			la = must(c.view.ListAccounts(ctx, &qschedulerv1.ListAccountsRequest{PoolId: pool}))(t)
			if b := la.Accounts["bronze"]; b.MaxFanout != 3 || b.Description != "cheap" || b.PerLabelTaskLimits["os"] != 2 || b.ChargeRate[0] != 1 {
				t.Errorf("after ModAccount bronze = %v", b)
			}
			must(c.admin.ModSchedulerPool(ctx, &qschedulerv1.ModSchedulerPoolRequest{PoolId: pool, DisablePreemption: wrapperspb.Bool(true), BotExpirationSeconds: wrapperspb.Int32(60), MaxTombstones: wrapperspb.Int32(7)}))(t)
			ip = must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool, MaxItems: 1}))(t)
			if !ip.DisablePreemption || ip.BotExpirationSeconds != 60 || ip.MaxTombstones != 7 || ip.WorkerQueueTimeoutSeconds != 600 {
				t.Errorf("after ModSchedulerPool: %v", ip)
			}
			if len(ip.RunningTasks) != 1 || len(ip.IdleBots) != 1 {
				t.Errorf("max_items 1: %d running, %d idle listed, want 1 each", len(ip.RunningTasks), len(ip.IdleBots))
			}
			// Pages: the second running task is on the next page, and the
			// walk ends there; tokens that are not this pool's are refused.
			if ip.NextPageToken == "" {
				t.Fatal("max_items 1 with 2 running tasks: no next_page_token")
			}
			first := ip.RunningTasks[0].Id
			ip = must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool, MaxItems: 1, PageToken: ip.NextPageToken}))(t)
			if len(ip.RunningTasks) != 1 || ip.RunningTasks[0].Id == first || len(ip.IdleBots) != 0 || ip.NumRunningTasks != 2 || ip.NextPageToken != "" {
				t.Errorf("second page: running %v, idle %v, counts %d, token %q; want the other running task, no bot, exact counts, no token",
					ip.RunningTasks, ip.IdleBots, ip.NumRunningTasks, ip.NextPageToken)
			}
			_, err = c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool, PageToken: "not a token"})
			wantCode(t, err, codes.InvalidArgument, "page_token")
			must(c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool + "-other"}))(t)
			other := must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool, MaxItems: 1}))(t).NextPageToken
			_, err = c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool + "-other", PageToken: other})
			wantCode(t, err, codes.InvalidArgument, "page_token")
			must(c.admin.DeleteSchedulerPool(ctx, &qschedulerv1.DeleteSchedulerPoolRequest{PoolId: pool + "-other"}))(t)
			must(c.admin.DeleteAccount(ctx, &qschedulerv1.DeleteAccountRequest{PoolId: pool, AccountId: "bronze"}))(t)
			_, err = c.admin.DeleteAccount(ctx, &qschedulerv1.DeleteAccountRequest{PoolId: pool, AccountId: "bronze"})
			wantCode(t, err, codes.NotFound, "bronze")
			_, err = c.admin.ModAccount(ctx, &qschedulerv1.ModAccountRequest{PoolId: pool, AccountId: "nobody"})
			wantCode(t, err, codes.NotFound, "nobody")
			must(c.admin.Wipe(ctx, &qschedulerv1.WipeRequest{PoolId: pool}))(t)
			ip = must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool}))(t)
			if ip.NumRunningTasks+ip.NumWaitingTasks+ip.NumIdleBots != 0 || ip.SchedulerTime != nil || len(ip.AccountConfigs) != 1 || !ip.DisablePreemption {
				t.Errorf("after Wipe: %v, want no tasks or bots, no clock, config kept", ip)
			}
			must(c.admin.DeleteSchedulerPool(ctx, &qschedulerv1.DeleteSchedulerPoolRequest{PoolId: pool}))(t)
			_, err = c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool})
			wantCode(t, err, codes.NotFound, pool)
		})
	}
}

// TestErrorCodes: unknown pools and accounts are NotFound, every validation
// rule is InvalidArgument naming the field, on both transports.
func TestErrorCodes(t *testing.T) {
	ts := startServer(t)
	for _, tr := range []struct {
		name string
		c    clients
	}{{"prpc", ts.prpcClients()}, {"grpc", ts.grpcClients()}} {
		t.Run(tr.name, func(t *testing.T) {
			c, ctx := tr.c, context.Background()
			pool := "codes-" + tr.name
			must(c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool}))(t)
			long := strings.Repeat("x", 1025)
			nan := float32(math.NaN())
			cfg := func(f func(*statev1.AccountConfig)) *statev1.AccountConfig {
				c := &statev1.AccountConfig{ChargeRate: []float32{1}, MaxChargeSeconds: 10}
				f(c)
				return c
			}
			for _, tc := range []struct {
				name  string
				call  func() error
				code  codes.Code
				field string
			}{
				{"unknown pool (AssignTasks)", func() error {
					_, err := c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: "nope", Time: at(0)})
					return err
				}, codes.NotFound, "nope"},
				{"unknown pool (NotifyTasks)", func() error {
					_, err := c.swarming.NotifyTasks(ctx, &swarmingv1.NotifyTasksRequest{SchedulerId: "nope"})
					return err
				}, codes.NotFound, "nope"},
				{"unknown pool (CreateAccount)", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: "nope", AccountId: "a", Config: cfg(func(*statev1.AccountConfig) {})})
					return err
				}, codes.NotFound, "nope"},
				{"unknown pool (Wipe)", func() error { _, err := c.admin.Wipe(ctx, &qschedulerv1.WipeRequest{PoolId: "nope"}); return err }, codes.NotFound, "nope"},
				{"unknown pool (DeleteSchedulerPool)", func() error {
					_, err := c.admin.DeleteSchedulerPool(ctx, &qschedulerv1.DeleteSchedulerPoolRequest{PoolId: "nope"})
					return err
				}, codes.NotFound, "nope"},
				{"unknown pool (ListAccounts)", func() error {
					_, err := c.view.ListAccounts(ctx, &qschedulerv1.ListAccountsRequest{PoolId: "nope"})
					return err
				}, codes.NotFound, "nope"},
				{"unknown account (DeleteAccount)", func() error {
					_, err := c.admin.DeleteAccount(ctx, &qschedulerv1.DeleteAccountRequest{PoolId: pool, AccountId: "ghost"})
					return err
				}, codes.NotFound, "ghost"},
				{"empty scheduler_id", func() error {
					_, err := c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{Time: at(0)})
					return err
				}, codes.InvalidArgument, "scheduler_id"},
				{"AssignTasks without time", func() error {
					_, err := c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: pool})
					return err
				}, codes.InvalidArgument, "time"},
				{"AssignTasks with a time the scheduler cannot hold", func() error {
					_, err := c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: timestamppb.New(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))})
					return err
				}, codes.InvalidArgument, "time"},
				{"AssignTasks with an empty bot id", func() error {
					_, err := c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(0), IdleBots: []*swarmingv1.IdleBot{{BotId: "b"}, {}}})
					return err
				}, codes.InvalidArgument, "idle_bots[1].bot_id"},
				{"NotifyTasks item without time", func() error {
					_, err := c.swarming.NotifyTasks(ctx, &swarmingv1.NotifyTasksRequest{SchedulerId: pool, Notifications: []*swarmingv1.NotifyTasksItem{{Task: pendingTask("x", "")}}})
					return err
				}, codes.InvalidArgument, "notifications[0].time"},
				{"NotifyTasks item without task id", func() error {
					_, err := c.swarming.NotifyTasks(ctx, &swarmingv1.NotifyTasksRequest{SchedulerId: pool, Notifications: []*swarmingv1.NotifyTasksItem{{Time: at(0), Task: &swarmingv1.TaskSpec{}}}})
					return err
				}, codes.InvalidArgument, "notifications[0].task.id"},
				{"empty pool_id", func() error {
					_, err := c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{})
					return err
				}, codes.InvalidArgument, "pool_id"},
				{"pool_id longer than 1,024 bytes", func() error {
					_, err := c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: long})
					return err
				}, codes.InvalidArgument, "pool_id"},
				{"empty account_id", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, Config: cfg(func(*statev1.AccountConfig) {})})
					return err
				}, codes.InvalidArgument, "account_id"},
				{"missing config", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "a"})
					return err
				}, codes.InvalidArgument, "config"},
				{"six charge rates", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "a", Config: cfg(func(c *statev1.AccountConfig) { c.ChargeRate = []float32{1, 1, 1, 1, 1, 1} })})
					return err
				}, codes.InvalidArgument, "charge_rate"},
				{"negative charge rate", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "a", Config: cfg(func(c *statev1.AccountConfig) { c.ChargeRate = []float32{-1} })})
					return err
				}, codes.InvalidArgument, "charge_rate[0]"},
				{"NaN max_charge_seconds", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "a", Config: cfg(func(c *statev1.AccountConfig) { c.MaxChargeSeconds = nan })})
					return err
				}, codes.InvalidArgument, "max_charge_seconds"},
				{"infinite charge rate", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "a", Config: cfg(func(c *statev1.AccountConfig) { c.ChargeRate = []float32{float32(math.Inf(1))} })})
					return err
				}, codes.InvalidArgument, "charge_rate[0]"},
				{"negative label limit", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "a", Config: cfg(func(c *statev1.AccountConfig) { c.PerLabelTaskLimits = map[string]int32{"os": -1} })})
					return err
				}, codes.InvalidArgument, "per_label_task_limits"},
				{"negative max_fanout", func() error {
					_, err := c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: pool, AccountId: "a", Config: cfg(func(c *statev1.AccountConfig) { c.MaxFanout = -1 })})
					return err
				}, codes.InvalidArgument, "max_fanout"},
				{"ModAccount with six charge rates", func() error {
					_, err := c.admin.ModAccount(ctx, &qschedulerv1.ModAccountRequest{PoolId: pool, AccountId: "a", ChargeRate: []float32{1, 1, 1, 1, 1, 1}})
					return err
				}, codes.InvalidArgument, "charge_rate"},
				{"ModAccount setting and clearing limits", func() error {
					_, err := c.admin.ModAccount(ctx, &qschedulerv1.ModAccountRequest{PoolId: pool, AccountId: "a", PerLabelTaskLimits: map[string]int32{"os": 1}, ClearPerLabelTaskLimits: true})
					return err
				}, codes.InvalidArgument, "per_label_task_limits"},
				{"negative bot_expiration_seconds", func() error {
					_, err := c.admin.ModSchedulerPool(ctx, &qschedulerv1.ModSchedulerPoolRequest{PoolId: pool, BotExpirationSeconds: wrapperspb.Int32(-1)})
					return err
				}, codes.InvalidArgument, "bot_expiration_seconds"},
				{"NaN promote_threshold", func() error {
					_, err := c.admin.ModSchedulerPool(ctx, &qschedulerv1.ModSchedulerPoolRequest{PoolId: pool, PromoteThreshold: wrapperspb.Float(nan)})
					return err
				}, codes.InvalidArgument, "promote_threshold"},
				{"negative max_items", func() error {
					_, err := c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool, MaxItems: -1})
					return err
				}, codes.InvalidArgument, "max_items"},
			} {
				t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code, tc.field) })
			}
		})
	}
}

// TestHTTPEndpoints: /healthz says version, revision and uptime; /readyz is
// 200 once pools are loaded; pRPC answers bad requests with precise codes.
func TestHTTPEndpoints(t *testing.T) {
	ts := startServer(t)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + ts.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, `"version"`) || !strings.Contains(body, `"revision"`) || !strings.Contains(body, `"uptime_seconds"`) {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %s", code, body)
	}
	resp, err := http.Post("http://"+ts.httpAddr+"/prpc/swarming.v1.ExternalScheduler/NoSuchMethod", "application/prpc; encoding=binary", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 501 || resp.Header.Get("X-Prpc-Grpc-Code") != "12" {
		t.Errorf("unknown method: HTTP %d code %q, want 501 and 12", resp.StatusCode, resp.Header.Get("X-Prpc-Grpc-Code"))
	}
	// Swarming's exact request: binary body, its headers, a 20 s timeout.
	req, _ := http.NewRequest("POST", "http://"+ts.httpAddr+"/prpc/swarming.v1.ExternalScheduler/GetCallbacks", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/prpc; encoding=binary")
	req.Header.Set("Accept", "application/prpc; encoding=binary")
	req.Header.Set("X-Prpc-Grpc-Timeout", "20S")
	req.Header.Set("Authorization", "Bearer token")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Swarming's cron stops at the first error: a pool it cannot name gets
	// an empty list.
	if resp.StatusCode != 200 || resp.Header.Get("X-Prpc-Grpc-Code") != "0" {
		t.Errorf("empty scheduler_id over pRPC: HTTP %d code %q, want 200 and 0", resp.StatusCode, resp.Header.Get("X-Prpc-Grpc-Code"))
	}
	// Invalid UTF-8 in an id cannot be sent by a protobuf client, but raw
	// bytes can: field 1 (pool_id) = "\xff".
	resp, err = http.Post("http://"+ts.httpAddr+"/prpc/qscheduler.v1.QSchedulerAdmin/CreateSchedulerPool", "application/prpc; encoding=binary", strings.NewReader("\x0a\x01\xff"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("X-Prpc-Grpc-Code") != "3" {
		t.Errorf("invalid UTF-8 pool_id over pRPC: HTTP %d code %q (%s), want 400 and 3", resp.StatusCode, resp.Header.Get("X-Prpc-Grpc-Code"), body)
	}
}

// TestAdminChangesAreLogged: every admin change leaves one Info line with
// the pool, the account and what changed.
func TestAdminChangesAreLogged(t *testing.T) {
	ts := startServer(t, "--log-level=info")
	c, ctx := ts.grpcClients(), context.Background()
	must(c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "audit"}))(t)
	must(c.admin.CreateAccount(ctx, &qschedulerv1.CreateAccountRequest{PoolId: "audit", AccountId: "team-a", Config: &statev1.AccountConfig{ChargeRate: []float32{5}, MaxChargeSeconds: 600}}))(t)
	must(c.admin.ModAccount(ctx, &qschedulerv1.ModAccountRequest{PoolId: "audit", AccountId: "team-a", MaxFanout: wrapperspb.Int32(7)}))(t)
	must(c.admin.ModSchedulerPool(ctx, &qschedulerv1.ModSchedulerPoolRequest{PoolId: "audit", DisablePreemption: wrapperspb.Bool(true)}))(t)
	notify(t, c, "audit", 1, pendingTask("t1", "team-a", []string{"pool:lab"}))
	must(c.admin.Wipe(ctx, &qschedulerv1.WipeRequest{PoolId: "audit"}))(t)
	must(c.admin.DeleteAccount(ctx, &qschedulerv1.DeleteAccountRequest{PoolId: "audit", AccountId: "team-a"}))(t)
	must(c.admin.DeleteSchedulerPool(ctx, &qschedulerv1.DeleteSchedulerPoolRequest{PoolId: "audit"}))(t)
	// Protobuf text output varies its spacing on purpose: compare words.
	log := strings.Join(strings.Fields(ts.log.String()), " ")
	for _, want := range []string{
		`level=INFO msg="admin: pool created" pool=audit peer=127.0.0.1:`,
		`msg="admin: account created" pool=audit account=team-a config="charge_rate:5 max_charge_seconds:600"`,
		`msg="admin: account modified" pool=audit account=team-a before="charge_rate:5 max_charge_seconds:600" after="charge_rate:5 max_charge_seconds:600 max_fanout:7"`,
		`msg="admin: pool tunables modified" pool=audit before={} after=disable_preemption:true`,
		`msg="admin: pool wiped" pool=audit dropped_waiting=1 dropped_running=0 dropped_idle_bots=0`,
		`msg="admin: account deleted" pool=audit account=team-a`,
		`msg="admin: pool deleted" pool=audit`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
}
