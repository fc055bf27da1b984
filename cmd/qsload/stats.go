package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RPC kinds reported.
const (
	kindAssign       = "AssignTasks"
	kindNotifyBack   = "NotifyTasks/backlog"
	kindNotifyNew    = "NotifyTasks/new"
	kindNotifyStatus = "NotifyTasks/status"
	kindNotifyCB     = "NotifyTasks/callback"
	kindCancel       = "GetCancellations"
	kindCallbacks    = "GetCallbacks"
)

var kinds = []string{kindAssign, kindNotifyBack, kindNotifyNew, kindNotifyStatus, kindNotifyCB, kindCancel, kindCallbacks}

// recorder keeps every latency sample of one RPC kind, successful calls and
// shed answers apart, and the errors by code. Samples are kept exactly: a
// 2-minute run at 500/s is 60,000 of them.
type recorder struct {
	mu     sync.Mutex
	ok     []time.Duration
	shed   []time.Duration // answers ResourceExhausted or Unavailable
	calls  int64
	items  int64 // notification items in successful calls
	errs   map[codes.Code]int64
	mark   int   // ok[:mark] were reported by interval
	markS  int   // shed[:markS] too
	markC  int64 // calls at the last interval
	markE  int64 // errors at the last interval
	markI  int64
	errSum int64
}

func newRecorder() *recorder { return &recorder{errs: map[codes.Code]int64{}} }

func (r *recorder) add(d time.Duration, items int, err error) {
	r.mu.Lock()
	r.calls++
	if err != nil {
		c := status.Code(err)
		r.errs[c]++
		r.errSum++
		if isShed(c) {
			r.shed = append(r.shed, d)
		}
	} else {
		r.ok = append(r.ok, d)
		r.items += int64(items)
	}
	r.mu.Unlock()
}

// isShed reports whether code is how the server refuses work it has no room
// for: ResourceExhausted (a poll), Unavailable (a notification, or a pool
// that is down).
func isShed(c codes.Code) bool {
	return c == codes.ResourceExhausted || c == codes.Unavailable
}

// interval returns the counts and percentiles since the previous call: of
// successful calls, and the p99 of shed answers.
func (r *recorder) interval() (calls, errs, items int64, p50, p99, shedP99 time.Duration) {
	r.mu.Lock()
	s := slices.Clone(r.ok[r.mark:])
	shed := slices.Clone(r.shed[r.markS:])
	calls, errs, items = r.calls-r.markC, r.errSum-r.markE, r.items-r.markI
	r.mark, r.markS, r.markC, r.markE, r.markI = len(r.ok), len(r.shed), r.calls, r.errSum, r.items
	r.mu.Unlock()
	slices.Sort(s)
	slices.Sort(shed)
	return calls, errs, items, pct(s, 0.50), pct(s, 0.99), pct(shed, 0.99)
}

// pct is the nearest-rank percentile of sorted s.
func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// RPCStats describes one RPC kind over a run or a ramp step.
type RPCStats struct {
	Kind        string           `json:"kind"`
	Calls       int64            `json:"calls"`
	OK          int64            `json:"ok"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	RatePerSec  float64          `json:"ok_per_sec"`
	Items       int64            `json:"items,omitempty"`
	ItemsPerSec float64          `json:"items_per_sec,omitempty"`
	MeanMs      float64          `json:"mean_ms"`
	P50Ms       float64          `json:"p50_ms"`
	P90Ms       float64          `json:"p90_ms"`
	P99Ms       float64          `json:"p99_ms"`
	MaxMs       float64          `json:"max_ms"`
	// Answers ResourceExhausted or Unavailable and their latency.
	Shed      int64   `json:"shed,omitempty"`
	ShedP50Ms float64 `json:"shed_p50_ms,omitempty"`
	ShedP99Ms float64 `json:"shed_p99_ms,omitempty"`
	ShedMaxMs float64 `json:"shed_max_ms,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// perSec is n per second of d (0 for an empty d).
func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func (r *recorder) stats(kind string, over time.Duration) RPCStats {
	r.mu.Lock()
	s := slices.Clone(r.ok)
	shed := slices.Clone(r.shed)
	st := RPCStats{Kind: kind, Calls: r.calls, OK: int64(len(r.ok)), Items: r.items, Shed: int64(len(r.shed))}
	for c, n := range r.errs {
		if st.Errors == nil {
			st.Errors = map[string]int64{}
		}
		st.Errors[c.String()] = n
	}
	r.mu.Unlock()
	slices.Sort(s)
	st.RatePerSec, st.ItemsPerSec = perSec(st.OK, over), perSec(st.Items, over)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	if len(s) > 0 {
		st.MeanMs = ms(sum / time.Duration(len(s)))
		st.MaxMs = ms(s[len(s)-1])
	}
	st.P50Ms, st.P90Ms, st.P99Ms = ms(pct(s, 0.5)), ms(pct(s, 0.9)), ms(pct(s, 0.99))
	if len(shed) > 0 {
		slices.Sort(shed)
		st.ShedP50Ms, st.ShedP99Ms, st.ShedMaxMs = ms(pct(shed, 0.5)), ms(pct(shed, 0.99)), ms(shed[len(shed)-1])
	}
	return st
}

// Summary is what a run reports.
type Summary struct {
	Mode      string  `json:"mode"` // load | ramp | startup
	Transport string  `json:"transport"`
	Target    string  `json:"target"`
	Pool      string  `json:"pool"`
	Bots      int     `json:"bots"`
	Seconds   float64 `json:"seconds"` // the measured phase, after the backlog

	Backlog *BacklogStats `json:"backlog,omitempty"`
	RPCs    []RPCStats    `json:"rpcs,omitempty"`

	AssignTicks  AssignTicks `json:"assign_ticks"`
	Assignments  Assignments `json:"assignments"`
	Preemptions  int64       `json:"preemptions"`         // PREEMPTED cancellations honored
	StaleCancels int64       `json:"stale_cancellations"` // PREEMPTED for a task the bot no longer holds
	ErrorCancels int64       `json:"error_cancellations"` // distinct tasks
	ErrorSamples []string    `json:"error_samples,omitempty"`
	Callbacks    int64       `json:"callback_tasks"`
	CallbacksUnk int64       `json:"callback_tasks_unknown"`

	NewItems          int64   `json:"new_items"`
	NewItemsPerSec    float64 `json:"new_items_per_sec"`
	NewDropped        int64   `json:"new_calls_not_started"`
	StatusItems       int64   `json:"status_items"`
	NotifyItemsPerSec float64 `json:"notify_items_per_sec"` // every NotifyTasks item of the measured phase

	// Goodput: calls of the measured phase answered without error, per
	// second, every kind but the backlog's; Offered: the calls made.
	GoodputPerSec float64 `json:"goodput_per_sec"`
	OfferedPerSec float64 `json:"offered_per_sec"`

	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	// The server's memory (-server-pid): its peak and final resident set.
	Server *ServerMemory `json:"server,omitempty"`

	Ramp    *RampResult    `json:"ramp,omitempty"`
	Startup *StartupResult `json:"startup,omitempty"`
}

// ServerMemory is the server's memory as Linux reports it
// (/proc/<pid>/status).
type ServerMemory struct {
	PID        int     `json:"pid"`
	PeakRSSMiB float64 `json:"peak_rss_mib"` // VmHWM: the most it ever held, backlog included
	RSSMiB     float64 `json:"rss_mib"`      // VmRSS at the end of the run
}

// BacklogStats describes the backlog load.
type BacklogStats struct {
	Tasks       int     `json:"tasks"`
	Calls       int     `json:"calls"`
	Seconds     float64 `json:"seconds"`
	ItemsPerSec float64 `json:"items_per_sec"`
	Retries     int64   `json:"retries"`
	Failed      int     `json:"failed_items"`
}

// AssignTicks counts the scheduled AssignTasks slots.
type AssignTicks struct {
	Scheduled int64 `json:"scheduled"`
	Started   int64 `json:"started"`
	NoIdleBot int64 `json:"no_idle_bot"`    // every bot had a task: not made
	NoWorker  int64 `json:"no_free_worker"` // all callers busy: not made (server too slow)
	Late      int64 `json:"started_late"`   // made, but fired > 10 ms after its slot
}

// Assignments counts what AssignTasks handed out.
type Assignments struct {
	HandedOut            int64 `json:"handed_out"`
	Confirmed            int64 `json:"confirmed_running"`
	AbortedBeforeConfirm int64 `json:"aborted_before_confirm"`
	Unconfirmed          int64 `json:"unconfirmed_at_end"`
	ProvisionRequired    int64 `json:"provision_required"` // slice_number 1
	Completed            int64 `json:"completed"`
	UnknownTask          int64 `json:"unknown_task"`    // a task this run did not create
	DoubleAssigned       int64 `json:"double_assigned"` // a task another bot still holds
	ForeignBot           int64 `json:"foreign_bot"`     // an assignment for a bot not in the call
	EmptyAnswers         int64 `json:"answers_without_task"`
}

// RampResult is the outcome of -ramp.
type RampResult struct {
	P99TargetMs float64    `json:"p99_target_ms"`
	Steps       []RampStep `json:"steps"`
	PeakRate    float64    `json:"peak_rate"` // 0: no step passed
}

// RampStep is one ramp step.
type RampStep struct {
	Target       float64          `json:"target_rate"`
	Seconds      float64          `json:"seconds"`
	Calls        int64            `json:"calls"`
	OK           int64            `json:"ok"`
	Errors       map[string]int64 `json:"errors,omitempty"`
	Achieved     float64          `json:"achieved_rate"`
	P50Ms        float64          `json:"p50_ms"`
	P90Ms        float64          `json:"p90_ms"`
	P99Ms        float64          `json:"p99_ms"`
	MaxMs        float64          `json:"max_ms"`
	Assigned     int64            `json:"assigned"`
	Confirmed    int64            `json:"confirmed"`
	NoIdleBot    int64            `json:"no_idle_bot"`
	NoWorker     int64            `json:"no_free_worker"`
	Late         int64            `json:"started_late"`
	Pass         bool             `json:"pass"`
	Why          string           `json:"why,omitempty"`
	BotsStarved  bool             `json:"bots_starved,omitempty"`
	NotifyPerSec float64          `json:"notify_items_per_sec"`
}

// StartupResult is the outcome of -startup.
type StartupResult struct {
	Command             string  `json:"command"`
	ReadySeconds        float64 `json:"ready_seconds"`        // process start → /readyz 200
	FirstAnswerSeconds  float64 `json:"first_answer_seconds"` // → first AssignTasks answered OK
	FirstAssignSeconds  float64 `json:"first_assignment_seconds,omitempty"`
	ServerLoadSeconds   float64 `json:"server_load_seconds,omitempty"` // the server's own "ready load_seconds"
	ReadyzPolls         int     `json:"readyz_polls"`
	AssignPolls         int     `json:"assign_polls"`
	FirstAssignedTask   string  `json:"first_assigned_task,omitempty"`
	StopSeconds         float64 `json:"stop_seconds"` // SIGTERM → exit
	Exit                string  `json:"exit"`
	ServerLogErrorLines int     `json:"server_log_error_lines"`
}

func fmtMs(x float64) string {
	switch {
	case x == 0:
		return "-"
	case x < 1:
		return fmt.Sprintf("%.0fµs", x*1000)
	case x < 100:
		return fmt.Sprintf("%.1fms", x)
	case x < 10000:
		return fmt.Sprintf("%.0fms", x)
	}
	return fmt.Sprintf("%.1fs", x/1000)
}

func fmtErrs(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	return b.String()
}

// Print writes the summary for people.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "\n== qsload %s: transport=%s target=%s pool=%s bots=%d\n", s.Mode, s.Transport, s.Target, s.Pool, s.Bots)
	if st := s.Startup; st != nil {
		fmt.Fprintf(w, "server command:            %s\n", st.Command)
		fmt.Fprintf(w, "start → /readyz 200:       %.3fs (%d polls)\n", st.ReadySeconds, st.ReadyzPolls)
		if st.FirstAnswerSeconds > 0 {
			fmt.Fprintf(w, "start → first AssignTasks: %.3fs answered", st.FirstAnswerSeconds)
		} else {
			fmt.Fprintf(w, "start → first AssignTasks: never answered")
		}
		if st.FirstAssignSeconds > 0 {
			fmt.Fprintf(w, ", %.3fs first assignment (%s)", st.FirstAssignSeconds, st.FirstAssignedTask)
		}
		fmt.Fprintf(w, " (%d polls)\n", st.AssignPolls)
		if st.ServerLoadSeconds > 0 {
			fmt.Fprintf(w, "server's own load_seconds: %.3fs\n", st.ServerLoadSeconds)
		}
		fmt.Fprintf(w, "SIGTERM → exit:            %.3fs, %s; %d warn/error lines in the server log\n", st.StopSeconds, st.Exit, st.ServerLogErrorLines)
		return
	}
	if b := s.Backlog; b != nil {
		fmt.Fprintf(w, "backlog: %d tasks in %d calls in %.2fs (%.0f items/s), %d retries, %d items failed\n",
			b.Tasks, b.Calls, b.Seconds, b.ItemsPerSec, b.Retries, b.Failed)
	}
	fmt.Fprintf(w, "measured phase: %.1fs; qsload used %.1f CPU-seconds over the whole run\n", s.Seconds, s.ClientCPUSeconds)
	fmt.Fprintf(w, "%-20s %8s %9s %9s %8s %8s %8s %8s %8s  %s\n", "rpc", "calls", "ok/s", "items/s", "p50", "p90", "p99", "max", "mean", "errors")
	for _, r := range s.RPCs {
		if r.Calls == 0 {
			continue
		}
		items := "-"
		if r.Items > 0 {
			items = fmt.Sprintf("%.0f", r.ItemsPerSec)
		}
		fmt.Fprintf(w, "%-20s %8d %9.1f %9s %8s %8s %8s %8s %8s  %s\n", r.Kind, r.Calls, r.RatePerSec, items,
			fmtMs(r.P50Ms), fmtMs(r.P90Ms), fmtMs(r.P99Ms), fmtMs(r.MaxMs), fmtMs(r.MeanMs), fmtErrs(r.Errors))
	}
	for _, r := range s.RPCs {
		if r.Shed > 0 {
			fmt.Fprintf(w, "%-20s %8d shed answers (ResourceExhausted, Unavailable): p50 %s, p99 %s, max %s\n", r.Kind, r.Shed,
				fmtMs(r.ShedP50Ms), fmtMs(r.ShedP99Ms), fmtMs(r.ShedMaxMs))
		}
	}
	fmt.Fprintf(w, "goodput: %.1f calls/s answered without error, of %.1f calls/s made (every kind but the backlog)\n", s.GoodputPerSec, s.OfferedPerSec)
	if m := s.Server; m != nil {
		fmt.Fprintf(w, "server (pid %d): peak RSS %.0f MiB, RSS at the end %.0f MiB\n", m.PID, m.PeakRSSMiB, m.RSSMiB)
	}
	t := s.AssignTicks
	fmt.Fprintf(w, "AssignTasks slots: %d scheduled, %d started (%d late >10ms), %d not made: no idle bot, %d not made: no free worker\n",
		t.Scheduled, t.Started, t.Late, t.NoIdleBot, t.NoWorker)
	a := s.Assignments
	fmt.Fprintf(w, "assignments: %d handed out (%d need provisioning), %d confirmed RUNNING, %d aborted before confirmation, %d unconfirmed at end, %d completed\n",
		a.HandedOut, a.ProvisionRequired, a.Confirmed, a.AbortedBeforeConfirm, a.Unconfirmed, a.Completed)
	fmt.Fprintf(w, "answers without a task: %d; unknown tasks: %d; double assignments: %d; assignments for another bot: %d\n",
		a.EmptyAnswers, a.UnknownTask, a.DoubleAssigned, a.ForeignBot)
	fmt.Fprintf(w, "cancellations: %d preemptions honored, %d stale, %d ERROR (distinct tasks); callbacks: %d tasks re-notified, %d unknown\n",
		s.Preemptions, s.StaleCancels, s.ErrorCancels, s.Callbacks, s.CallbacksUnk)
	for _, e := range s.ErrorSamples {
		fmt.Fprintf(w, "  ERROR cancellation: %s\n", e)
	}
	fmt.Fprintf(w, "notify: %d new tasks (%.0f items/s, %d calls not started), %d status items; all NotifyTasks items %.0f/s\n",
		s.NewItems, s.NewItemsPerSec, s.NewDropped, s.StatusItems, s.NotifyItemsPerSec)
	if r := s.Ramp; r != nil {
		fmt.Fprintf(w, "ramp (pass: p99 ≤ %s and achieved ≥ 95%% of target; achieved counts answered calls less unconfirmed assignments):\n", fmtMs(r.P99TargetMs))
		fmt.Fprintf(w, "  %7s %9s %8s %8s %8s %8s %9s %9s %8s %8s  %s\n", "target", "achieved", "p50", "p90", "p99", "max", "assigned", "confirmed", "no-idle", "no-wrkr", "result")
		for _, st := range r.Steps {
			res := "pass"
			if !st.Pass {
				res = "FAIL: " + st.Why
			}
			fmt.Fprintf(w, "  %7.0f %9.1f %8s %8s %8s %8s %9d %9d %8d %8d  %s\n", st.Target, st.Achieved, fmtMs(st.P50Ms), fmtMs(st.P90Ms),
				fmtMs(st.P99Ms), fmtMs(st.MaxMs), st.Assigned, st.Confirmed, st.NoIdleBot, st.NoWorker, res)
		}
		if r.PeakRate > 0 {
			fmt.Fprintf(w, "peak sustained AssignTasks rate: %.0f calls/s\n", r.PeakRate)
		} else {
			fmt.Fprintf(w, "peak sustained AssignTasks rate: none of the steps passed\n")
		}
	}
}
