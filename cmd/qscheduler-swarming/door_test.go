package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/qscheduler-swarming/qscheduler-swarming/internal/testutil"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"google.golang.org/grpc/codes"
)

// TestPollDoorRefusesBeforeReading: with --max-polls-in-flight=1, a pRPC
// AssignTasks whose body never ends holds the door's one place; meanwhile
// another AssignTasks is refused with ResourceExhausted over gRPC, and over
// pRPC even though its body never ends either (so it was not read), while
// NotifyTasks goes through. Once the held call ends, polls are served again.
func TestPollDoorRefusesBeforeReading(t *testing.T) {
	ts := startServer(t, "--max-polls-in-flight=1")
	ctx := context.Background()
	g := ts.grpcClients()
	const pool = "door"
	must(g.admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: pool}))(t)
	url := "http://" + ts.httpAddr + "/prpc" + swarmingv1.ExternalScheduler_AssignTasks_FullMethodName

	// post sends an AssignTasks whose body is whatever is written to the
	// returned pipe, and delivers the answer's code.
	post := func() (*io.PipeWriter, chan codes.Code) {
		pr, pw := io.Pipe()
		got := make(chan codes.Code, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, url, pr)
			req.Header.Set("Content-Type", prpc.ContentTypeJSON)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				got <- codes.Unknown
				return
			}
			defer res.Body.Close()
			_, _ = io.Copy(io.Discard, res.Body)
			got <- prpcCode(res)
		}()
		return pw, got
	}
	holder, held := post()
	if _, err := holder.Write([]byte(`{"schedulerId": "door", `)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the held poll to take the door's place", func() bool {
		_, body := httpGet(t, ts, "/metrics")
		return strings.Contains(body, "\nqscheduler_polls_in_flight 1\n")
	})
	_, err := g.swarming.AssignTasks(ctx, &swarmingv1.AssignTasksRequest{SchedulerId: pool, Time: at(1),
		IdleBots: []*swarmingv1.IdleBot{{BotId: "b1", Dimensions: []string{"pool:door"}}}})
	wantCode(t, err, codes.ResourceExhausted, "AssignTasks calls in flight")

	// Over pRPC, refused without reading a body that never ends.
	blocked, refused := post()
	if code := <-refused; code != codes.ResourceExhausted {
		t.Errorf("a second pRPC poll: %v, want ResourceExhausted before its body is read", code)
	}
	blocked.Close()

	// Notifications do not pass the door.
	notify(t, g, pool, 1, pendingTask("t1", "", []string{"pool:door"}))

	// The held call ends; polls are served again.
	if _, err := io.Copy(holder, strings.NewReader(`"time": "2026-03-01T12:00:02Z"}`)); err != nil {
		t.Fatal(err)
	}
	holder.Close()
	if code := <-held; code != codes.OK {
		t.Errorf("the held poll: %v, want OK", code)
	}
	if a := poll(t, g, pool, "b2", 3, "pool:door"); a == nil || a.TaskId != "t1" {
		t.Errorf("a poll after the door reopened got %v, want t1", a)
	}
	if _, body := httpGet(t, ts, "/metrics"); !strings.Contains(body, "qscheduler_polls_refused_at_door_total") {
		t.Error("/metrics lacks qscheduler_polls_refused_at_door_total")
	}
}

// prpcCode is the gRPC code of a pRPC answer (Unknown without one).
func prpcCode(res *http.Response) codes.Code {
	c, err := strconv.Atoi(res.Header.Get(prpc.HeaderGRPCCode))
	if err != nil {
		return codes.Unknown
	}
	return codes.Code(c)
}
