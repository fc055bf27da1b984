package main

// The worst inputs measured against the service from outside, replayed
// against a real server in this process, over native gRPC and pRPC: huge
// dimensions, times far in the future, bytes that do not decode, and
// 100,000 idle bots polling (not under -short). Afterwards the server
// must hold only what it accepted, answer ordinary calls, be ready, and
// keep no more memory than that state needs (read with runtime.MemStats:
// the server runs in the test process).

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// heapAfterGC is the live heap of the process (server and test), after two
// collections so that sync.Pool victims are gone too.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// hostileTransport is one way to call the service: typed clients, and raw
// bytes answered with a code.
type hostileTransport struct {
	name string
	c    clients
	raw  func(t *testing.T, method string, contentType string, body []byte) (codes.Code, string)
}

func hostileTransports(ts *testServer) []hostileTransport {
	return []hostileTransport{
		{"grpc", ts.grpcClients(), func(t *testing.T, method, _ string, body []byte) (codes.Code, string) {
			t.Helper()
			var out []byte
			err := ts.conn.Invoke(context.Background(), method, body, &out, grpc.ForceCodecV2(rawCodec{}))
			return status.Code(err), status.Convert(err).Message()
		}},
		{"prpc", ts.prpcClients(), func(t *testing.T, method, contentType string, body []byte) (codes.Code, string) {
			t.Helper()
			res, err := http.Post("http://"+ts.httpAddr+"/prpc"+method, contentType, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var b bytes.Buffer
			_, _ = b.ReadFrom(res.Body)
			code, err := strconv.Atoi(res.Header.Get(prpc.HeaderGRPCCode))
			if err != nil {
				t.Fatalf("HTTP %d without %s: %q", res.StatusCode, prpc.HeaderGRPCCode, b.String())
			}
			if res.StatusCode != prpc.HTTPStatus(codes.Code(code)) && res.StatusCode != http.StatusUnsupportedMediaType {
				t.Errorf("code %v with HTTP %d", codes.Code(code), res.StatusCode)
			}
			return codes.Code(code), b.String()
		}},
	}
}

// TestHostileInputs replays the hostile inputs on one pool and checks,
// after each and at the end, the codes, the pool's state and the heap.
func TestHostileInputs(t *testing.T) {
	start := time.Now()
	ts := startServer(t)
	ctx := context.Background()
	trs := hostileTransports(ts)
	g := trs[0].c
	const pool = "lab"
	must(g.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool}))(t)

	// What the pool must hold at the end: the tasks accepted as waiting,
	// the task errors, the clock.
	waiting := map[string]bool{}
	taskErrors := map[string]string{} // task id → the text of its error
	linux := []string{"pool:lab", "os:linux"}
	notify(t, g, pool, 1, pendingTask("good-0", "", linux))
	waiting["good-0"] = true
	clock := at(1).AsTime()

	inspect := func(t *testing.T) *qschedulerv1.InspectPoolResponse {
		t.Helper()
		return must(g.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool, MaxItems: 1000}))(t)
	}
	// holdsAccepted checks that the pool holds what was accepted, nothing
	// that was refused: its clock, waiting tasks, no bot.
	holdsAccepted := func(t *testing.T) {
		t.Helper()
		ip := inspect(t)
		if got := ip.SchedulerTime.AsTime(); !got.Equal(clock) {
			t.Errorf("the pool's clock is %v, want %v (the last accepted time)", got, clock)
		}
		var ids []string
		for _, w := range ip.WaitingTasks {
			ids = append(ids, w.Id)
		}
		if int(ip.NumWaitingTasks) != len(waiting) || ip.NumIdleBots != 0 || ip.NumRunningTasks != 0 {
			t.Errorf("the pool holds %d waiting tasks %v, %d idle bots, %d running; want the %d accepted, no bot",
				ip.NumWaitingTasks, ids, ip.NumIdleBots, ip.NumRunningTasks, len(waiting))
		}
		for _, id := range ids {
			if !waiting[id] {
				t.Errorf("task %q waits, but was never accepted as waiting", id)
			}
		}
	}

	base := heapAfterGC()

	t.Run("huge dimensions", func(t *testing.T) {
		huge := strings.Repeat("x", 1<<20)
		for _, tr := range trs {
			// A bot with 100,000 dimensions: refused before it reaches the pool.
			bot := &swarmingv1.IdleBot{BotId: "huge-" + tr.name, Dimensions: dims(100000)}
			if n := proto.Size(bot); n < 1300000 {
				t.Fatalf("the bot is only %d bytes", n)
			}
			_, err := tr.c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(2), IdleBots: []*swarmingv1.IdleBot{bot}})
			wantCode(t, err, codes.InvalidArgument, "idle_bots[0].dimensions: 100000 values, at most 1024 allowed (--max-bot-dimensions)")
			holdsAccepted(t)

			// A slice with a 1 MiB dimension: that task's error; the
			// call's other task applies.
			id := "huge-slice-" + tr.name
			notify(t, tr.c, pool, 2, pendingTask(id, "", []string{"pool:lab", huge}), pendingTask("good-"+tr.name, "", linux))
			waiting["good-"+tr.name] = true
			taskErrors[id] = "slices[0].dimensions[1]: 1048576 bytes, at most 2048 allowed (--max-dimension-bytes)"
			clock = at(2).AsTime()
			holdsAccepted(t)
		}

		// 75 tasks with a 1 MiB dimension, 15 a call (15 MiB, under
		// --max-request-bytes), on both transports in turn. (At the
		// pool's clock: items that become task errors do not move it.)
		for call := range 5 {
			var tasks []*swarmingv1.TaskSpec
			for i := range 15 {
				id := fmt.Sprintf("huge-%d-%d", call, i)
				tasks = append(tasks, pendingTask(id, "", []string{"pool:lab", huge}))
				taskErrors[id] = "slices[0].dimensions[1]: 1048576 bytes, at most 2048 allowed (--max-dimension-bytes)"
			}
			notify(t, trs[call%2].c, pool, 2, tasks...)
		}
		holdsAccepted(t)
		for _, tr := range trs {
			cs := must(tr.c.swarming.GetCancellations(ctx, &swarmingv1.GetCancellationsRequest{SchedulerId: pool}))(t)
			// 77 texts of about 100 bytes: far under 4 MiB (Swarming's
			// client) and gRPC's 64 MiB.
			if n := proto.Size(cs); n > len(taskErrors)*512 {
				t.Errorf("%s: GetCancellations answered %d bytes for %d tasks", tr.name, n, len(taskErrors))
			}
			got := map[string]bool{}
			for _, c := range cs.Cancellations {
				want, ok := taskErrors[c.TaskId]
				switch {
				case c.Reason != swarmingv1.GetCancellationsResponse_Cancellation_ERROR || !ok:
					t.Errorf("%s: unexpected cancellation %v", tr.name, c)
				case c.ExtraInfo != want:
					t.Errorf("%s: task error of %s: %q, want %q", tr.name, c.TaskId, c.ExtraInfo, want)
				}
				got[c.TaskId] = true
			}
			if len(got) != len(taskErrors) {
				t.Errorf("%s: %d task errors, want %d", tr.name, len(got), len(taskErrors))
			}
		}
		// 77 MiB went in; what stays is a few hundred bytes a task.
		if grown := int64(heapAfterGC()) - int64(base); grown > 16<<20 {
			t.Errorf("the heap grew by %d MiB after the huge dimensions", grown>>20)
		} else {
			t.Logf("the heap grew by %d KiB after 77 MiB of huge dimensions", grown>>10)
		}
	})

	t.Run("far-future times", func(t *testing.T) {
		y2099 := timestamppb.New(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
		for _, tr := range trs {
			_, err := tr.c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: y2099,
				IdleBots: []*swarmingv1.IdleBot{{BotId: "future-" + tr.name, Dimensions: linux}}})
			wantCode(t, err, codes.InvalidArgument, "time: 2099-01-01T00:00:00Z is ")
			wantCode(t, err, codes.InvalidArgument, "ahead of the server's clock")
			// The second item is from 2099: the whole call is refused, the
			// first item with it.
			_, err = tr.c.swarming.NotifyTasks(ctx, &swarmingv1.NotifyTasksRequest{SchedulerId: pool, Notifications: []*swarmingv1.NotifyTasksItem{
				{Time: at(4), Task: pendingTask("before-future-"+tr.name, "", linux)},
				{Time: y2099, Task: pendingTask("future-"+tr.name, "", linux)},
			}})
			wantCode(t, err, codes.InvalidArgument, "notifications[1].time: 2099-01-01T00:00:00Z is ")
			// A time the scheduler cannot hold at all (after 2116).
			_, err = tr.c.swarming.NotifyTasks(ctx, &swarmingv1.NotifyTasksRequest{SchedulerId: pool, Notifications: []*swarmingv1.NotifyTasksItem{
				{Time: &timestamppb.Timestamp{Seconds: 253402300799}, Task: &swarmingv1.TaskSpec{Id: "far-" + tr.name, State: swarmingv1.TaskSpec_COMPLETED}},
			}})
			wantCode(t, err, codes.InvalidArgument, "notifications[0].time")
			holdsAccepted(t)
		}
	})

	t.Run("malformed bytes", func(t *testing.T) {
		valid := func(m proto.Message) []byte {
			b, err := proto.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		notifyBytes := valid(&swarmingv1.NotifyTasksRequest{SchedulerId: pool, Notifications: []*swarmingv1.NotifyTasksItem{
			{Time: at(5), Task: pendingTask("malformed", "", []string{"pool:lab", "MARK"})}}})
		assignBytes := valid(&swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(5), IdleBots: []*swarmingv1.IdleBot{{BotId: "malformed-bot", Dimensions: linux}}})
		notifyMethod, assignMethod := swarmingv1.ExternalScheduler_NotifyTasks_FullMethodName, swarmingv1.ExternalScheduler_AssignTasks_FullMethodName
		for _, tc := range []struct {
			name, method string
			body         []byte
			decodes      bool // the protobuf decoder takes it (then the handler refuses it)
		}{
			{"truncated notify", notifyMethod, notifyBytes[:len(notifyBytes)-3], false},
			{"truncated assign", assignMethod, assignBytes[:len(assignBytes)-1], false},
			{"length past the end", assignMethod, []byte("\x0a\x7flab"), false},
			{"invalid UTF-8 in scheduler_id", assignMethod, []byte("\x0a\x03l\xffb"), false},
			{"invalid UTF-8 in a dimension", notifyMethod, bytes.Replace(notifyBytes, []byte("MARK"), []byte("M\xfeRK"), 1), false},
			{"invalid UTF-8 in a bot id", assignMethod, bytes.Replace(assignBytes, []byte("malformed-bot"), []byte("malformed\xc3bot"), 1), false},
			{"wire type 7", assignMethod, []byte("\x0a\x03lab\x1f"), false},
			{"group never ended", assignMethod, []byte("\x0a\x03lab\x13"), false},
			{"varint too long", assignMethod, []byte("\x0a\x03lab\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), false},
			// A known field with another wire type is an unknown field to
			// the decoder; the request then lacks its time.
			{"time as fixed32", assignMethod, []byte("\x0a\x03lab\x1d\x00\x00\x00\x00"), true},
			{"scheduler_id as varint", notifyMethod, []byte("\x08\x01"), true},
			{"garbage", notifyMethod, []byte("\xff\xff\xff\xff"), false},
		} {
			if err := proto.Unmarshal(tc.body, &swarmingv1.NotifyTasksRequest{}); (err == nil) != tc.decodes && tc.method == notifyMethod {
				t.Fatalf("%s: the decoder says %v", tc.name, err)
			}
			if err := proto.Unmarshal(tc.body, &swarmingv1.AssignTasksRequest{}); (err == nil) != tc.decodes && tc.method == assignMethod {
				t.Fatalf("%s: the decoder says %v", tc.name, err)
			}
			for _, tr := range trs {
				if code, msg := tr.raw(t, tc.method, prpc.ContentTypeBinary, tc.body); code != codes.InvalidArgument {
					t.Errorf("%s over %s: %v %q, want InvalidArgument", tc.name, tr.name, code, msg)
				}
			}
		}
		// JSON and text of the wrong shape, over pRPC.
		for _, tc := range []struct{ ct, body string }{
			{prpc.ContentTypeJSON, `{"schedulerId": 5}`},
			{prpc.ContentTypeJSON, `{"schedulerId": "lab", "idleBots": "bot"}`},
			{prpc.ContentTypeJSON, `{"schedulerId": "lab", "time": "2099-13-45T00:00:00Z"}`},
			{prpc.ContentTypeJSON, `{"schedulerId": "l` + "\xff" + `b"}`},
			{prpc.ContentTypeJSON, `{"schedulerId": "lab"`},
			{prpc.ContentTypeJSON, `[]`},
			{prpc.ContentTypeText, `scheduler_id: 5`},
			{prpc.ContentTypeText, `scheduler_id: "l` + "\xff" + `b"`},
			{prpc.ContentTypeText, `idle_bots { bot_id: "b" `},
		} {
			if code, msg := trs[1].raw(t, assignMethod, tc.ct, []byte(tc.body)); code != codes.InvalidArgument {
				t.Errorf("%s %q over prpc: %v %q, want InvalidArgument", tc.ct, tc.body, code, msg)
			}
		}
		holdsAccepted(t)
	})

	t.Run("100,000 idle bots", func(t *testing.T) {
		if testing.Short() {
			t.Skip("100,000 idle bots: about 2 s")
		}
		hostileIdleBots(t, ts, base)
	})

	t.Run("afterwards", func(t *testing.T) {
		// An ordinary task and poll are served.
		notify(t, g, pool, 10, pendingTask("final", "", []string{"pool:lab", "final:1"}))
		clock = at(10).AsTime()
		waiting["final"] = true
		holdsAccepted(t)
		a := poll(t, trs[1].c, pool, "final-bot", 11, "pool:lab", "final:1")
		if a == nil || a.TaskId != "final" || a.SliceNumber != 0 {
			t.Fatalf("the final poll got %v, want the final task", a)
		}
		clock = at(11).AsTime()
		delete(waiting, "final")

		if code, body := httpGet(t, ts, "/readyz"); code != http.StatusOK {
			t.Errorf("/readyz: %d %q", code, body)
		}
		ip := inspect(t)
		var ids []string
		for _, w := range ip.WaitingTasks {
			ids = append(ids, w.Id)
		}
		slices.Sort(ids)
		want := slices.Sorted(func(yield func(string) bool) {
			for id := range waiting {
				if !yield(id) {
					return
				}
			}
		})
		if !slices.Equal(ids, want) || ip.NumRunningTasks != 1 || len(ip.RunningTasks) != 1 ||
			ip.RunningTasks[0].Id != "final" || ip.RunningTasks[0].BotId != "final-bot" || ip.NumIdleBots != 0 {
			t.Errorf("the pool holds waiting %v, running %v, %d idle bots; want waiting %v, final on final-bot", ids, ip.RunningTasks, ip.NumIdleBots, want)
		}
		if got := ip.SchedulerTime.AsTime(); !got.Equal(clock) {
			t.Errorf("the pool's clock is %v, want %v", got, clock)
		}
		cs := must(g.swarming.GetCancellations(ctx, &swarmingv1.GetCancellationsRequest{SchedulerId: pool}))(t)
		if len(cs.Cancellations) != len(taskErrors) {
			t.Errorf("%d cancellations, want the %d task errors", len(cs.Cancellations), len(taskErrors))
		}
		t.Logf("the hostile inputs took %v", time.Since(start).Round(time.Millisecond))
	})
}

// hostileIdleBots: 100,000 idle bots poll a pool of their own, in calls of
// --max-assign-bots (1,000) bots, from a few callers at once, while a task
// no bot matches waits; the live heap stays under 1 GiB (0.5 GiB is the
// target; it was 1.5 GiB before idle bots cost linear memory, about
// 0.1 GiB since), and a later poll is served.
func hostileIdleBots(t *testing.T, ts *testServer, base uint64) {
	const (
		pool    = "idle"
		nBots   = 100000
		perCall = 1000 // the default --max-assign-bots
		callers = 4
	)
	ctx := context.Background()
	g := ts.grpcClients()
	must(g.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool}))(t)
	// About 20 dimensions a bot, as Swarming's: a unique id, nested os,
	// cpu and gpu values, a model, a zone.
	botDims := func(i int) []string {
		h := uint64(i)*0x9e3779b97f4a7c15 + 0x9e3779b97f4a7c15
		h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9
		h ^= h >> 27
		pick := func(k int) int {
			v := int(h % uint64(k))
			h /= uint64(k)
			return v
		}
		d := []string{
			"id:bot-" + strconv.Itoa(i), "pool:idle", "python:3", "model:m" + strconv.Itoa(pick(36)),
			[]string{"python:3.8", "python:3.11"}[pick(2)], []string{"zone:us", "zone:eu"}[pick(2)],
			[]string{"cores:8", "cores:16", "cores:32", "cores:64"}[pick(4)], []string{"kvm:0", "kvm:1"}[pick(2)],
			"zone:" + []string{"us-central1", "europe-west4"}[pick(2)] + "-" + []string{"a", "b", "c"}[pick(3)],
		}
		switch pick(3) {
		case 0:
			d = append(d, "os:Linux", "os:Ubuntu", []string{"os:Ubuntu-20.04", "os:Ubuntu-22.04"}[pick(2)], "cpu:x86", "cpu:x86-64", "cpu:x86-64-avx2")
		case 1:
			d = append(d, "os:Windows", "os:Windows-10", []string{"os:Windows-10-19045", "os:Windows-11-22631"}[pick(2)], "cpu:x86", "cpu:x86-64", "cpu:x86-64-avx2")
		default:
			d = append(d, "os:Mac", []string{"os:Mac-13", "os:Mac-14"}[pick(2)], "cpu:arm", "cpu:arm64", "cpu:arm64-64")
		}
		switch pick(5) {
		case 0, 1, 2:
			d = append(d, "gpu:none")
		case 3:
			d = append(d, "gpu:10de", "gpu:10de:"+[]string{"2184", "1cb3", "2489"}[pick(3)])
		default:
			d = append(d, "gpu:8086", "gpu:8086:"+[]string{"9bc5", "3e92"}[pick(2)])
		}
		return d
	}
	// A task no bot matches, though most of its dimensions are common: every
	// pass considers every idle bot for it.
	notify(t, g, pool, 20, pendingTask("unmatched", "", []string{"cpu:x86-64", "gpu:10de:ffff", "os:Ubuntu", "pool:idle"}))
	began := time.Now()
	calls := make(chan int, nBots/perCall)
	for c := range nBots / perCall {
		calls <- c
	}
	close(calls)
	var wg sync.WaitGroup
	var shed atomic.Int64
	errs := make(chan error, callers)
	for k := range callers {
		// Half the callers speak pRPC, as Swarming does, half gRPC.
		c := []clients{g, ts.prpcClients()}[k%2]
		wg.Go(func() {
			for call := range calls {
				req := &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(20)}
				for i := call * perCall; i < (call+1)*perCall; i++ {
					req.IdleBots = append(req.IdleBots, &swarmingv1.IdleBot{BotId: "bot-" + strconv.Itoa(i), Dimensions: botDims(i)})
				}
				resp, err := c.swarming.AssignTasks(ctx, req)
				// A shed poll costs nothing: the bots poll again.
				for try := 0; status.Code(err) == codes.ResourceExhausted && try < 1000; try++ {
					shed.Add(1)
					resp, err = c.swarming.AssignTasks(ctx, req)
				}
				if err == nil && len(resp.Assignments) != 0 {
					err = fmt.Errorf("nothing waits, yet %d assignments", len(resp.Assignments))
				}
				if err != nil {
					errs <- fmt.Errorf("call %d: %w", call, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	polled := time.Since(began)
	heap := heapAfterGC()
	t.Logf("%d idle bots polled in %v (%d calls shed and repeated); live heap %d MiB (%d MiB more than before the hostile inputs)",
		nBots, polled.Round(time.Millisecond), shed.Load(), heap>>20, (int64(heap)-int64(base))>>20)
	if heap > 1<<30 {
		t.Errorf("the live heap is %d MiB with %d idle bots, want under 1 GiB", heap>>20, nBots)
	}
	ip := must(g.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool, MaxItems: 10}))(t)
	if ip.NumIdleBots != nBots {
		t.Errorf("%d idle bots, want %d", ip.NumIdleBots, nBots)
	}
	// A later pass: a task for one of them, and its poll.
	notify(t, g, pool, 21, pendingTask("for-77777", "", []string{"pool:idle", "id:bot-77777"}))
	if ip.NumWaitingTasks != 1 {
		t.Errorf("%d waiting tasks, want the unmatched one", ip.NumWaitingTasks)
	}
	passStart := time.Now()
	a := poll(t, g, pool, "bot-77777", 22, botDims(77777)...)
	if a == nil || a.TaskId != "for-77777" {
		t.Errorf("bot-77777 got %v, want for-77777", a)
	}
	t.Logf("a poll among %d idle bots took %v", nBots, time.Since(passStart).Round(time.Millisecond))
}
