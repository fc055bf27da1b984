package scheduler_test

import (
	"fmt"
	"strings"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
)

// Example shows the batch loop the service runs for one pool: apply
// Swarming's notifications, answer the bots that poll, then take the
// change delta (which the service commits) and, once it is durable, the
// events (which it emits). A running request is stored inside its worker,
// so the delta deletes the waiting record of a request that started.
func Example() {
	s, err := scheduler.New(&statev1.PoolConfig{AccountConfigs: map[string]*statev1.AccountConfig{
		// One worker-second per second at P0, up to an hour's worth.
		"team": {ChargeRate: []float32{1}, MaxChargeSeconds: 3600},
	}})
	if err != nil {
		panic(err)
	}
	s.TrackChanges() // record what each batch changes, for TakeDelta
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	// Batch 1: Swarming reports two waiting tasks; the first time sets the
	// clock.
	for _, task := range []scheduler.Task{
		{ID: "build-1", Account: "team", EnqueueTime: t0, BaseLabels: []string{"os:linux"}},
		{ID: "test-1", Account: "team", EnqueueTime: t0.Add(time.Second), BaseLabels: []string{"os:linux"}, ProvisionableLabels: []string{"cache:big"}},
	} {
		n := scheduler.Notification{Time: t0.Add(2 * time.Second), Kind: scheduler.NotifyWaiting, Task: task}
		if err := s.Notify(n, false); err != nil {
			panic(err)
		}
	}
	// Two bots poll a second later: the clock advances (the account earns
	// a second at P0), they are marked idle, a pass runs and each gets the
	// task the pass gave it.
	out, err := s.AssignTasks(t0.Add(3*time.Second), []scheduler.IdleWorker{
		{ID: "bot-a", Labels: []string{"os:linux"}},
		{ID: "bot-b", Labels: []string{"os:linux", "cache:big"}},
	})
	if err != nil {
		panic(err)
	}
	for _, a := range out {
		fmt.Printf("%s runs %s (provision required: %v)\n", a.Worker, a.Task, a.ProvisionRequired)
	}
	printBatch(s)

	// Batch 2: build-1 finished a minute later. Its account is charged for
	// every second it ran; the bot is forgotten until it polls again, and a
	// tombstone recognises late reports about the task.
	n := scheduler.Notification{Time: t0.Add(63 * time.Second), Kind: scheduler.NotifyAbsent, Task: scheduler.Task{ID: "build-1"}}
	if err := s.Notify(n, false); err != nil {
		panic(err)
	}
	printBatch(s)

	// Output:
	// bot-a runs build-1 (provision required: false)
	// bot-b runs test-1 (provision required: false)
	// delta: workers [bot-a bot-b], waiting deleted [build-1 test-1], pending entries for [bot-a bot-b]
	// event ENQUEUED build-1
	// event ENQUEUED test-1
	// event ASSIGNED build-1 on bot-a at P0
	// event ASSIGNED test-1 on bot-b at P0
	// delta: workers gone [bot-a], waiting deleted [build-1], tombstones [build-1]
	// event COMPLETED build-1 on bot-a cost [60 0 0 0 0] (RUNNING_TASK_ABSENT)
}

// printBatch ends a batch: the delta (the service commits it) and then the
// events (the service emits them, and hands their memory back).
func printBatch(s *scheduler.Scheduler) {
	d := s.TakeDelta()
	var parts []string
	add := func(what string, ids []string) {
		if len(ids) > 0 {
			parts = append(parts, fmt.Sprintf("%s %v", what, ids))
		}
	}
	var workers, pending, tombstones []string
	for _, w := range d.Workers {
		workers = append(workers, w.Id)
	}
	for _, e := range d.Pending {
		pending = append(pending, e.WorkerId)
	}
	for _, t := range d.Tombstones {
		tombstones = append(tombstones, t.RequestId)
	}
	add("workers", workers)
	add("workers gone", d.DeletedWorkers)
	add("waiting deleted", d.DeletedWaiting)
	add("pending entries for", pending)
	add("tombstones", tombstones)
	fmt.Println("delta: " + strings.Join(parts, ", "))

	events := s.TakeEvents()
	for _, e := range events {
		line := fmt.Sprintf("event %v %s", e.Type, e.Task)
		if e.Worker != "" {
			line += " on " + string(e.Worker)
		}
		switch e.Type {
		case scheduler.EventAssigned:
			line += fmt.Sprintf(" at %v", e.Level)
		case scheduler.EventCompleted:
			line += fmt.Sprintf(" cost %v (%v)", e.Cost, e.Reason)
		}
		fmt.Println(line)
	}
	// The callers are answered; then the batch's changes are filed in the
	// orders View and Callbacks read, before the next batch or any reader.
	s.SettleOrders()
	s.ReuseEvents(events)
}
