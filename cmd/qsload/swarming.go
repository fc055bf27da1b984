package main

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// setup checks that the server answers and creates the pool and accounts.
func (s *sim) setup(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.c.view.ListSchedulerPools(cctx, &qschedulerv1.ListSchedulerPoolsRequest{}); err != nil {
		return fmt.Errorf("server unreachable over %s at %s: %v", s.cfg.Transport, s.cfg.target(), err)
	}
	if s.cfg.Create {
		_, err := s.c.admin.CreateSchedulerPool(cctx, &qschedulerv1.CreateSchedulerPoolRequest{PoolId: s.cfg.Pool})
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("creating pool %q: %v", s.cfg.Pool, err)
		}
	}
	la, err := s.c.view.ListAccounts(cctx, &qschedulerv1.ListAccountsRequest{PoolId: s.cfg.Pool})
	if err != nil {
		return fmt.Errorf("listing the accounts of pool %q: %v", s.cfg.Pool, err)
	}
	created := 0
	for _, a := range s.w.Accounts {
		if _, ok := la.Accounts[a.ID]; ok || !s.cfg.Create {
			continue
		}
		_, err := s.c.admin.CreateAccount(cctx, &qschedulerv1.CreateAccountRequest{PoolId: s.cfg.Pool, AccountId: a.ID,
			Config: &statev1.AccountConfig{ChargeRate: a.ChargeRate, MaxChargeSeconds: a.MaxChargeSeconds}})
		if err != nil {
			return fmt.Errorf("creating account %q: %v", a.ID, err)
		}
		created++
	}
	s.logf("pool %s: %d accounts existed, %d created", s.cfg.Pool, len(la.Accounts), created)
	return nil
}

func (s *sim) notify(ctx context.Context, kind string, items []*swarmingv1.NotifyTasksItem, callback bool) error {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	t0 := time.Now()
	_, err := s.c.sw.NotifyTasks(cctx, &swarmingv1.NotifyTasksRequest{SchedulerId: s.cfg.Pool, Notifications: items, IsCallback: callback})
	s.record(ctx, kind, time.Since(t0), len(items), err)
	return err
}

// loadBacklog sends the initial tasks; retryable failures are retried.
func (s *sim) loadBacklog(ctx context.Context) (*BacklogStats, error) {
	bs := &BacklogStats{Tasks: len(s.w.Tasks)}
	if len(s.w.Tasks) == 0 {
		return bs, nil
	}
	now := time.Now()
	first := s.w.FirstPass
	t0 := time.Now()
	jobs := make(chan []benchdata.Task)
	var wg sync.WaitGroup
	var retries atomic.Int64
	var failed atomic.Int64
	var fatal atomic.Value
	for range s.cfg.BacklogConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ts := range jobs {
				items := s.addTasks(ts, func(t *benchdata.Task) time.Time { return now.Add(t.Enqueue.Sub(first)) }, timestamppb.Now())
				for attempt := 0; ; attempt++ {
					err := s.notify(ctx, kindNotifyBack, items, false)
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						return
					}
					switch status.Code(err) {
					case codes.ResourceExhausted, codes.Unavailable, codes.DeadlineExceeded:
						if attempt < 8 {
							retries.Add(1)
							time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
							continue
						}
					}
					failed.Add(int64(len(items)))
					fatal.CompareAndSwap(nil, err)
					break
				}
			}
		}()
	}
	for i := 0; i < len(s.w.Tasks); i += s.cfg.BacklogBatch {
		bs.Calls++
		select {
		case jobs <- s.w.Tasks[i:min(i+s.cfg.BacklogBatch, len(s.w.Tasks))]:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	bs.Seconds = time.Since(t0).Seconds()
	bs.ItemsPerSec = perSec(int64(len(s.w.Tasks)), time.Since(t0))
	bs.Retries, bs.Failed = retries.Load(), int(failed.Load())
	if err := ctx.Err(); err != nil {
		return bs, err
	}
	if e := fatal.Load(); e != nil && bs.Failed == bs.Tasks {
		return bs, fmt.Errorf("loading the backlog: every call failed: %v", e)
	}
	return bs, nil
}

type assignJob struct {
	bot  int
	step int
}

// assign makes one AssignTasks call for bot b.
func (s *sim) assign(ctx context.Context, j assignJob) {
	bt := s.bots[j.bot] // id and dims never change
	req := &swarmingv1.AssignTasksRequest{SchedulerId: s.cfg.Pool, Time: timestamppb.Now(),
		IdleBots: []*swarmingv1.IdleBot{{BotId: bt.id, Dimensions: bt.dims}}}
	cctx, cancel := s.callCtx(ctx)
	t0 := time.Now()
	resp, err := s.c.sw.AssignTasks(cctx, req)
	d := time.Since(t0)
	cancel()
	s.record(ctx, kindAssign, d, 0, err)
	sc := s.steps[j.step]
	if err == nil || ctx.Err() == nil {
		sc.rec.add(d, 0, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.pushIdle(j.bot)
		return
	}
	var got *swarmingv1.TaskAssignment
	for _, a := range resp.GetAssignments() {
		if a.BotId == bt.id {
			got = a
		} else {
			s.foreign.Add(1)
		}
	}
	if got == nil {
		s.empty.Add(1)
		s.pushIdle(j.bot)
		return
	}
	s.handedOut.Add(1)
	sc.assigned.Add(1)
	if got.SliceNumber == 1 {
		s.provision.Add(1)
	}
	if tk := s.tasks[got.TaskId]; tk == nil {
		s.unknown.Add(1)
	} else {
		if tk.state == taskHeld && tk.bot != int32(j.bot) {
			if other := s.bots[tk.bot]; other.task == tk.id {
				s.double.Add(1)
			}
		}
		tk.state, tk.bot = taskHeld, int32(j.bot)
	}
	bt.state, bt.task, bt.step = botAssigned, got.TaskId, j.step
	bt.epoch++
	s.confirm = append(s.confirm, queued{bot: j.bot, epoch: bt.epoch, task: got.TaskId})
}

type statusAct struct {
	kind uint8 // 1 confirm, 2 complete, 3 kill
	q    queued
	step int
}

// statusTick sends everything due: RUNNING confirmations, COMPLETED for
// finished tasks (unless final) and KILLED/absent acknowledgements.
func (s *sim) statusTick(ctx context.Context, final bool) {
	now := time.Now()
	ts := timestamppb.New(now)
	var items []*swarmingv1.NotifyTasksItem
	var acts []statusAct
	s.mu.Lock()
	for _, q := range s.confirm {
		bt := s.bots[q.bot]
		if bt.epoch != q.epoch || bt.state != botAssigned {
			continue
		}
		bt.state = botConfirming
		items = append(items, &swarmingv1.NotifyTasksItem{Time: ts, Task: s.laterSpec(q.task, swarmingv1.TaskSpec_RUNNING, bt.id)})
		acts = append(acts, statusAct{kind: 1, q: q, step: bt.step})
	}
	s.confirm = s.confirm[:0]
	for !final && len(s.running) > 0 && !s.running[0].end.After(now) {
		e := heap.Pop(&s.running).(runEntry)
		bt := s.bots[e.bot]
		if bt.epoch != e.epoch || bt.state != botRunning {
			continue
		}
		bt.state = botFinishing
		q := queued{bot: e.bot, epoch: e.epoch, task: bt.task, state: swarmingv1.TaskSpec_COMPLETED}
		items = append(items, &swarmingv1.NotifyTasksItem{Time: ts, Task: s.laterSpec(bt.task, q.state, bt.id)})
		acts = append(acts, statusAct{kind: 2, q: q})
	}
	for _, q := range s.kills {
		botID := ""
		if q.bot >= 0 {
			bt := s.bots[q.bot]
			if bt.epoch != q.epoch || bt.state != botKilling {
				continue
			}
			botID = bt.id
		}
		items = append(items, &swarmingv1.NotifyTasksItem{Time: ts, Task: s.laterSpec(q.task, q.state, botID)})
		acts = append(acts, statusAct{kind: 3, q: q})
	}
	s.kills = s.kills[:0]
	s.mu.Unlock()
	if len(items) == 0 {
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < len(items); i += s.cfg.BacklogBatch {
		j := min(i+s.cfg.BacklogBatch, len(items))
		wg.Add(1)
		go func(items []*swarmingv1.NotifyTasksItem, acts []statusAct) {
			defer wg.Done()
			err := s.notify(ctx, kindNotifyStatus, items, false)
			s.statusDone(acts, err)
		}(items[i:j], acts[i:j])
	}
	wg.Wait()
}

func (s *sim) statusDone(acts []statusAct, err error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.statusItems.Add(int64(len(acts)))
	}
	for _, a := range acts {
		q := a.q
		var bt *bot
		current := false
		if q.bot >= 0 {
			bt = s.bots[q.bot]
			current = bt.epoch == q.epoch
		}
		switch a.kind {
		case 1: // RUNNING
			if err != nil {
				if current && bt.state == botConfirming {
					bt.state = botAssigned
					s.confirm = append(s.confirm, q)
				}
				continue
			}
			s.conf.Add(1)
			s.steps[a.step].confirmed.Add(1)
			if current && bt.state == botConfirming {
				bt.state = botRunning
				bt.end = now.Add(s.duration())
				heap.Push(&s.running, runEntry{end: bt.end, bot: q.bot, epoch: q.epoch})
			}
		case 2: // COMPLETED
			if !current || bt.state != botFinishing {
				continue
			}
			if err != nil {
				bt.state = botRunning
				heap.Push(&s.running, runEntry{end: now, bot: q.bot, epoch: q.epoch})
				continue
			}
			s.completed.Add(1)
			s.doneTask(q.task)
			s.pushIdle(q.bot)
		case 3: // KILLED or absent
			if err != nil {
				s.kills = append(s.kills, q)
				continue
			}
			s.doneTask(q.task)
			if current && bt.state == botKilling {
				s.pushIdle(q.bot)
			}
		}
	}
}

// cron runs GetCancellations and GetCallbacks.
func (s *sim) cron(ctx context.Context) {
	cctx, cancel := s.callCtx(ctx)
	t0 := time.Now()
	cr, err := s.c.sw.GetCancellations(cctx, &swarmingv1.GetCancellationsRequest{SchedulerId: s.cfg.Pool})
	cancel()
	s.record(ctx, kindCancel, time.Since(t0), 0, err)
	if err == nil {
		s.cancellations(cr.GetCancellations())
	}
	cctx, cancel = s.callCtx(ctx)
	t0 = time.Now()
	cb, err := s.c.sw.GetCallbacks(cctx, &swarmingv1.GetCallbacksRequest{SchedulerId: s.cfg.Pool})
	cancel()
	s.record(ctx, kindCallbacks, time.Since(t0), 0, err)
	if err == nil {
		s.answerCallbacks(ctx, cb.GetTaskIds())
	}
}

func (s *sim) cancellations(cs []*swarmingv1.GetCancellationsResponse_Cancellation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		switch c.Reason {
		case swarmingv1.GetCancellationsResponse_Cancellation_PREEMPTED:
			b, ok := s.botIdx[c.BotId]
			if !ok || s.bots[b].task != c.TaskId {
				s.stale.Add(1)
				continue
			}
			switch s.bots[b].state {
			case botAssigned:
				s.aborted.Add(1)
				s.steps[s.bots[b].step].aborted.Add(1)
			case botConfirming, botRunning:
			default: // finishing or already being killed
				s.stale.Add(1)
				continue
			}
			s.preempt.Add(1)
			s.kill(b, c.TaskId)
		default: // ERROR (or an unknown reason)
			if s.errSeen[c.TaskId] {
				continue
			}
			s.errSeen[c.TaskId] = true
			s.errCancels.Add(1)
			if len(s.errSamples) < 5 {
				s.errSamples = append(s.errSamples, fmt.Sprintf("task %s bot %q reason %v: %s", c.TaskId, c.BotId, c.Reason, c.ExtraInfo))
			}
			if tk := s.tasks[c.TaskId]; tk != nil && tk.state == taskHeld && tk.bot >= 0 && s.bots[tk.bot].task == c.TaskId {
				switch s.bots[tk.bot].state {
				case botAssigned:
					s.aborted.Add(1)
					s.steps[s.bots[tk.bot].step].aborted.Add(1)
					s.kill(int(tk.bot), c.TaskId)
				case botConfirming, botRunning:
					s.kill(int(tk.bot), c.TaskId)
				}
				continue
			}
			s.kills = append(s.kills, queued{bot: -1, task: c.TaskId, state: swarmingv1.TaskSpec_CANCELED})
		}
	}
}

func (s *sim) answerCallbacks(ctx context.Context, ids []string) {
	ts := timestamppb.Now()
	var items []*swarmingv1.NotifyTasksItem
	s.mu.Lock()
	for _, id := range ids {
		tk := s.tasks[id]
		if tk == nil {
			s.cbUnk.Add(1)
			continue
		}
		var spec *swarmingv1.TaskSpec
		switch tk.state {
		case taskPending:
			spec = s.pendingSpec(tk)
		case taskHeld:
			spec = s.laterSpec(id, swarmingv1.TaskSpec_RUNNING, s.bots[tk.bot].id)
		default:
			spec = s.laterSpec(id, swarmingv1.TaskSpec_COMPLETED, "")
		}
		items = append(items, &swarmingv1.NotifyTasksItem{Time: ts, Task: spec})
	}
	s.mu.Unlock()
	for i := 0; i < len(items); i += s.cfg.BacklogBatch {
		part := items[i:min(i+s.cfg.BacklogBatch, len(items))]
		if s.notify(ctx, kindNotifyCB, part, true) == nil {
			s.callbacks.Add(int64(len(part)))
		}
	}
}
