package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/qscheduler-swarming/qscheduler-swarming/nodestore/memory"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	"google.golang.org/protobuf/testing/protocmp"
)

// TestTwoReplicas: two servers on one store serve one pool, Swarming's
// calls going to either in turn, one over gRPC and one over pRPC. The pool
// created through one is served by the other; each task goes to one bot
// only, every task notified is accounted for, the replicas' commits
// conflict and are resolved (qscheduler_commit_conflicts_total), and
// InspectPool and ListSchedulerPools answer the same from both.
func TestTwoReplicas(t *testing.T) {
	store := memory.New(memory.Options{})
	a, b := startServerOn(t, store), startServerOn(t, store)
	reps := []clients{a.grpcClients(), b.prpcClients()}
	ctx := context.Background()
	must(reps[0].admin.CreateSchedulerPool(ctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: "lab"}))(t)

	const tasks, bots = 60, 8
	for i := range tasks {
		notify(t, reps[i%2], "lab", float64(i), pendingTask(fmt.Sprintf("t%02d", i), "", []string{"pool:lab"}))
	}
	owner := map[string]string{} // task -> bot
	for round := range 6 {
		for i := range bots {
			bot := fmt.Sprintf("bot%d", i)
			sec := float64(100 + round*10 + i)
			c := reps[(round+i)%2]
			if as := poll(t, c, "lab", bot, sec, "pool:lab", "id:"+bot); as != nil {
				if prev, dup := owner[as.TaskId]; dup {
					t.Fatalf("task %s given to %s and to %s", as.TaskId, prev, bot)
				}
				owner[as.TaskId] = bot
				// The other replica hears that it runs, then that it ended.
				notify(t, reps[(round+i+1)%2], "lab", sec+1, running(as.TaskId, bot))
				notify(t, reps[(round+i)%2], "lab", sec+2, completed(as.TaskId))
			}
		}
	}
	if len(owner) != 6*bots {
		t.Errorf("%d tasks assigned over 6 rounds of %d idle bots, want %d", len(owner), bots, 6*bots)
	}

	var views [2]*qschedulerv1.InspectPoolResponse
	for i, c := range reps {
		views[i] = must(c.view.InspectPool(ctx, &qschedulerv1.InspectPoolRequest{PoolId: "lab", MaxItems: 100}))(t)
		if got := views[i].NumWaitingTasks + int32(len(owner)); got != tasks {
			t.Errorf("replica %d: %d waiting + %d assigned and ended = %d, want the %d notified", i, views[i].NumWaitingTasks, len(owner), got, tasks)
		}
		ids := must(c.view.ListSchedulerPools(ctx, &qschedulerv1.ListSchedulerPoolsRequest{}))(t)
		if len(ids.PoolIds) != 1 || ids.PoolIds[0] != "lab" {
			t.Errorf("replica %d lists %v, want [lab]", i, ids.PoolIds)
		}
	}
	if diff := cmp.Diff(views[0], views[1], protocmp.Transform()); diff != "" {
		t.Errorf("InspectPool differs between the replicas (-a +b):\n%s", diff)
	}
	var conflicts float64
	for _, ts := range []*testServer{a, b} {
		v, _ := metricValue(t, ts, "qscheduler_commit_conflicts_total", "pool=lab")
		conflicts += v
	}
	if conflicts == 0 {
		t.Error("no commit conflicted: the replicas did not write over each other")
	}
}
