package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

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
	var good, made int64
	for _, r := range sum.RPCs {
		if r.Kind != kindNotifyBack {
			good += r.OK
			made += r.Calls
		}
	}
	sum.GoodputPerSec, sum.OfferedPerSec = perSec(good, measured), perSec(made, measured)
	sum.ClientCPUSeconds = cpuSeconds()
	if cfg.ServerPID > 0 {
		m, err := serverMemory(cfg.ServerPID)
		if err != nil {
			s.logf("server memory: %v", err)
		}
		sum.Server = m
	}
	return sum, ctx.Err()
}

// serverMemory reads the peak and current resident set of process pid.
func serverMemory(pid int) (*ServerMemory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := &ServerMemory{PID: pid}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var kb float64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%f kB", &kb); err != nil {
			continue
		}
		switch name {
		case "VmHWM":
			m.PeakRSSMiB = kb / 1024
		case "VmRSS":
			m.RSSMiB = kb / 1024
		}
	}
	return m, nil
}
