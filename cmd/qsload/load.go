package main

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	qschedulerv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/v1"
	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/prpc"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// lateAfter: a call fired later than this after its slot counts as late.
const lateAfter = 10 * time.Millisecond

// benchMedian is benchdata's fixed median duration; -median-runtime scales it.
const benchMedian = 60 * time.Second

// clients are the RPC clients of one transport.
type clients struct {
	sw    swarmingv1.ExternalSchedulerClient
	admin qschedulerv1.QSchedulerAdminClient
	view  qschedulerv1.QSchedulerViewClient
	close func()
}

func (c *Config) target() string {
	if c.Transport == "grpc" {
		return c.GRPCAddr
	}
	return "http://" + c.HTTPAddr
}

// dial returns clients of the configured transport. For gRPC, fastRetry
// shortens the reconnection backoff (startup measurements).
func dial(c *Config, httpAddr, grpcAddr string, fastRetry bool) (*clients, error) {
	var cc grpc.ClientConnInterface
	var closeFn func()
	switch c.Transport {
	case "grpc":
		opts := []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
		}
		if fastRetry {
			opts = append(opts, grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.2, MaxDelay: 50 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}))
		}
		conn, err := grpc.NewClient(grpcAddr, opts...)
		if err != nil {
			return nil, fmt.Errorf("grpc client for %s: %w", grpcAddr, err)
		}
		cc, closeFn = conn, func() { conn.Close() }
	default:
		idle := 2*c.Concurrency + 2*c.BacklogConcurrency + 32
		tr := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        idle,
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		cc = prpc.NewClient("http://"+httpAddr, &http.Client{Transport: tr})
		closeFn = tr.CloseIdleConnections
	}
	return &clients{
		sw:    swarmingv1.NewExternalSchedulerClient(cc),
		admin: qschedulerv1.NewQSchedulerAdminClient(cc),
		view:  qschedulerv1.NewQSchedulerViewClient(cc),
		close: closeFn,
	}, nil
}

// Bot states.
type botState uint8

const (
	botIdle       botState = iota // in the idle queue
	botPolling                    // AssignTasks in flight
	botAssigned                   // has a task; RUNNING not yet sent
	botConfirming                 // RUNNING in flight
	botRunning                    // confirmed; completes at end
	botFinishing                  // COMPLETED in flight
	botKilling                    // KILLED queued or in flight
)

type bot struct {
	id    string
	dims  []string
	state botState
	epoch uint64 // bumped whenever queued work for the bot becomes stale
	task  string
	step  int // ramp step of the assignment
	end   time.Time
}

// Task states.
const (
	taskPending uint8 = iota
	taskHeld          // some bot holds it (assigned .. finishing)
	taskDone
)

type task struct {
	id    string
	t     *benchdata.Task
	enq   time.Time
	state uint8
	bot   int32
}

type runEntry struct {
	end   time.Time
	bot   int
	epoch uint64
}

type runHeap []runEntry

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return h[i].end.Before(h[j].end) }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(runEntry)) }
func (h *runHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

type queued struct {
	bot   int // -1: no bot (an ERROR acknowledgement)
	epoch uint64
	task  string
	state swarmingv1.TaskSpec_State
}

// stepCounters are a ramp step's assignment counts.
type stepCounters struct {
	assigned, confirmed, aborted     atomic.Int64
	noIdle, noWorker, late, notifyIt atomic.Int64
	rec                              *recorder
}

// sim is one run's simulated Swarming.
type sim struct {
	cfg    *Config
	c      *clients
	prefix string
	out    io.Writer

	wmu      sync.Mutex // guards w (NewTasks, Duration)
	w        *benchdata.Workload
	durScale float64

	mu      sync.Mutex
	bots    []*bot
	botIdx  map[string]int
	idle    []int
	tasks   map[string]*task
	confirm []queued
	running runHeap
	kills   []queued
	errSeen map[string]bool

	rec   map[string]*recorder
	steps []*stepCounters
	step  atomic.Int32

	tScheduled, tStart atomic.Int64
	tNoIdle, tNoWorker atomic.Int64
	tLate              atomic.Int64
	handedOut, conf    atomic.Int64
	aborted, provision atomic.Int64
	completed, unknown atomic.Int64
	double, foreign    atomic.Int64
	empty              atomic.Int64
	preempt, stale     atomic.Int64
	errCancels         atomic.Int64
	errSamples         []string
	callbacks, cbUnk   atomic.Int64
	newItems, newDrop  atomic.Int64
	statusItems        atomic.Int64
}

func newSim(cfg *Config, c *clients) *sim {
	s := &sim{
		cfg: cfg, c: c, out: cfg.Out,
		botIdx: map[string]int{}, tasks: map[string]*task{}, errSeen: map[string]bool{},
		rec:      map[string]*recorder{},
		durScale: float64(cfg.MedianRuntime) / float64(benchMedian),
	}
	for _, k := range kinds {
		s.rec[k] = newRecorder()
	}
	switch cfg.TaskPrefix {
	case "auto":
		s.prefix = "r" + strconv.FormatInt(time.Now().Unix(), 36) + "-"
	default:
		s.prefix = cfg.TaskPrefix
	}
	return s
}

func (s *sim) logf(format string, args ...any) {
	if s.out != nil {
		fmt.Fprintf(s.out, format+"\n", args...)
	}
}

func (s *sim) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// record notes one call; calls cut short by the end of the run are not
// counted.
func (s *sim) record(ctx context.Context, kind string, d time.Duration, items int, err error) {
	if err != nil && ctx.Err() != nil {
		return
	}
	s.rec[kind].add(d, items, err)
}

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

func (s *sim) initBots() {
	s.bots = make([]*bot, len(s.w.Bots))
	for i, b := range s.w.Bots {
		dims := append(slices.Clone(b.Labels), "id:"+b.ID)
		slices.Sort(dims)
		s.bots[i] = &bot{id: b.ID, dims: dims}
		s.botIdx[b.ID] = i
		s.idle = append(s.idle, i)
	}
}

// addTasks registers tasks (enqueued at enq(t)) and returns their items.
func (s *sim) addTasks(ts []benchdata.Task, enq func(*benchdata.Task) time.Time, now *timestamppb.Timestamp) []*swarmingv1.NotifyTasksItem {
	items := make([]*swarmingv1.NotifyTasksItem, len(ts))
	s.mu.Lock()
	for i := range ts {
		tk := &task{id: s.prefix + ts[i].ID, t: &ts[i], enq: enq(&ts[i]), bot: -1}
		s.tasks[tk.id] = tk
		items[i] = &swarmingv1.NotifyTasksItem{Time: now, Task: s.pendingSpec(tk)}
	}
	s.mu.Unlock()
	return items
}

// pendingSpec is the task as Swarming describes a pending task (SCHEDULER.md
// §4): one slice without provisionable labels, else two.
func (s *sim) pendingSpec(tk *task) *swarmingv1.TaskSpec {
	t := tk.t
	var sl []*swarmingv1.SliceSpec
	if len(t.ProvisionableLabels) == 0 {
		sl = []*swarmingv1.SliceSpec{{Dimensions: t.BaseLabels}}
	} else {
		all := append(slices.Clone(t.BaseLabels), t.ProvisionableLabels...)
		slices.Sort(all)
		sl = []*swarmingv1.SliceSpec{{Dimensions: all}, {Dimensions: t.BaseLabels}}
	}
	return &swarmingv1.TaskSpec{
		Id: tk.id, Tags: []string{"pool:lab", "qs_account:" + t.Account}, Slices: sl,
		State: swarmingv1.TaskSpec_PENDING, EnqueuedTime: timestamppb.New(tk.enq),
	}
}

// laterSpec is a task after it left PENDING (Swarming keeps sending the
// whole spec; the server reads only id, state and bot).
func (s *sim) laterSpec(id string, st swarmingv1.TaskSpec_State, botID string) *swarmingv1.TaskSpec {
	spec := &swarmingv1.TaskSpec{Id: id, State: st, BotId: botID}
	if tk := s.tasks[id]; tk != nil {
		p := s.pendingSpec(tk)
		spec.Tags, spec.Slices, spec.EnqueuedTime = p.Tags, p.Slices, p.EnqueuedTime
	}
	return spec
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

// pushIdle returns a bot to the idle queue. s.mu is held.
func (s *sim) pushIdle(b int) {
	bt := s.bots[b]
	bt.state, bt.task = botIdle, ""
	bt.epoch++
	s.idle = append(s.idle, b)
}

// popIdle takes the bot idle the longest, or -1.
func (s *sim) popIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.idle) == 0 {
		return -1
	}
	b := s.idle[0]
	s.idle = s.idle[1:]
	if cap(s.idle) > 1024 && len(s.idle) < cap(s.idle)/4 {
		s.idle = slices.Clone(s.idle)
	}
	s.bots[b].state = botPolling
	return b
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

func (s *sim) doneTask(id string) {
	if tk := s.tasks[id]; tk != nil {
		tk.state, tk.bot = taskDone, -1
	}
}

// duration draws a runtime. The workload's stream is not safe for
// concurrent use.
func (s *sim) duration() time.Duration {
	s.wmu.Lock()
	d := s.w.Duration()
	s.wmu.Unlock()
	return time.Duration(float64(d) * s.durScale)
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

// kill stops bot b's task: it is reported KILLED, then the bot is idle.
// s.mu is held.
func (s *sim) kill(b int, taskID string) {
	bt := s.bots[b]
	bt.state = botKilling
	bt.epoch++
	s.kills = append(s.kills, queued{bot: b, epoch: bt.epoch, task: taskID, state: swarmingv1.TaskSpec_KILLED})
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

// pace calls fire for every slot of rate per second during d, open-loop:
// slots are at start + n/rate whatever fire does. It returns early if ctx
// is done.
func pace(ctx context.Context, rate float64, d time.Duration, fire func(slot time.Time, lag time.Duration)) {
	if rate <= 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		return
	}
	start := time.Now()
	total := int64(math.Floor(d.Seconds() * rate))
	per := float64(time.Second) / rate
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for n := int64(0); n < total; {
		next := start.Add(time.Duration(float64(n) * per))
		if w := time.Until(next); w > 0 {
			timer.Reset(w)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		now := time.Now()
		for ; n < total; n++ {
			slot := start.Add(time.Duration(float64(n) * per))
			if slot.After(now) {
				break
			}
			fire(slot, now.Sub(slot))
		}
	}
	if w := time.Until(start.Add(d)); w > 0 {
		timer.Reset(w)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
}

// perSec is n per second of d (0 for an empty d).
func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// run runs the configured mode and returns its summary.
func run(ctx context.Context, cfg *Config) (*Summary, error) {
	if cfg.Out == nil {
		cfg.Out = os.Stderr
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Startup {
		return runStartup(ctx, cfg)
	}
	return runLoad(ctx, cfg)
}

func runLoad(ctx context.Context, cfg *Config) (*Summary, error) {
	c, err := dial(cfg, cfg.HTTPAddr, cfg.GRPCAddr, false)
	if err != nil {
		return nil, err
	}
	defer c.close()
	s := newSim(cfg, c)
	s.w = benchdata.Lab(cfg.Seed, cfg.Bots, cfg.Backlog)
	if err := s.setup(ctx); err != nil {
		return nil, err
	}
	s.initBots()
	sum := &Summary{Mode: "load", Transport: cfg.Transport, Target: cfg.target(), Pool: cfg.Pool, Bots: cfg.Bots}
	if cfg.Ramp {
		sum.Mode = "ramp"
	}

	s.logf("loading a backlog of %d tasks in calls of %d items", cfg.Backlog, cfg.BacklogBatch)
	bs, err := s.loadBacklog(ctx)
	sum.Backlog = bs
	if err != nil {
		return sum, err
	}
	s.logf("backlog loaded in %.2fs (%.0f items/s)", bs.Seconds, bs.ItemsPerSec)

	// Phases: one, or the ramp's steps.
	type phase struct {
		rate float64
		d    time.Duration
	}
	phases := []phase{{cfg.AssignRate, cfg.Duration}}
	if cfg.Ramp {
		phases = phases[:0]
		for _, r := range cfg.RampSteps {
			phases = append(phases, phase{r, cfg.RampStepDuration})
		}
	}
	var total time.Duration
	for _, p := range phases {
		total += p.d
		s.steps = append(s.steps, &stepCounters{rec: newRecorder()})
	}
	statusBase := s.rec[kindNotifyStatus].stats("", 0).Items
	cbBase := s.rec[kindNotifyCB].stats("", 0).Items

	// The run's own context ends the background loops; calls use ctx.
	bg, stopBG := context.WithCancel(ctx)
	var bgWG sync.WaitGroup
	loop := func(period time.Duration, f func()) {
		if period <= 0 {
			return
		}
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			t := time.NewTicker(period)
			defer t.Stop()
			for {
				select {
				case <-bg.Done():
					return
				case <-t.C:
					f()
				}
			}
		}()
	}
	tick := max(10*time.Millisecond, cfg.ConfirmDelay/2)
	loop(tick, func() { s.statusTick(ctx, false) })
	loop(cfg.Cron, func() { s.cron(ctx) })
	phaseStart := time.Now()
	loop(cfg.Report, func() { s.progress(phaseStart) })

	// Callers: at most cfg.Concurrency calls of each kind in flight; a slot
	// that finds them all busy is not made (and counted).
	assignSem := make(chan struct{}, cfg.Concurrency)
	notifySem := make(chan struct{}, cfg.Concurrency)
	var callers sync.WaitGroup

	// New tasks, for the whole run.
	var notifier sync.WaitGroup
	notifier.Add(1)
	go func() {
		defer notifier.Done()
		pace(ctx, cfg.NotifyRate, total, func(slot time.Time, lag time.Duration) {
			now := time.Now()
			s.wmu.Lock()
			ts := s.w.NewTasks(cfg.NotifyBatch, now)
			s.wmu.Unlock()
			items := s.addTasks(ts, func(t *benchdata.Task) time.Time { return t.Enqueue }, timestamppb.New(now))
			select {
			case notifySem <- struct{}{}:
				s.steps[s.step.Load()].notifyIt.Add(int64(len(items)))
				callers.Add(1)
				go func() {
					defer func() { <-notifySem; callers.Done() }()
					if s.notify(ctx, kindNotifyNew, items, false) == nil {
						s.newItems.Add(int64(len(items)))
					}
				}()
			default:
				s.newDrop.Add(1)
				s.mu.Lock()
				for _, it := range items {
					delete(s.tasks, it.Task.Id)
				}
				s.mu.Unlock()
			}
		})
	}()

	// AssignTasks, phase by phase.
	stepTimes := make([]time.Duration, len(phases))
	for i, p := range phases {
		s.step.Store(int32(i))
		if cfg.Ramp {
			s.logf("ramp step %d/%d: %.0f AssignTasks calls/s for %s", i+1, len(phases), p.rate, p.d)
		}
		sc := s.steps[i]
		t0 := time.Now()
		pace(ctx, p.rate, p.d, func(slot time.Time, lag time.Duration) {
			s.tScheduled.Add(1)
			b := s.popIdle()
			if b < 0 {
				s.tNoIdle.Add(1)
				sc.noIdle.Add(1)
				return
			}
			select {
			case assignSem <- struct{}{}:
				s.tStart.Add(1)
				callers.Add(1)
				go func(j assignJob) {
					defer func() { <-assignSem; callers.Done() }()
					s.assign(ctx, j)
				}(assignJob{bot: b, step: i})
				if lag > lateAfter {
					s.tLate.Add(1)
					sc.late.Add(1)
				}
			default:
				s.tNoWorker.Add(1)
				sc.noWorker.Add(1)
				s.mu.Lock()
				s.pushIdle(b)
				s.mu.Unlock()
			}
		})
		stepTimes[i] = time.Since(t0)
	}
	notifier.Wait()
	measured := time.Since(phaseStart)
	endStatus := s.rec[kindNotifyStatus].stats("", 0).Items
	endCB := s.rec[kindNotifyCB].stats("", 0).Items
	callers.Wait()
	stopBG()
	bgWG.Wait()
	// Confirm every assignment still unconfirmed (and send pending kills).
	for range 5 {
		s.statusTick(ctx, true)
		s.mu.Lock()
		left := len(s.confirm) + len(s.kills)
		s.mu.Unlock()
		if left == 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	sum.Seconds = measured.Seconds()
	for _, k := range kinds {
		over := measured
		if k == kindNotifyBack {
			over = time.Duration(bs.Seconds * float64(time.Second))
		}
		sum.RPCs = append(sum.RPCs, s.rec[k].stats(k, over))
	}
	sum.AssignTicks = AssignTicks{Scheduled: s.tScheduled.Load(), Started: s.tStart.Load(), NoIdleBot: s.tNoIdle.Load(), NoWorker: s.tNoWorker.Load(), Late: s.tLate.Load()}
	s.mu.Lock()
	var unconfirmed int64
	for _, b := range s.bots {
		if b.state == botAssigned || b.state == botConfirming {
			unconfirmed++
		}
	}
	sum.ErrorSamples = slices.Clone(s.errSamples)
	s.mu.Unlock()
	sum.Assignments = Assignments{
		HandedOut: s.handedOut.Load(), Confirmed: s.conf.Load(), AbortedBeforeConfirm: s.aborted.Load(), Unconfirmed: unconfirmed,
		ProvisionRequired: s.provision.Load(), Completed: s.completed.Load(), UnknownTask: s.unknown.Load(),
		DoubleAssigned: s.double.Load(), ForeignBot: s.foreign.Load(), EmptyAnswers: s.empty.Load(),
	}
	sum.Preemptions, sum.StaleCancels, sum.ErrorCancels = s.preempt.Load(), s.stale.Load(), s.errCancels.Load()
	sum.Callbacks, sum.CallbacksUnk = s.callbacks.Load(), s.cbUnk.Load()
	sum.NewItems, sum.NewDropped = s.newItems.Load(), s.newDrop.Load()
	sum.NewItemsPerSec = perSec(sum.NewItems, measured)
	sum.StatusItems = s.statusItems.Load()
	sum.NotifyItemsPerSec = perSec(sum.NewItems+(endStatus-statusBase)+(endCB-cbBase), measured)
	if cfg.Ramp {
		sum.Ramp = s.rampResult(stepTimes, func(i int) float64 { return phases[i].rate })
	}
	sum.ClientCPUSeconds = cpuSeconds()
	return sum, ctx.Err()
}

func (s *sim) rampResult(stepTimes []time.Duration, target func(int) float64) *RampResult {
	r := &RampResult{P99TargetMs: ms(s.cfg.P99Target)}
	for i, sc := range s.steps {
		st := sc.rec.stats("", stepTimes[i])
		assigned, confirmed := sc.assigned.Load(), sc.confirmed.Load()
		step := RampStep{
			Target: target(i), Seconds: stepTimes[i].Seconds(), Calls: st.Calls, OK: st.OK, Errors: st.Errors,
			P50Ms: st.P50Ms, P90Ms: st.P90Ms, P99Ms: st.P99Ms, MaxMs: st.MaxMs,
			Assigned: assigned, Confirmed: confirmed,
			NoIdleBot: sc.noIdle.Load(), NoWorker: sc.noWorker.Load(), Late: sc.late.Load(),
			NotifyPerSec: perSec(sc.notifyIt.Load(), stepTimes[i]),
		}
		useful := st.OK - (assigned - confirmed)
		step.Achieved = perSec(useful, stepTimes[i])
		step.BotsStarved = float64(step.NoIdleBot) > 0.05*step.Target*step.Seconds
		var why []string
		if st.P99Ms > r.P99TargetMs {
			why = append(why, fmt.Sprintf("p99 %s > %s", fmtMs(st.P99Ms), fmtMs(r.P99TargetMs)))
		}
		if step.Achieved < 0.95*step.Target {
			w := fmt.Sprintf("achieved %.0f/s < 95%%", step.Achieved)
			if step.BotsStarved {
				w += " (no idle bot: limited by the workload, not the server)"
			}
			why = append(why, w)
		}
		step.Pass = len(why) == 0
		for i, w := range why {
			if i > 0 {
				step.Why += "; "
			}
			step.Why += w
		}
		if step.Pass && step.Target > r.PeakRate {
			r.PeakRate = step.Target
		}
		r.Steps = append(r.Steps, step)
	}
	return r
}

// progress prints one line about the last interval.
func (s *sim) progress(start time.Time) {
	ac, ae, _, ap50, ap99 := s.rec[kindAssign].interval()
	nc, ne, ni, np50, np99 := s.rec[kindNotifyNew].interval()
	_, se, si, _, sp99 := s.rec[kindNotifyStatus].interval()
	per := s.cfg.Report.Seconds()
	s.mu.Lock()
	idle := len(s.idle)
	var busy int
	for _, b := range s.bots {
		if b.state >= botAssigned {
			busy++
		}
	}
	s.mu.Unlock()
	step := ""
	if s.cfg.Ramp {
		step = fmt.Sprintf(" step=%d", s.step.Load()+1)
	}
	s.logf("t=%3.0fs%s assign %.0f/s p50=%s p99=%s err=%d noidle=%d noworker=%d | handed=%d confirmed=%d preempted=%d idle=%d busy=%d | new %.0f items/s (%.0f calls/s) p50=%s p99=%s err=%d | status %.0f items/s p99=%s err=%d",
		time.Since(start).Seconds(), step, float64(ac-ae)/per, fmtMs(ms(ap50)), fmtMs(ms(ap99)), ae, s.tNoIdle.Load(), s.tNoWorker.Load(),
		s.handedOut.Load(), s.conf.Load(), s.preempt.Load(), idle, busy,
		float64(ni)/per, float64(nc-ne)/per, fmtMs(ms(np50)), fmtMs(ms(np99)), ne,
		float64(si)/per, fmtMs(ms(sp99)), se)
}
