package main

// Swarming's Python server is the one caller of the ExternalScheduler. These
// tests call the service exactly as its pRPC client does and check the
// answers its behaviour needs: it retries only 5xx and 408 answers, once;
// NotifyTasks runs inside task creation; a once-a-minute cron calls
// GetCancellations and GetCallbacks for every pool and stops at the first
// error.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/faultstore"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// answer is what Swarming's client sees of a call.
type answer struct {
	http int        // HTTP status
	code codes.Code // X-Prpc-Grpc-Code
	msg  string     // the body of an error
}

// retried reports whether Swarming's client would retry the call (once).
func (a answer) retried() bool { return a.http >= 500 || a.http == http.StatusRequestTimeout }

// swarmingCall makes one call as Swarming's pRPC client does: binary bodies
// both ways, X-Prpc-Grpc-Timeout 20S, an OAuth2 access token. resp, if
// non-nil, receives the answer of a successful call.
func swarmingCall(t *testing.T, ts *testServer, method string, req, resp proto.Message) answer {
	t.Helper()
	service := swarmingv1.ExternalScheduler_ServiceDesc.ServiceName
	if !strings.HasPrefix(method, "swarming:") {
		service = qschedulerv1.QSchedulerAdmin_ServiceDesc.ServiceName
		if strings.HasPrefix(method, "view:") {
			service = qschedulerv1.QSchedulerView_ServiceDesc.ServiceName
		}
	}
	_, method, _ = strings.Cut(method, ":")
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.NewRequest("POST", fmt.Sprintf("http://%s/prpc/%s/%s", ts.httpAddr, service, method), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/prpc; encoding=binary")
	r.Header.Set("Accept", "application/prpc; encoding=binary")
	r.Header.Set("X-Prpc-Grpc-Timeout", "20S")
	r.Header.Set("Authorization", "Bearer ya29.swarming-service-account-token")
	r.Header.Set("User-Agent", "AppEngine-Google; (+http://code.google.com/appengine; appid: s~chromium-swarm)")
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	code, err := strconv.Atoi(res.Header.Get(prpc.HeaderGRPCCode))
	if err != nil {
		t.Fatalf("%s: HTTP %d without a valid %s header: %q", method, res.StatusCode, prpc.HeaderGRPCCode, b)
	}
	a := answer{http: res.StatusCode, code: codes.Code(code)}
	if a.code != codes.OK {
		a.msg = string(b)
		return a
	}
	if resp != nil {
		if err := proto.Unmarshal(b, resp); err != nil {
			t.Fatalf("%s: decoding the answer: %v", method, err)
		}
	}
	return a
}

// mustCall is swarmingCall for calls that must succeed.
func mustCall(t *testing.T, ts *testServer, method string, req, resp proto.Message) {
	t.Helper()
	if a := swarmingCall(t, ts, method, req, resp); a.code != codes.OK || a.http != 200 {
		t.Fatalf("%s: HTTP %d %v %s", method, a.http, a.code, a.msg)
	}
}

// metricValue reads one series from /metrics: the sample of name whose
// labels are exactly labels ("k=v" each). ok is false when there is none.
func metricValue(t *testing.T, ts *testServer, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	res, err := http.Get("http://" + ts.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	want := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		want[k] = v
	}
	for _, m := range fams[name].GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// waitMetric waits until the series has value v (the service updates it as
// requests queue; nothing else says when).
func waitMetric(t *testing.T, ts *testServer, v float64, name string, labels ...string) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("%s%v to be %v", name, labels, v), func() bool {
		got, ok := metricValue(t, ts, name, labels...)
		return ok && got == v
	})
}

// TestSwarmingNotifyIsNeverShed: with AssignTasks shedding load (its queue
// full), NotifyTasks is still accepted and committed; only when the
// notifications' own queue is full does it answer Unavailable (503, which
// Swarming retries once), counted and logged. A shed poll is 429, final for
// Swarming and harmless: the bot polls again.
func TestSwarmingNotifyIsNeverShed(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	srv := startServerOn(t, fs, "--max-queue=1", "--max-notify-queue=2")
	mustCall(t, srv, "admin:CreateSchedulerPool", &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "lab"}, nil)
	notifyReq := func(id string) *swarmingv1.NotifyTasksRequest {
		return &swarmingv1.NotifyTasksRequest{SchedulerId: "lab", Notifications: []*swarmingv1.NotifyTasksItem{{Time: at(1), Task: pendingTask(id, "", []string{"pool:lab"})}}}
	}
	pollReq := func(bot string) *swarmingv1.AssignTasksRequest {
		return &swarmingv1.AssignTasksRequest{SchedulerId: "lab", Time: at(2), IdleBots: []*swarmingv1.IdleBot{{BotId: bot, Dimensions: []string{"pool:lab"}}}}
	}
	fs.Hold() // every commit waits: the first batch holds the pool
	answers := make(chan answer, 4)
	go func() { answers <- swarmingCall(t, srv, "swarming:NotifyTasks", notifyReq("task-0"), nil) }()
	testutil.WaitFor(t, "the first batch's commit to be held", func() bool { return fs.Held() == 1 })
	polled := make(chan *swarmingv1.AssignTasksResponse, 1)
	go func() {
		resp := &swarmingv1.AssignTasksResponse{}
		answers <- swarmingCall(t, srv, "swarming:AssignTasks", pollReq("bot-1"), resp)
		polled <- resp
	}()
	waitMetric(t, srv, 1, "qscheduler_queued_requests", "kind=polls", "pool=lab")

	if a := swarmingCall(t, srv, "swarming:AssignTasks", pollReq("bot-2"), nil); a.http != 429 || a.code != codes.ResourceExhausted || a.retried() {
		t.Errorf("a poll beyond --max-queue: HTTP %d %v, want 429 ResourceExhausted (final for Swarming)", a.http, a.code)
	}
	for _, id := range []string{"task-1", "task-2"} {
		go func() { answers <- swarmingCall(t, srv, "swarming:NotifyTasks", notifyReq(id), nil) }()
	}
	waitMetric(t, srv, 2, "qscheduler_queued_requests", "kind=notifications", "pool=lab")
	a := swarmingCall(t, srv, "swarming:NotifyTasks", notifyReq("task-3"), nil)
	if a.http != 503 || a.code != codes.Unavailable || !a.retried() {
		t.Errorf("a notification beyond --max-notify-queue: HTTP %d %v, want 503 Unavailable (retried once by Swarming)", a.http, a.code)
	}
	for _, method := range []string{"AssignTasks", "NotifyTasks"} {
		if v, _ := metricValue(t, srv, "qscheduler_requests_shed_total", "method="+method, "pool=lab"); v != 1 {
			t.Errorf("qscheduler_requests_shed_total{method=%s} = %v, want 1", method, v)
		}
	}
	if !strings.Contains(srv.log.String(), "requests shed") {
		t.Error("shedding was not logged")
	}

	fs.Release()
	for range 4 {
		if a := <-answers; a.code != codes.OK {
			t.Errorf("a queued call: HTTP %d %v %s", a.http, a.code, a.msg)
		}
	}
	if resp := <-polled; len(resp.Assignments) != 1 {
		t.Errorf("the queued poll got %v, want a task", resp.Assignments)
	}
	ip := &qschedulerv1.InspectPoolResponse{}
	mustCall(t, srv, "view:InspectPool", &qschedulerv1.InspectPoolRequest{PoolId: "lab"}, ip)
	if ip.NumWaitingTasks+ip.NumRunningTasks != 3 {
		t.Errorf("%d waiting and %d running, want task-0..2 known (the shed task-3 not)", ip.NumWaitingTasks, ip.NumRunningTasks)
	}
}

// TestSwarmingCronNeverStops: GetCancellations and GetCallbacks answer an
// empty list for a pool that does not exist, an empty id (a config entry
// without one) or an id no pool can have, so that Swarming's cron goes on
// to the next pool; each is counted and warned about once a minute per
// pool id. AssignTasks and NotifyTasks keep NotFound and InvalidArgument.
func TestSwarmingCronNeverStops(t *testing.T) {
	srv := startServer(t)
	mustCall(t, srv, "admin:CreateSchedulerPool", &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "lab"}, nil)
	ids := []string{"not-created-yet", "", strings.Repeat("x", 1025)}
	for range 2 {
		for _, id := range ids {
			cancels := &swarmingv1.GetCancellationsResponse{Cancellations: []*swarmingv1.GetCancellationsResponse_Cancellation{{TaskId: "sentinel"}}}
			if a := swarmingCall(t, srv, "swarming:GetCancellations", &swarmingv1.GetCancellationsRequest{SchedulerId: id}, cancels); a.http != 200 || len(cancels.Cancellations) != 0 {
				t.Errorf("GetCancellations(%.20q): HTTP %d %v %s, %v; want 200 and an empty list", id, a.http, a.code, a.msg, cancels.Cancellations)
			}
			callbacks := &swarmingv1.GetCallbacksResponse{TaskIds: []string{"sentinel"}}
			if a := swarmingCall(t, srv, "swarming:GetCallbacks", &swarmingv1.GetCallbacksRequest{SchedulerId: id}, callbacks); a.http != 200 || len(callbacks.TaskIds) != 0 {
				t.Errorf("GetCallbacks(%.20q): HTTP %d %v %s, %v; want 200 and an empty list", id, a.http, a.code, a.msg, callbacks.TaskIds)
			}
		}
	}
	for _, method := range []string{"GetCancellations", "GetCallbacks"} {
		if v, _ := metricValue(t, srv, "qscheduler_cron_empty_answers_total", "method="+method); v != 6 {
			t.Errorf("qscheduler_cron_empty_answers_total{method=%s} = %v, want 6", method, v)
		}
	}
	if n := strings.Count(srv.log.String(), "answering an empty list for a pool that cannot be read"); n != len(ids) {
		t.Errorf("%d warnings for 12 calls about 3 pool ids, want one per pool id:\n%s", n, srv.log)
	}
	for _, tc := range []struct {
		method string
		req    proto.Message
		http   int
		code   codes.Code
	}{
		{"swarming:AssignTasks", &swarmingv1.AssignTasksRequest{SchedulerId: "not-created-yet", Time: at(1)}, 404, codes.NotFound},
		{"swarming:NotifyTasks", &swarmingv1.NotifyTasksRequest{SchedulerId: "not-created-yet"}, 404, codes.NotFound},
		{"swarming:AssignTasks", &swarmingv1.AssignTasksRequest{Time: at(1)}, 400, codes.InvalidArgument},
		{"swarming:NotifyTasks", &swarmingv1.NotifyTasksRequest{}, 400, codes.InvalidArgument},
	} {
		if a := swarmingCall(t, srv, tc.method, tc.req, nil); a.http != tc.http || a.code != tc.code {
			t.Errorf("%s %v: HTTP %d %v, want %d %v", tc.method, tc.req, a.http, a.code, tc.http, tc.code)
		}
	}
}

// TestSwarmingPoolDown: while a pool restores its committed state after a
// failed commit, NotifyTasks answers 503 (Swarming retries it once),
// GetCancellations an empty list, /readyz 503, and the metrics say so; once
// the store answers again, the pool serves.
func TestSwarmingPoolDown(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	srv := startServerOn(t, fs)
	mustCall(t, srv, "admin:CreateSchedulerPool", &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "lab"}, nil)
	req := &swarmingv1.NotifyTasksRequest{SchedulerId: "lab", Notifications: []*swarmingv1.NotifyTasksItem{{Time: at(1), Task: pendingTask("t", "", []string{"pool:lab"})}}}
	fs.FailLoads(-1)
	fs.FailCommits(faultstore.Error)
	for range 2 { // the call and Swarming's retry
		if a := swarmingCall(t, srv, "swarming:NotifyTasks", req, nil); a.http != 503 || a.code != codes.Unavailable {
			t.Errorf("NotifyTasks while the pool is down: HTTP %d %v %s, want 503 Unavailable", a.http, a.code, a.msg)
		}
	}
	if a := swarmingCall(t, srv, "swarming:GetCancellations", &swarmingv1.GetCancellationsRequest{SchedulerId: "lab"}, nil); a.http != 200 {
		t.Errorf("GetCancellations while the pool is down: HTTP %d %v, want 200", a.http, a.code)
	}
	if code, body := httpGet(t, srv, "/readyz"); code != 503 || !strings.Contains(body, `pool "lab" down`) {
		t.Errorf("/readyz while the pool is down: %d %q", code, body)
	}
	for _, m := range []struct {
		name   string
		labels []string
	}{
		{"qscheduler_pool_down", []string{"pool=lab"}},
		{"qscheduler_batch_failures_total", []string{"pool=lab", "reason=commit"}},
	} {
		if v, _ := metricValue(t, srv, m.name, m.labels...); v != 1 {
			t.Errorf("%s%v = %v, want 1", m.name, m.labels, v)
		}
	}
	if v, _ := metricValue(t, srv, "qscheduler_pool_restore_failures_total", "pool=lab"); v < 1 {
		t.Errorf("qscheduler_pool_restore_failures_total = %v, want at least 1", v)
	}
	fs.FailLoads(0)
	waitMetric(t, srv, 0, "qscheduler_pool_down", "pool=lab")
	mustCall(t, srv, "swarming:NotifyTasks", req, nil)
	if code, body := httpGet(t, srv, "/readyz"); code != 200 {
		t.Errorf("/readyz after the restore: %d %q", code, body)
	}
}

func httpGet(t *testing.T, ts *testServer, path string) (int, string) {
	t.Helper()
	res, err := http.Get("http://" + ts.httpAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestSwarmingClockSkew: a time further ahead of the server's clock than
// --max-clock-skew is InvalidArgument naming the field, and moves nothing;
// a time inside it is served.
func TestSwarmingClockSkew(t *testing.T) {
	srv := startServer(t, "--max-clock-skew=10m")
	mustCall(t, srv, "admin:CreateSchedulerPool", &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "lab"}, nil)
	now := time.Now()
	mustCall(t, srv, "swarming:AssignTasks", &swarmingv1.AssignTasksRequest{SchedulerId: "lab", Time: timestamppb.New(now)}, nil)
	for _, tc := range []struct {
		method string
		req    proto.Message
		field  string
	}{
		{"swarming:AssignTasks", &swarmingv1.AssignTasksRequest{SchedulerId: "lab", Time: timestamppb.New(now.Add(11 * time.Minute))}, "time:"},
		{"swarming:NotifyTasks", &swarmingv1.NotifyTasksRequest{SchedulerId: "lab", Notifications: []*swarmingv1.NotifyTasksItem{
			{Time: timestamppb.New(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)), Task: &swarmingv1.TaskSpec{Id: "t", State: swarmingv1.TaskSpec_COMPLETED}}}}, "notifications[0].time:"},
	} {
		if a := swarmingCall(t, srv, tc.method, tc.req, nil); a.http != 400 || a.code != codes.InvalidArgument || !strings.Contains(a.msg, tc.field) || !strings.Contains(a.msg, "ahead of the server's clock") {
			t.Errorf("%s with a time in the future: HTTP %d %v %q, want 400 naming %s", tc.method, a.http, a.code, a.msg, tc.field)
		}
	}
	ip := &qschedulerv1.InspectPoolResponse{}
	mustCall(t, srv, "view:InspectPool", &qschedulerv1.InspectPoolRequest{PoolId: "lab"}, ip)
	if got := ip.SchedulerTime.AsTime(); got.After(now.Add(time.Second)) {
		t.Errorf("the rejected requests moved the pool's clock to %v (the last accepted time was %v)", got, now)
	}
	mustCall(t, srv, "swarming:AssignTasks", &swarmingv1.AssignTasksRequest{SchedulerId: "lab", Time: timestamppb.New(now.Add(9 * time.Minute))}, nil)
}

// TestSwarmingLongestIds: everything Swarming can send fits: ids of 1,024
// bytes, bot ids of 256 multi-byte characters, 321-character tags.
func TestSwarmingLongestIds(t *testing.T) {
	srv := startServer(t)
	pool := strings.Repeat("p", 1024)
	bot := strings.Repeat("ü", 256)   // 512 bytes
	task := strings.Repeat("t", 1024) // Swarming's are 16 hex digits; any id fits
	tag := "qs_account:" + strings.Repeat("a", 310)
	mustCall(t, srv, "admin:CreateSchedulerPool", &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool}, nil)
	spec := pendingTask(task, "", []string{"pool:lab"})
	spec.Tags = append(spec.Tags, tag)
	mustCall(t, srv, "swarming:NotifyTasks", &swarmingv1.NotifyTasksRequest{SchedulerId: pool, Notifications: []*swarmingv1.NotifyTasksItem{{Time: at(1), Task: spec}}}, nil)
	resp := &swarmingv1.AssignTasksResponse{}
	mustCall(t, srv, "swarming:AssignTasks", &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(2), IdleBots: []*swarmingv1.IdleBot{{BotId: bot, Dimensions: []string{"pool:lab"}}}}, resp)
	if len(resp.Assignments) != 1 || resp.Assignments[0].TaskId != task || resp.Assignments[0].BotId != bot {
		t.Errorf("assignments %v, want the task on the bot", resp.Assignments)
	}
	a := swarmingCall(t, srv, "swarming:AssignTasks", &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(3), IdleBots: []*swarmingv1.IdleBot{{BotId: strings.Repeat("b", 1025)}}}, nil)
	if a.http != 400 || !strings.Contains(a.msg, "idle_bots[0].bot_id") || !strings.Contains(a.msg, "1025 bytes") {
		t.Errorf("a 1,025-byte bot id: HTTP %d %q, want 400 naming the field and the size", a.http, a.msg)
	}
}

// TestSwarmingFindsOurReasons: Swarming ignores the reason and text of a
// cancellation, so both are in the event log and the server log.
func TestSwarmingFindsOurReasons(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.jsonl")
	srv := startServer(t, "--eventlog=jsonl:"+events)
	mustCall(t, srv, "admin:CreateSchedulerPool", &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "lab"}, nil)
	bad := pendingTask("three-slices", "", []string{"pool:lab"}, []string{"pool:lab"}, []string{"pool:lab"})
	mustCall(t, srv, "swarming:NotifyTasks", &swarmingv1.NotifyTasksRequest{SchedulerId: "lab", Notifications: []*swarmingv1.NotifyTasksItem{{Time: at(1), Task: bad}}}, nil)
	resp := &swarmingv1.GetCancellationsResponse{}
	mustCall(t, srv, "swarming:GetCancellations", &swarmingv1.GetCancellationsRequest{SchedulerId: "lab"}, resp)
	const text = "task has 3 slices"
	if len(resp.Cancellations) != 1 || resp.Cancellations[0].Reason != swarmingv1.GetCancellationsResponse_Cancellation_ERROR || !strings.Contains(resp.Cancellations[0].ExtraInfo, text) {
		t.Fatalf("cancellations %v, want three-slices with reason ERROR and the text", resp.Cancellations)
	}
	if !strings.Contains(srv.log.String(), text) {
		t.Errorf("the server log lacks %q", text)
	}
	// The event log is written in the background: wait for the row.
	testutil.WaitFor(t, fmt.Sprintf("a TASK_ERROR row of three-slices with %q in the event log", text), func() bool {
		b, _ := os.ReadFile(events)
		return bytes.Contains(b, []byte(`"TYPE_TASK_ERROR"`)) && bytes.Contains(b, []byte(text)) && bytes.Contains(b, []byte(`"three-slices"`))
	})
}

// TestExpiredDeadlineIsDeadlineExceeded: a caller whose deadline passes
// while its read waits gets DeadlineExceeded (504), never Unavailable.
func TestExpiredDeadlineIsDeadlineExceeded(t *testing.T) {
	srv := startServer(t)
	mustCall(t, srv, "admin:CreateSchedulerPool", &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "lab"}, nil)
	body, _ := proto.Marshal(&qschedulerv1.InspectPoolRequest{PoolId: "lab"})
	r, _ := http.NewRequest("POST", "http://"+srv.httpAddr+"/prpc/qscheduler.v1.QSchedulerView/InspectPool", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/prpc; encoding=binary")
	r.Header.Set("X-Prpc-Grpc-Timeout", "1n")
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 504 || res.Header.Get(prpc.HeaderGRPCCode) != strconv.Itoa(int(codes.DeadlineExceeded)) {
		t.Errorf("InspectPool with a 1 ns deadline: HTTP %d code %s %q, want 504 DeadlineExceeded", res.StatusCode, res.Header.Get(prpc.HeaderGRPCCode), b)
	}
}

// TestStoreTakesNoWrites: while every write fails (a full disk), gRPC
// health is NOT_SERVING, /readyz says why and requests get Unavailable;
// once writes succeed again, health comes back by itself, with no request.
func TestStoreTakesNoWrites(t *testing.T) {
	fs := faultstore.New(memory.New(memory.Options{}))
	srv := startServerOn(t, fs)
	mustCall(t, srv, "admin:CreateSchedulerPool", &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "lab"}, nil)
	hc := healthpb.NewHealthClient(srv.conn)
	serving := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	fs.FailWrites(syscall.ENOSPC)
	req := &swarmingv1.NotifyTasksRequest{SchedulerId: "lab", Notifications: []*swarmingv1.NotifyTasksItem{{Time: at(1), Task: pendingTask("t", "", []string{"pool:lab"})}}}
	if a := swarmingCall(t, srv, "swarming:NotifyTasks", req, nil); a.http != 503 || a.code != codes.Unavailable {
		t.Errorf("NotifyTasks on a full disk: HTTP %d %v %s, want 503 Unavailable", a.http, a.code, a.msg)
	}
	testutil.WaitFor(t, "gRPC health NOT_SERVING", func() bool { return serving() == healthpb.HealthCheckResponse_NOT_SERVING })
	if code, body := httpGet(t, srv, "/readyz"); code != 503 || !strings.Contains(body, "the store takes no writes") || !strings.Contains(body, "no space left on device") {
		t.Errorf("/readyz on a full disk: %d %q", code, body)
	}
	if v, _ := metricValue(t, srv, "qscheduler_store_healthy"); v != 0 {
		t.Errorf("qscheduler_store_healthy = %v on a full disk, want 0", v)
	}
	fs.FailWrites(nil) // room again; no request arrives
	testutil.WaitFor(t, "gRPC health SERVING again", func() bool { return serving() == healthpb.HealthCheckResponse_SERVING })
	if code, body := httpGet(t, srv, "/readyz"); code != 200 {
		t.Errorf("/readyz after the disk has room: %d %q", code, body)
	}
	if v, _ := metricValue(t, srv, "qscheduler_store_outages_total"); v != 1 {
		t.Errorf("qscheduler_store_outages_total = %v, want 1", v)
	}
	mustCall(t, srv, "swarming:NotifyTasks", req, nil)
}
