package main

// What one request may carry (docs/operations.md, "Limits"): every limit on
// both transports, what a violation gets, and that a request far over a
// limit costs the service little.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"

	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// dims returns n distinct dimensions.
func dims(n int) []string {
	d := make([]string, n)
	for i := range d {
		d[i] = fmt.Sprintf("key%d:value%d", i, i)
	}
	return d
}

// TestRequestLimits: with the default limits, AssignTasks over any limit and
// NotifyTasks with too many items are InvalidArgument naming the field, the
// limit and its flag; a waiting task's slices and tags over a limit are that
// task's error, reported by GetCancellations, while the call's other items
// apply. A poll of one bot with 100,000 dimensions (1.3 MB) is refused
// before it reaches the pool.
func TestRequestLimits(t *testing.T) {
	ts := startServer(t)
	for _, tr := range []struct {
		name string
		c    clients
	}{{"prpc", ts.prpcClients()}, {"grpc", ts.grpcClients()}} {
		t.Run(tr.name, func(t *testing.T) {
			c, ctx := tr.c, context.Background()
			pool := "limits-" + tr.name
			must(c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool}))(t)
			assign := func(bots ...*swarmingv1.IdleBot) error {
				_, err := c.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(1), IdleBots: bots})
				return err
			}

			huge := &swarmingv1.IdleBot{BotId: "huge", Dimensions: dims(100000)}
			if n := proto.Size(huge); n < 1300000 {
				t.Fatalf("the bot is %d bytes", n)
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			err := assign(huge)
			runtime.ReadMemStats(&m1)
			wantCode(t, err, codes.InvalidArgument, "idle_bots[0].dimensions: 100000 values, at most 1024 allowed (--max-bot-dimensions)")
			// Client and server in this process: encoding, sending and
			// decoding 1.3 MB, nothing more.
			if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 64<<20 {
				t.Errorf("the refused poll allocated %d MB", alloc>>20)
			}

			wantCode(t, assign(&swarmingv1.IdleBot{BotId: "b", Dimensions: dims(1025)}), codes.InvalidArgument,
				"idle_bots[0].dimensions: 1025 values, at most 1024 allowed (--max-bot-dimensions)")
			wantCode(t, assign(&swarmingv1.IdleBot{BotId: "b", Dimensions: []string{"pool:lab", strings.Repeat("x", 2049)}}), codes.InvalidArgument,
				"idle_bots[0].dimensions[1]: 2049 bytes, at most 2048 allowed (--max-dimension-bytes)")
			var bots []*swarmingv1.IdleBot
			for i := range 1001 {
				bots = append(bots, &swarmingv1.IdleBot{BotId: fmt.Sprint("b", i)})
			}
			wantCode(t, assign(bots...), codes.InvalidArgument, "idle_bots: 1001 bots, at most 1000 allowed (--max-assign-bots)")
			ip := must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool}))(t)
			if ip.NumIdleBots != 0 || ip.SchedulerTime != nil {
				t.Errorf("refused polls reached the pool: %d idle bots, clock %v", ip.NumIdleBots, ip.SchedulerTime)
			}
			// At the limits, a poll is served.
			if a := poll(t, c, pool, "full", 1, append(dims(1023), strings.Repeat("x", 2048))...); a != nil {
				t.Errorf("nothing waits, yet the bot got %v", a)
			}

			req := &swarmingv1.NotifyTasksRequest{SchedulerId: pool}
			for i := range 10001 {
				req.Notifications = append(req.Notifications, &swarmingv1.NotifyTasksItem{Time: at(2), Task: completed(fmt.Sprint("t", i))})
			}
			_, err = c.swarming.NotifyTasks(ctx, req)
			wantCode(t, err, codes.InvalidArgument, "notifications: 10001 items, at most 10000 allowed (--max-notify-items)")

			manyTags := pendingTask("many-tags", "", []string{"pool:lab"})
			manyTags.Tags = dims(1025)
			longTag := pendingTask("long-tag", "", []string{"pool:lab"})
			longTag.Tags = append(longTag.Tags, strings.Repeat("t", 2049))
			// Tags and slices matter only while a task waits.
			runningTags := running("running", "full")
			runningTags.Tags = dims(2000)
			notify(t, c, pool, 3,
				pendingTask("good", "", []string{"pool:lab"}),
				pendingTask("many-dims", "", dims(257)),
				pendingTask("long-dim", "", []string{"pool:lab"}, []string{strings.Repeat("d", 2049)}),
				manyTags, longTag, runningTags)
			cs := must(c.swarming.GetCancellations(ctx, &swarmingv1.GetCancellationsRequest{SchedulerId: pool}))(t)
			got := map[string]string{}
			for _, x := range cs.Cancellations {
				if x.Reason == swarmingv1.GetCancellationsResponse_Cancellation_ERROR {
					got[x.TaskId] = x.ExtraInfo
				}
			}
			for task, want := range map[string]string{
				"many-dims": "slices[0].dimensions: 257 values, at most 256 allowed (--max-slice-dimensions)",
				"long-dim":  "slices[1].dimensions[0]: 2049 bytes, at most 2048 allowed (--max-dimension-bytes)",
				"many-tags": "tags: 1025 values, at most 1024 allowed (--max-task-tags)",
				"long-tag":  "tags[1]: 2049 bytes, at most 2048 allowed (--max-tag-bytes)",
			} {
				if got[task] != want {
					t.Errorf("task error of %s: %q, want %q", task, got[task], want)
				}
			}
			if len(got) != 4 {
				t.Errorf("task errors %v, want the 4 above", got)
			}
			ip = must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: pool}))(t)
			if ip.NumWaitingTasks != 1 {
				t.Errorf("%d waiting tasks, want good alone", ip.NumWaitingTasks)
			}
		})
	}
}

// TestRequestBytes: a request over --max-request-bytes is InvalidArgument
// naming the flag; over pRPC a Content-Length over it is answered before
// the body is sent.
func TestRequestBytes(t *testing.T) {
	ts := startServer(t, "--max-request-bytes=4096")
	big := &swarmingv1.AssignTasksRequest{SchedulerId: "p", Time: at(0), IdleBots: []*swarmingv1.IdleBot{{BotId: "b", Dimensions: dims(400)}}}
	a := swarmingCall(t, ts, "swarming:AssignTasks", big, nil)
	if a.http != http.StatusRequestEntityTooLarge || a.code != codes.InvalidArgument ||
		a.msg != fmt.Sprintf("request body: %d bytes, at most 4096 allowed (--max-request-bytes)\n", proto.Size(big)) {
		t.Errorf("pRPC: HTTP %d, %v, %q; want 413, InvalidArgument naming --max-request-bytes", a.http, a.code, a.msg)
	}
	_, err := ts.grpcClients().swarming.AssignTasks(context.Background(), big)
	wantCode(t, err, codes.ResourceExhausted, "larger than max")

	// Headers announcing 1 GB, and no body: the answer comes at once.
	conn, err := net.Dial("tcp", ts.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /prpc/swarming.v1.ExternalScheduler/AssignTasks HTTP/1.1\r\nHost: %s\r\nContent-Type: application/prpc; encoding=binary\r\nContent-Length: %d\r\n\r\n", ts.httpAddr, 1<<30)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("X-Prpc-Grpc-Code") != "3" {
		t.Errorf("Content-Length 1 GB: HTTP %d, code %s; want 413 and 3", resp.StatusCode, resp.Header.Get("X-Prpc-Grpc-Code"))
	}
}

// TestCancellationsStaySmall: tasks whose dimensions are huge get task
// errors that quote a bounded prefix of them at most, so that
// GetCancellations stays small: 75 tasks with a 1 MiB dimension once made it
// exceed gRPC's 64 MB limit and fail for the whole pool. Both when the
// dimension is over --max-dimension-bytes and when a limit raised to let it
// through leaves it in an error that quotes it.
func TestCancellationsStaySmall(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		name string
		args []string
		task func(id string) *swarmingv1.TaskSpec
		want string
	}{
		{"over the limit", nil, func(id string) *swarmingv1.TaskSpec {
			return pendingTask(id, "", []string{"pool:lab", huge})
		}, "slices[0].dimensions[1]: 1048576 bytes, at most 2048 allowed (--max-dimension-bytes)"},
		{"quoted in a task error", []string{"--max-dimension-bytes=2097152"}, func(id string) *swarmingv1.TaskSpec {
			return pendingTask(id, "", []string{"pool:lab"}, []string{"pool:lab", huge})
		}, "… (1048576 bytes) is not in slice 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.args...)
			c, ctx := ts.grpcClients(), context.Background()
			must(c.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "p"}))(t)
			for call := range 5 { // 15 MiB a call: under --max-request-bytes
				var tasks []*swarmingv1.TaskSpec
				for i := range 15 {
					tasks = append(tasks, tc.task(fmt.Sprintf("t%d-%d", call, i)))
				}
				notify(t, c, "p", 1, tasks...)
			}
			for _, tr := range []struct {
				name string
				c    clients
			}{{"prpc", ts.prpcClients()}, {"grpc", c}} {
				cs := must(tr.c.swarming.GetCancellations(ctx, &swarmingv1.GetCancellationsRequest{SchedulerId: "p"}))(t)
				if len(cs.Cancellations) != 75 {
					t.Fatalf("%s: %d cancellations, want 75", tr.name, len(cs.Cancellations))
				}
				if n := proto.Size(cs); n > 75*512 {
					t.Errorf("%s: GetCancellations answered %d bytes for 75 tasks", tr.name, n)
				}
				if x := cs.Cancellations[0].ExtraInfo; !strings.Contains(x, tc.want) {
					t.Errorf("%s: extra_info %q, want %q", tr.name, x, tc.want)
				}
			}
		})
	}
}
