package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// benchMedian is benchdata's fixed median duration; -median-runtime scales it.
const benchMedian = 60 * time.Second

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

// pendingSpec is the task as Swarming describes a pending task
// (docs/algorithm.md §4): one slice without provisionable labels, else two.
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

// kill stops bot b's task: it is reported KILLED, then the bot is idle.
// s.mu is held.
func (s *sim) kill(b int, taskID string) {
	bt := s.bots[b]
	bt.state = botKilling
	bt.epoch++
	s.kills = append(s.kills, queued{bot: b, epoch: bt.epoch, task: taskID, state: swarmingv1.TaskSpec_KILLED})
}
