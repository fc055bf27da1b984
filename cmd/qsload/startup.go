package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	swarmingv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/swarming/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler/benchdata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var (
	servingLine = regexp.MustCompile(`msg=serving grpc=(\S+) http=(\S+)`)
	readyLine   = regexp.MustCompile(`msg=ready .*load_seconds=([0-9.eE+-]+)`)
	warnLine    = regexp.MustCompile(`level=(WARN|ERROR)|"level":"(WARN|ERROR)"`)
)

// pollEvery is the startup probes' period.
const pollEvery = 10 * time.Millisecond

type addrs struct{ http, grpc string }

// lineWriter hands every complete line written to it to fn.
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	fn  func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// runStartup starts the server, times /readyz and the first AssignTasks
// answer, and stops it with SIGTERM.
func runStartup(ctx context.Context, cfg *Config) (*Summary, error) {
	res := &StartupResult{Command: cfg.ServerCmd}
	sum := &Summary{Mode: "startup", Transport: cfg.Transport, Target: cfg.target(), Pool: cfg.Pool, Bots: cfg.Bots, Startup: res}

	var addr atomic.Pointer[addrs]
	addr.Store(&addrs{http: cfg.HTTPAddr, grpc: cfg.GRPCAddr})
	var loadSecs atomic.Value
	var warnLines atomic.Int64
	lw := &lineWriter{fn: func(line string) {
		fmt.Fprintln(cfg.Out, "server|", line)
		if m := servingLine.FindStringSubmatch(line); m != nil {
			addr.Store(&addrs{grpc: m[1], http: m[2]})
		}
		if m := readyLine.FindStringSubmatch(line); m != nil {
			if f, err := strconv.ParseFloat(m[1], 64); err == nil {
				loadSecs.Store(f)
			}
		}
		if warnLine.MatchString(line) {
			warnLines.Add(1)
		}
	}}

	cmd := exec.Command("/bin/sh", "-c", "exec "+cfg.ServerCmd)
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return sum, fmt.Errorf("starting %q: %w", cfg.ServerCmd, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()

	pctx, stopProbes := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer stopProbes()
	var readyPolls, assignPolls atomic.Int64
	var readyAt atomic.Int64 // since t0, once /readyz said 200
	ready := make(chan time.Duration, 1)
	go func() { // /readyz
		hc := &http.Client{Timeout: time.Second}
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		for {
			readyPolls.Add(1)
			req, _ := http.NewRequestWithContext(pctx, http.MethodGet, "http://"+addr.Load().http+"/readyz", nil)
			if resp, err := hc.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					d := time.Since(t0)
					readyAt.Store(int64(d))
					ready <- d
					return
				}
			}
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
		}
	}()

	w := benchdata.Lab(cfg.Seed, cfg.Bots, 0)
	probe := w.Bots[0]
	dims := append(slices.Clone(probe.Labels), "id:"+probe.ID)
	slices.Sort(dims)
	type answer struct {
		first, assigned time.Duration
		task            string
		err             error
	}
	answered := make(chan answer, 1)
	go func() { // AssignTasks
		var c *clients
		var cur addrs
		defer func() {
			if c != nil {
				c.close()
			}
		}()
		var a answer
		var lastErr error
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		for {
			if ad := *addr.Load(); c == nil || ad != cur {
				if c != nil {
					c.close()
				}
				var err error
				if c, err = dial(cfg, ad.http, ad.grpc, true); err != nil {
					answered <- answer{err: err}
					return
				}
				cur = ad
			}
			assignPolls.Add(1)
			cctx, cancel := context.WithTimeout(pctx, 2*time.Second)
			resp, err := c.sw.AssignTasks(cctx, &swarmingv1.AssignTasksRequest{SchedulerId: cfg.Pool, Time: timestamppb.Now(),
				IdleBots: []*swarmingv1.IdleBot{{BotId: probe.ID, Dimensions: dims}}})
			cancel()
			since := time.Since(t0)
			if err == nil {
				if a.first == 0 {
					a.first = since
				}
				for _, as := range resp.Assignments {
					if as.BotId == probe.ID {
						a.assigned, a.task = since, as.TaskId
					}
				}
				if a.assigned > 0 || since-a.first > 10*time.Second {
					answered <- a
					return
				}
			} else {
				lastErr = err
				if r := time.Duration(readyAt.Load()); r > 0 && a.first == 0 && since-r > 30*time.Second {
					a.err = fmt.Errorf("the server is ready but AssignTasks failed for 30 s: %v", lastErr)
					answered <- a
					return
				}
			}
			select {
			case <-pctx.Done():
				if a.first == 0 {
					a.err = fmt.Errorf("no AssignTasks answered within %s; last error: %v", cfg.StartupTimeout, lastErr)
				}
				answered <- a
				return
			case <-t.C:
			}
		}
	}()

	var runErr error
	var gotReady, gotAnswer bool
	for !(gotReady && gotAnswer) && runErr == nil {
		select {
		case d := <-ready:
			res.ReadySeconds, gotReady = d.Seconds(), true
		case a := <-answered:
			gotAnswer = true
			res.FirstAnswerSeconds, res.FirstAssignSeconds, res.FirstAssignedTask = a.first.Seconds(), a.assigned.Seconds(), a.task
			if a.err != nil {
				runErr = a.err
			}
		case <-exited:
			runErr = fmt.Errorf("the server exited during startup: %v", waitErr)
		case <-pctx.Done():
			switch {
			case ctx.Err() != nil:
				runErr = ctx.Err()
			case gotReady:
				runErr = fmt.Errorf("no AssignTasks answered within %s", cfg.StartupTimeout)
			default:
				runErr = fmt.Errorf("the server was not ready within %s", cfg.StartupTimeout)
			}
		}
	}
	stopProbes()
	res.ReadyzPolls, res.AssignPolls = int(readyPolls.Load()), int(assignPolls.Load())

	// Stop with SIGTERM (the whole process group: `go run` has a child).
	select {
	case <-exited:
	default:
		t1 := time.Now()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			res.Exit = "did not stop within 60 s of SIGTERM; killed. "
		}
		res.StopSeconds = time.Since(t1).Seconds()
	}
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
		res.Exit += "exit status 0"
	case errors.As(waitErr, &ee):
		res.Exit += ee.String()
	default:
		res.Exit += waitErr.Error()
	}
	if f, ok := loadSecs.Load().(float64); ok {
		res.ServerLoadSeconds = f
	}
	res.ServerLogErrorLines = int(warnLines.Load())
	if a := addr.Load(); cfg.Transport == "grpc" {
		sum.Target = a.grpc
	} else {
		sum.Target = "http://" + a.http
	}
	return sum, runErr
}
