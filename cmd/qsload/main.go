// Command qsload is a load generator for qscheduler-swarming: it plays
// Swarming against a running server (docs/service.md §1) and reports what the
// server's callers would see.
//
// # Default profile
//
// Every value is a flag:
//
//   - transport pRPC binary, as Swarming speaks (-transport=prpc|grpc), to
//     -http=127.0.0.1:8080 (pRPC) or -grpc=127.0.0.1:9090 (native gRPC);
//     a comma-separated list of addresses (replicas serving the same
//     pools) takes the calls in turn;
//   - pool -pool=qsload; with -create=true (default) the pool and the 20
//     accounts of the workload (their charge rates, max_charge_seconds 600)
//     are created through QSchedulerAdmin when absent (existing accounts are
//     left alone);
//   - workload scheduler/benchdata's Lab shape (-seed=1): -bots=5000 bots
//     with their labels plus "id:<bot>", and a backlog of -backlog=100000
//     pending tasks loaded first in NotifyTasks calls of -backlog-batch=1000
//     items (-backlog-concurrency=4 calls in flight); the load time is
//     reported;
//   - then for -duration=2m: idle bots poll AssignTasks, one bot per call
//     (Swarming's way), at a total of -assign-rate=500 calls/s. The rate is
//     open-loop: calls are scheduled at the rate and handed to a pool of
//     -concurrency=64 callers, so a slow server shows up as latency, not as a
//     lower rate. A scheduled call that finds no free caller is not made and
//     is counted ("no free worker"), one fired more than 10 ms after its
//     slot is counted as late, and one that finds no idle bot (every bot has
//     a task) is counted as "no idle bot". Only idle bots poll: a bot that
//     was given a task does not poll again until the task has completed (or
//     was preempted);
//   - new tasks arrive in NotifyTasks calls of -notify-batch=10 items at
//     -notify-rate=200 calls/s (open-loop too);
//   - an assigned task is confirmed RUNNING through NotifyTasks within
//     -confirm-delay=1s (confirmations are batched: every confirm-delay/2
//     everything due is sent, in calls of at most -backlog-batch items); it
//     then runs for benchdata's lognormal duration scaled to a median of
//     -median-runtime=60s, after which a COMPLETED notification is sent and
//     the bot becomes idle again;
//   - every -cron=1m GetCancellations and GetCallbacks are called.
//     PREEMPTED cancellations are honored: the aborted task is reported
//     KILLED (absent), the bot becomes idle and polls. ERROR cancellations
//     are counted (distinct tasks, with sample messages) and acknowledged by
//     reporting the task absent. Callbacks are answered with the task's
//     current state (is_callback = true).
//
// Tasks have Swarming's shapes: one slice when the task has no
// provisionable labels, else two (slice 0 = base + provisionable, slice 1 =
// base); tags qs_account:<account> and pool:<label pool>; state PENDING and
// an enqueued_time. Every timestamp is the wall clock: a new task is enqueued
// now; the backlog keeps benchdata's spread, mapped onto the hour before
// now. Task ids carry a per-run prefix (-task-prefix=auto) so that runs
// against one server do not collide; -task-prefix= gives benchdata's ids.
// Every call has Swarming's 20 s deadline (-timeout).
//
// # Output
//
// A line every -report=10s, and at the end, per RPC kind (AssignTasks,
// NotifyTasks split by purpose: backlog, new, status, callback;
// GetCancellations, GetCallbacks): calls, errors by gRPC code, achieved
// rate, latency p50/p90/p99/max (exact, from every sample; successful calls
// only), plus assignments handed out, assignments confirmed RUNNING,
// preemptions, ERROR cancellations and notify items/s. -json=<file> also
// writes the summary as JSON.
//
// # Ramp
//
// -ramp finds the peak sustained AssignTasks rate: after the backlog it runs
// the steps -ramp-steps=500,750,1000,1500,2000,3000 calls/s, each for
// -ramp-step-duration=30s, while new tasks keep arriving at -notify-rate. A
// step passes when its AssignTasks p99 ≤ -p99-target=50ms and its achieved
// rate is at least 95 % of the target, where the achieved rate counts the
// calls answered without error, less those whose assignment was never
// confirmed RUNNING. Both the assignments handed out and those confirmed
// are reported per step. The peak is the highest passing step. A step in
// which bots were missing ("no idle bot") was limited by the workload, not
// by the server, and is marked so: at steady state the bots free up at about
// bots / (mean runtime + confirm delay) per second (mean runtime ≈ 1.65 ×
// median), so a meaningful ramp needs more -bots or a shorter
// -median-runtime than the default profile.
//
// # Startup
//
// -startup -server-cmd="<command line>" starts the server (through /bin/sh,
// in its own process group), measures the time from process start to the
// first 200 from /readyz (polled every 10 ms) and to the first answered
// AssignTasks (one bot of the workload, polled every 10 ms; the time of the
// first answer carrying an assignment is reported as well), then stops the
// server with SIGTERM and reports how it exited. When the server logs
// "msg=serving grpc=<addr> http=<addr>", those addresses are used. The
// probe's bot keeps the task it was given (unconfirmed) in the server's
// state.
//
// qsload exits non-zero with a message when the server is unreachable or
// the run fails.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "qsload:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sum, err := run(ctx, cfg)
	if sum != nil {
		sum.Print(os.Stdout)
		if cfg.JSON != "" {
			if werr := writeJSON(cfg.JSON, sum); werr != nil && err == nil {
				err = werr
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qsload:", err)
		os.Exit(1)
	}
}

func writeJSON(path string, sum *Summary) error {
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Config is a run's parameters; defaultConfig gives the default profile.
type Config struct {
	Transport string // prpc | grpc
	HTTPAddr  string
	GRPCAddr  string
	Pool      string
	Create    bool
	Seed      uint64

	Bots               int
	Backlog            int
	BacklogBatch       int
	BacklogConcurrency int
	TaskPrefix         string // "auto": derived from the start time

	Duration      time.Duration
	AssignRate    float64
	Concurrency   int
	NotifyRate    float64
	NotifyBatch   int
	ConfirmDelay  time.Duration
	MedianRuntime time.Duration
	Cron          time.Duration
	Timeout       time.Duration
	Report        time.Duration // 0: no periodic lines

	Ramp             bool
	RampSteps        []float64
	RampStepDuration time.Duration
	P99Target        time.Duration

	Startup        bool
	ServerCmd      string
	StartupTimeout time.Duration

	// ServerPID, if set, is the server's process id: its peak and final
	// resident set are reported (Linux).
	ServerPID int

	JSON string
	// Out receives the periodic lines and progress messages (default
	// os.Stderr).
	Out io.Writer
}

func defaultConfig() *Config {
	return &Config{
		Transport: "prpc", HTTPAddr: "127.0.0.1:8080", GRPCAddr: "127.0.0.1:9090",
		Pool: "qsload", Create: true, Seed: 1,
		Bots: 5000, Backlog: 100000, BacklogBatch: 1000, BacklogConcurrency: 4, TaskPrefix: "auto",
		Duration: 2 * time.Minute, AssignRate: 500, Concurrency: 64,
		NotifyRate: 200, NotifyBatch: 10,
		ConfirmDelay: time.Second, MedianRuntime: 60 * time.Second, Cron: time.Minute,
		Timeout: 20 * time.Second, Report: 10 * time.Second,
		RampSteps:        []float64{500, 750, 1000, 1500, 2000, 3000},
		RampStepDuration: 30 * time.Second, P99Target: 50 * time.Millisecond,
		StartupTimeout: 5 * time.Minute,
	}
}

type floatList struct{ v *[]float64 }

func (f floatList) String() string {
	if f.v == nil {
		return ""
	}
	s := make([]string, len(*f.v))
	for i, x := range *f.v {
		s[i] = strconv.FormatFloat(x, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func (f floatList) Set(s string) error {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || x <= 0 {
			return fmt.Errorf("%q is not a positive rate", p)
		}
		out = append(out, x)
	}
	*f.v = out
	return nil
}

func parseFlags(args []string, stderr io.Writer) (*Config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("qsload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Transport, "transport", c.Transport, "prpc (binary, Swarming's) | grpc")
	fs.StringVar(&c.HTTPAddr, "http", c.HTTPAddr, "server HTTP address (pRPC, /readyz); several, comma-separated, take calls in turn")
	fs.StringVar(&c.GRPCAddr, "grpc", c.GRPCAddr, "server native gRPC address; several, comma-separated, take calls in turn")
	fs.StringVar(&c.Pool, "pool", c.Pool, "pool (scheduler_id)")
	fs.BoolVar(&c.Create, "create", c.Create, "create the pool and the workload's accounts if absent")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "benchdata seed")
	fs.IntVar(&c.Bots, "bots", c.Bots, "bots")
	fs.IntVar(&c.Backlog, "backlog", c.Backlog, "pending tasks loaded before the run")
	fs.IntVar(&c.BacklogBatch, "backlog-batch", c.BacklogBatch, "items per backlog NotifyTasks call (also the most items per status call)")
	fs.IntVar(&c.BacklogConcurrency, "backlog-concurrency", c.BacklogConcurrency, "backlog calls in flight")
	fs.StringVar(&c.TaskPrefix, "task-prefix", c.TaskPrefix, `task id prefix; "auto" derives one from the start time`)
	fs.DurationVar(&c.Duration, "duration", c.Duration, "length of the run (not -ramp)")
	fs.Float64Var(&c.AssignRate, "assign-rate", c.AssignRate, "AssignTasks calls/s (one idle bot per call)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "callers for AssignTasks, and again for new-task NotifyTasks")
	fs.Float64Var(&c.NotifyRate, "notify-rate", c.NotifyRate, "new-task NotifyTasks calls/s")
	fs.IntVar(&c.NotifyBatch, "notify-batch", c.NotifyBatch, "new tasks per NotifyTasks call")
	fs.DurationVar(&c.ConfirmDelay, "confirm-delay", c.ConfirmDelay, "an assignment is confirmed RUNNING within this")
	fs.DurationVar(&c.MedianRuntime, "median-runtime", c.MedianRuntime, "median task runtime (lognormal, sigma 1)")
	fs.DurationVar(&c.Cron, "cron", c.Cron, "GetCancellations and GetCallbacks period (0: never)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "deadline of each call")
	fs.DurationVar(&c.Report, "report", c.Report, "period of the progress line (0: none)")
	fs.BoolVar(&c.Ramp, "ramp", c.Ramp, "find the peak sustained AssignTasks rate")
	fs.Var(floatList{&c.RampSteps}, "ramp-steps", "AssignTasks rates of the ramp's steps")
	fs.DurationVar(&c.RampStepDuration, "ramp-step-duration", c.RampStepDuration, "length of each ramp step")
	fs.DurationVar(&c.P99Target, "p99-target", c.P99Target, "a ramp step passes if AssignTasks p99 is at most this")
	fs.BoolVar(&c.Startup, "startup", c.Startup, "measure the server's startup (needs -server-cmd)")
	fs.StringVar(&c.ServerCmd, "server-cmd", c.ServerCmd, "command line starting the server (run by /bin/sh)")
	fs.DurationVar(&c.StartupTimeout, "startup-timeout", c.StartupTimeout, "give up on the startup after this")
	fs.IntVar(&c.ServerPID, "server-pid", c.ServerPID, "the server's process id: report its peak and final resident set (Linux)")
	fs.StringVar(&c.JSON, "json", c.JSON, "also write the summary as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, c.validate()
}

func (c *Config) validate() error {
	switch {
	case c.Transport != "prpc" && c.Transport != "grpc":
		return fmt.Errorf("-transport: %q is not prpc or grpc", c.Transport)
	case c.Pool == "":
		return fmt.Errorf("-pool: empty")
	case c.Startup && c.ServerCmd == "":
		return fmt.Errorf("-startup needs -server-cmd")
	case c.Startup && c.Ramp:
		return fmt.Errorf("-startup and -ramp exclude each other")
	case c.Bots < 1:
		return fmt.Errorf("-bots: need at least one bot")
	case c.Backlog < 0, c.BacklogBatch < 1, c.BacklogConcurrency < 1, c.NotifyBatch < 1, c.Concurrency < 1:
		return fmt.Errorf("-backlog must be ≥ 0; -backlog-batch, -backlog-concurrency, -notify-batch and -concurrency ≥ 1")
	case c.AssignRate < 0, c.NotifyRate < 0:
		return fmt.Errorf("rates must not be negative")
	case c.ConfirmDelay <= 0, c.MedianRuntime <= 0, c.Timeout <= 0:
		return fmt.Errorf("-confirm-delay, -median-runtime and -timeout must be positive")
	case c.Ramp && (len(c.RampSteps) == 0 || c.RampStepDuration <= 0):
		return fmt.Errorf("-ramp needs -ramp-steps and a positive -ramp-step-duration")
	}
	return nil
}
