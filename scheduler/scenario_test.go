package scheduler

// Text scenario tests in the style of etcd-io/raft's datadriven tests.
//
// Every testdata/*.txt file is a script of blocks separated by blank lines.
// A block is one or more input lines (commands, and '#' comment lines, the
// first line of a block always being a comment that names the rule checked),
// a line "----", and the expected output: the concatenated output of the
// block's commands. Outputs never contain blank lines. The state carries over
// from block to block within a file; each file starts with "new".
//
// `go test ./scheduler -run TestScenarios -rewrite` rewrites the expected
// outputs with what the code does, except in blocks that carry a comment line
// starting with "# BUG": those hold the output docs/algorithm.md requires and
// the code does not produce yet; they are kept as written.
//
// Times are seconds after the Unix epoch, integers or decimals (t=10,
// t=10.5). Label and id lists are comma-separated. An id of the form
// prefix{A..B} (for example r{1..500} or w{01..10}) expands to one id per
// number, zero-padded to the width of A when A has a leading zero.
//
// Commands (an unknown argument is a script error):
//
//	new [disable_preemption] [bot_expiration=S] [promote=X] [demote=X]
//	    [worker_queue_timeout=S] [max_queueing_age=S] [tombstone_ttl=S]
//	    [max_tombstones=N]                      a fresh pool (New)
//	tunables <same options as new>              SetTunables
//	add-account A [rates=1,2,3] [window=S] [fanout=N] [no-free]
//	    [limits=key:N,key:N] [balance=1,2,3]    AddAccount
//	delete-account A                            DeleteAccount
//	idle W [labels=a,b] t=T [from-callback]     MarkIdle (labels remembered for assign)
//	notify waiting R [account=A] [base=a,b] [provisionable=c] [enqueued=T] t=T
//	    [tags=k:v,k:v] [from-callback]          Notify(NotifyWaiting); enqueued defaults to t
//	notify running R bot=W t=T [from-callback]  Notify(NotifyRunning)
//	notify absent R t=T [from-callback]         Notify(NotifyAbsent)
//	task-error R msg=TEXT                       SetTaskError (TEXT may be "quoted")
//	assign t=T bots=W1,W2:a+b                   AssignTasks; a bot's labels are the
//	                                            inline ones after ':' ('+'-separated),
//	                                            else those of its last idle/assign line
//	run                                         a scheduling pass at the clock (runOnce)
//	tick t=T                                    UpdateTime
//	set-balance A balance=-1,2                  state surgery through ToProto/FromProto:
//	                                            sets a balance (negative values allowed)
//	set-cost R cost=0,1                         state surgery: the running task R has this
//	                                            cost now (level unchanged)
//	dump SECTION...                             balances, assignments (the reconciler's
//	                                            pending entries), waiting, running,
//	                                            workers, events (drains TakeEvents),
//	                                            cancellations, callbacks, tombstones,
//	                                            clock
//
// Vectors print as {v0,v1,...} without trailing zeros ({0} is the zero
// vector), rounded to 6 decimals. A COMPLETED event of a running task shows
// its cost at the clock (cost=...); a TASK_ERROR event shows its text,
// quoted (error="...").

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	statev1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/state/v1"
	"google.golang.org/protobuf/proto"
)

var scnRewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of the scenario scripts in testdata/")

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenario scripts in testdata/")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { scnRunFile(t, f) })
	}
}

// scnBlock is one block of a script.
type scnBlock struct {
	line  int      // of the first input line
	input []string // comment and command lines, verbatim
	want  []string
	bug   bool // has a "# BUG" comment: never rewritten
}

type scnFile struct {
	blocks   []*scnBlock
	trailing []string // comment lines after the last block
}

func scnParse(path, text string) (*scnFile, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	f := &scnFile{}
	var cur *scnBlock
	for i := 0; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], " \t\r")
		if cur == nil {
			if l == "" {
				continue
			}
			cur = &scnBlock{line: i + 1}
		}
		if l == "" {
			return nil, fmt.Errorf("%s:%d: blank line inside the input of the block starting at line %d (missing ----?)", path, i+1, cur.line)
		}
		if l != "----" {
			cur.input = append(cur.input, l)
			if strings.HasPrefix(l, "# BUG") {
				cur.bug = true
			}
			continue
		}
		for i++; i < len(lines) && strings.TrimRight(lines[i], " \t\r") != ""; i++ {
			cur.want = append(cur.want, strings.TrimRight(lines[i], " \t\r"))
		}
		f.blocks = append(f.blocks, cur)
		cur = nil
	}
	if cur != nil {
		for _, l := range cur.input {
			if !strings.HasPrefix(l, "#") {
				return nil, fmt.Errorf("%s:%d: block without ----", path, cur.line)
			}
		}
		f.trailing = cur.input
	}
	return f, nil
}

func (f *scnFile) format() string {
	var b strings.Builder
	for i, bl := range f.blocks {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, l := range bl.input {
			b.WriteString(l + "\n")
		}
		b.WriteString("----\n")
		for _, l := range bl.want {
			b.WriteString(l + "\n")
		}
	}
	if len(f.trailing) > 0 {
		b.WriteString("\n")
		for _, l := range f.trailing {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func scnRunFile(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := scnParse(path, string(data))
	if err != nil {
		t.Fatal(err)
	}
	h := &scnHarness{t: t, labels: map[WorkerID][]string{}}
	changed := false
	for _, bl := range f.blocks {
		pos := fmt.Sprintf("%s:%d", path, bl.line)
		if !strings.HasPrefix(bl.input[0], "#") {
			t.Fatalf("%s: a block must start with a '# comment' line naming the rule it checks", pos)
		}
		var out []string
		for j, l := range bl.input {
			if strings.HasPrefix(l, "#") {
				continue
			}
			got, err := h.exec(l)
			if err != nil {
				t.Fatalf("%s:%d: %s: %v", path, bl.line+j, l, err)
			}
			out = append(out, got...)
		}
		if slices.Equal(out, bl.want) {
			continue
		}
		if *scnRewrite && !bl.bug {
			bl.want = out
			changed = true
			continue
		}
		t.Errorf("%s: output differs\ninput:\n  %s\ngot:\n  %s\ndiff (-want +got):\n%s", pos,
			strings.Join(bl.input, "\n  "), strings.Join(out, "\n  "), cmp.Diff(bl.want, out))
	}
	if changed {
		if err := os.WriteFile(path, []byte(f.format()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// scnHarness runs commands against one pool.
type scnHarness struct {
	t      *testing.T
	s      *Scheduler
	labels map[WorkerID][]string // last known labels of each bot, for assign
	events []Event               // events taken before a state surgery
}

// scnArgs are the arguments of one command line.
type scnArgs struct {
	pos  []string
	kv   map[string]string
	used map[string]bool
}

func scnTokenize(line string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	in := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '"':
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(line) {
				return nil, fmt.Errorf("unterminated quote")
			}
			s, err := strconv.Unquote(line[i : j+1])
			if err != nil {
				return nil, err
			}
			cur.WriteString(s)
			in = true
			i = j
		case c == ' ' || c == '\t':
			if in {
				toks = append(toks, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

func scnParseArgs(toks []string) *scnArgs {
	a := &scnArgs{kv: map[string]string{}, used: map[string]bool{}}
	for _, tok := range toks {
		if k, v, ok := strings.Cut(tok, "="); ok {
			a.kv[k] = v
		} else {
			a.pos = append(a.pos, tok)
		}
	}
	return a
}

func (a *scnArgs) get(k string) (string, bool) {
	v, ok := a.kv[k]
	if ok {
		a.used[k] = true
	}
	return v, ok
}

func (a *scnArgs) str(k, def string) string {
	if v, ok := a.get(k); ok {
		return v
	}
	return def
}

// flag consumes a positional word.
func (a *scnArgs) flag(name string) bool {
	for i, p := range a.pos {
		if p == name {
			a.pos = slices.Delete(a.pos, i, i+1)
			return true
		}
	}
	return false
}

func (a *scnArgs) list(k string) []string {
	v, ok := a.get(k)
	if !ok || v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// finish reports arguments that no one consumed; npos is the number of
// positional arguments the command takes.
func (a *scnArgs) finish(npos int) error {
	if len(a.pos) != npos {
		return fmt.Errorf("want %d positional argument(s), got %q", npos, a.pos)
	}
	var unknown []string
	for k := range a.kv {
		if !a.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("unknown argument(s) %q", unknown)
	}
	return nil
}

func scnParseTime(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("bad time %q", s)
	}
	return time.Unix(0, 0).Add(time.Duration(math.Round(f * 1e9))), nil
}

func (a *scnArgs) time(k string) (time.Time, error) {
	v, ok := a.get(k)
	if !ok {
		return time.Time{}, fmt.Errorf("missing %s=", k)
	}
	return scnParseTime(v)
}

func (a *scnArgs) seconds(k string) (*int64, error) {
	v, ok := a.get(k)
	if !ok {
		return nil, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: bad duration %q", k, v)
	}
	n := int64(math.Round(f * 1e9))
	return &n, nil
}

func (a *scnArgs) float32(k string) (*float32, error) {
	v, ok := a.get(k)
	if !ok {
		return nil, nil
	}
	f, err := strconv.ParseFloat(v, 32)
	if err != nil {
		return nil, fmt.Errorf("%s: bad number %q", k, v)
	}
	x := float32(f)
	return &x, nil
}

func (a *scnArgs) floats(k string) ([]float64, bool, error) {
	v, ok := a.get(k)
	if !ok {
		return nil, false, nil
	}
	var out []float64
	for _, x := range strings.Split(v, ",") {
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return nil, true, fmt.Errorf("%s: bad number %q", k, x)
		}
		out = append(out, f)
	}
	return out, true, nil
}

func scnFloat32s(v []float64) []float32 {
	var out []float32
	for _, x := range v {
		out = append(out, float32(x))
	}
	return out
}

// scnExpand expands prefix{A..B}suffix into one string per number.
func scnExpand(s string) ([]string, error) {
	i := strings.Index(s, "{")
	if i < 0 {
		return []string{s}, nil
	}
	j := strings.Index(s[i:], "}")
	if j < 0 {
		return nil, fmt.Errorf("bad range in %q", s)
	}
	j += i
	lo, hi, ok := strings.Cut(s[i+1:j], "..")
	if !ok {
		return nil, fmt.Errorf("bad range in %q", s)
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || a > b {
		return nil, fmt.Errorf("bad range in %q", s)
	}
	width := 0
	if len(lo) > 1 && lo[0] == '0' {
		width = len(lo)
	}
	var out []string
	for n := a; n <= b; n++ {
		out = append(out, fmt.Sprintf("%s%0*d%s", s[:i], width, n, s[j+1:]))
	}
	return out, nil
}

func (h *scnHarness) exec(line string) ([]string, error) {
	toks, err := scnTokenize(line)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	cmd, a := toks[0], scnParseArgs(toks[1:])
	if h.s == nil && cmd != "new" {
		return nil, fmt.Errorf("the first command must be new")
	}
	switch cmd {
	case "new":
		return h.cmdNew(a)
	case "tunables":
		return h.cmdTunables(a)
	case "add-account":
		return h.cmdAddAccount(a)
	case "delete-account":
		if err := a.finish(1); err != nil {
			return nil, err
		}
		return scnResult(h.s.DeleteAccount(AccountID(a.pos[0]))), nil
	case "idle":
		return h.cmdIdle(a)
	case "notify":
		return h.cmdNotify(a)
	case "task-error":
		msg := a.str("msg", "")
		if err := a.finish(1); err != nil {
			return nil, err
		}
		return scnResult(h.s.SetTaskError(RequestID(a.pos[0]), msg)), nil
	case "assign":
		return h.cmdAssign(a)
	case "run":
		if err := a.finish(0); err != nil {
			return nil, err
		}
		return scnFormatAssignments(h.s.runOnce()), nil
	case "tick":
		t, err := a.time("t")
		if err != nil {
			return nil, err
		}
		if err := a.finish(0); err != nil {
			return nil, err
		}
		return scnResult(h.s.UpdateTime(t)), nil
	case "set-balance":
		return h.cmdSetBalance(a)
	case "set-cost":
		return h.cmdSetCost(a)
	case "dump":
		return h.cmdDump(a)
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

func scnResult(err error) []string {
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	return []string{"ok"}
}

func scnTunables(a *scnArgs) (*statev1.PoolConfig, error) {
	c := &statev1.PoolConfig{DisablePreemption: a.flag("disable_preemption")}
	var err error
	for _, d := range []struct {
		k string
		p **int64
	}{
		{"bot_expiration", &c.BotExpirationNanos},
		{"worker_queue_timeout", &c.WorkerQueueTimeoutNanos},
		{"max_queueing_age", &c.MaxQueueingAgeNanos},
		{"tombstone_ttl", &c.TombstoneTtlNanos},
	} {
		if *d.p, err = a.seconds(d.k); err != nil {
			return nil, err
		}
	}
	if c.PromoteThreshold, err = a.float32("promote"); err != nil {
		return nil, err
	}
	if c.DemoteThreshold, err = a.float32("demote"); err != nil {
		return nil, err
	}
	if v, ok := a.get("max_tombstones"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("max_tombstones: bad number %q", v)
		}
		c.MaxTombstones = proto.Int32(int32(n))
	}
	return c, nil
}

func (h *scnHarness) cmdNew(a *scnArgs) ([]string, error) {
	c, err := scnTunables(a)
	if err != nil {
		return nil, err
	}
	if err := a.finish(0); err != nil {
		return nil, err
	}
	s, err := New(c)
	if err != nil {
		return []string{"error: " + err.Error()}, nil
	}
	h.s, h.labels, h.events = s, map[WorkerID][]string{}, nil
	return []string{"ok"}, nil
}

func (h *scnHarness) cmdTunables(a *scnArgs) ([]string, error) {
	c, err := scnTunables(a)
	if err != nil {
		return nil, err
	}
	if err := a.finish(0); err != nil {
		return nil, err
	}
	return scnResult(h.s.SetTunables(c)), nil
}

func (h *scnHarness) cmdAddAccount(a *scnArgs) ([]string, error) {
	c := &statev1.AccountConfig{DisableFreeTasks: a.flag("no-free")}
	rates, _, err := a.floats("rates")
	if err != nil {
		return nil, err
	}
	c.ChargeRate = scnFloat32s(rates)
	if w, err := a.float32("window"); err != nil {
		return nil, err
	} else if w != nil {
		c.MaxChargeSeconds = *w
	}
	if v, ok := a.get("fanout"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("fanout: bad number %q", v)
		}
		c.MaxFanout = int32(n)
	}
	if ls := a.list("limits"); ls != nil {
		c.PerLabelTaskLimits = map[string]int32{}
		for _, l := range ls {
			i := strings.LastIndex(l, ":")
			if i < 0 {
				return nil, fmt.Errorf("limits: want key:N, got %q", l)
			}
			n, err := strconv.Atoi(l[i+1:])
			if err != nil {
				return nil, fmt.Errorf("limits: bad number in %q", l)
			}
			c.PerLabelTaskLimits[l[:i]] = int32(n)
		}
	}
	bal, _, err := a.floats("balance")
	if err != nil {
		return nil, err
	}
	if err := a.finish(1); err != nil {
		return nil, err
	}
	return scnResult(h.s.AddAccount(AccountID(a.pos[0]), c, scnFloat32s(bal))), nil
}

func (h *scnHarness) cmdIdle(a *scnArgs) ([]string, error) {
	labels := a.list("labels")
	t, err := a.time("t")
	if err != nil {
		return nil, err
	}
	cb := a.flag("from-callback")
	if err := a.finish(1); err != nil {
		return nil, err
	}
	ids, err := scnExpand(a.pos[0])
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		h.labels[WorkerID(id)] = labels
		if err := h.s.MarkIdle(WorkerID(id), labels, t, cb); err != nil {
			out = append(out, fmt.Sprintf("error: %s: %v", id, err))
		}
	}
	if out == nil {
		out = []string{"ok"}
	}
	return out, nil
}

func (h *scnHarness) cmdNotify(a *scnArgs) ([]string, error) {
	t, err := a.time("t")
	if err != nil {
		return nil, err
	}
	cb := a.flag("from-callback")
	if len(a.pos) != 2 {
		return nil, fmt.Errorf("usage: notify waiting|running|absent ID ...")
	}
	kind := a.pos[0]
	n := Notification{Time: t}
	switch kind {
	case "waiting":
		n.Kind = NotifyWaiting
		n.Task.Account = AccountID(a.str("account", ""))
		n.Task.BaseLabels = a.list("base")
		n.Task.ProvisionableLabels = a.list("provisionable")
		n.Task.Tags = a.list("tags")
		n.Task.EnqueueTime = t
		if _, ok := a.kv["enqueued"]; ok {
			if n.Task.EnqueueTime, err = a.time("enqueued"); err != nil {
				return nil, err
			}
		}
	case "running":
		n.Kind = NotifyRunning
		bot, ok := a.get("bot")
		if !ok {
			return nil, fmt.Errorf("notify running needs bot=")
		}
		n.Worker = WorkerID(bot)
	case "absent":
		n.Kind = NotifyAbsent
	default:
		return nil, fmt.Errorf("unknown notification kind %q", kind)
	}
	if err := a.finish(2); err != nil {
		return nil, err
	}
	ids, err := scnExpand(a.pos[1])
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		n.Task.ID = RequestID(id)
		if err := h.s.Notify(n, cb); err != nil {
			out = append(out, fmt.Sprintf("error: %s: %v", id, err))
		}
	}
	if out == nil {
		out = []string{"ok"}
	}
	return out, nil
}

func (h *scnHarness) cmdAssign(a *scnArgs) ([]string, error) {
	t, err := a.time("t")
	if err != nil {
		return nil, err
	}
	var bots []IdleWorker
	for _, b := range a.list("bots") {
		id, inline, hasInline := strings.Cut(b, ":")
		ids, err := scnExpand(id)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			w := WorkerID(id)
			if hasInline {
				var ls []string
				if inline != "" {
					ls = strings.Split(inline, "+")
				}
				h.labels[w] = ls
			}
			bots = append(bots, IdleWorker{ID: w, Labels: slices.Clone(h.labels[w])})
		}
	}
	if err := a.finish(0); err != nil {
		return nil, err
	}
	as, err := h.s.AssignTasks(t, bots)
	if err != nil {
		return []string{"error: " + err.Error()}, nil
	}
	if len(as) == 0 {
		return []string{"no tasks"}, nil
	}
	var out []string
	for _, x := range as {
		l := fmt.Sprintf("%s: %s", x.Worker, x.Task)
		if x.ProvisionRequired {
			l += " provision_required"
		}
		out = append(out, l)
	}
	return out, nil
}

// surgery rewrites the state through ToProto and FromProto.
func (h *scnHarness) surgery(edit func(st *statev1.PoolState) error) ([]string, error) {
	h.events = append(h.events, h.s.TakeEvents()...)
	st := h.s.ToProto()
	if err := edit(st); err != nil {
		return nil, err
	}
	s, err := FromProto(st)
	if err != nil {
		return nil, fmt.Errorf("FromProto after surgery: %v", err)
	}
	h.s = s
	return []string{"ok"}, nil
}

func (h *scnHarness) cmdSetBalance(a *scnArgs) ([]string, error) {
	bal, ok, err := a.floats("balance")
	if err != nil || !ok {
		return nil, fmt.Errorf("set-balance needs balance= (%v)", err)
	}
	if err := a.finish(1); err != nil {
		return nil, err
	}
	v := make([]float64, NumPaidLevels)
	copy(v, bal)
	id := a.pos[0]
	return h.surgery(func(st *statev1.PoolState) error {
		for _, b := range st.Balances {
			if b.AccountId == id {
				b.Value = v
				return nil
			}
		}
		st.Balances = append(st.Balances, &statev1.AccountBalance{AccountId: id, Value: v})
		slices.SortFunc(st.Balances, func(x, y *statev1.AccountBalance) int { return strings.Compare(x.AccountId, y.AccountId) })
		return nil
	})
}

func (h *scnHarness) cmdSetCost(a *scnArgs) ([]string, error) {
	cost, ok, err := a.floats("cost")
	if err != nil || !ok {
		return nil, fmt.Errorf("set-cost needs cost= (%v)", err)
	}
	if err := a.finish(1); err != nil {
		return nil, err
	}
	v := make([]float64, NumPaidLevels)
	copy(v, cost)
	id := a.pos[0]
	return h.surgery(func(st *statev1.PoolState) error {
		for _, w := range st.Workers {
			if rt := w.Running; rt != nil && rt.Request.Id == id {
				rt.Cost = v
				rt.LevelSinceUnixNanos = st.GetLastUpdateUnixNanos()
				return nil
			}
		}
		return fmt.Errorf("set-cost: %s is not running", id)
	})
}

// Formatting.

func scnTime(ns int64) string {
	return strconv.FormatFloat(float64(ns)/1e9, 'f', -1, 64)
}

func scnTimeOf(t time.Time) string { return scnTime(t.UnixNano()) }

func scnNum(x float64) string {
	r := math.Round(x*1e6) / 1e6
	if r == 0 {
		r = 0 // no "-0"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

func scnVec(v []float64) string {
	n := len(v)
	for n > 1 && scnNum(v[n-1]) == "0" {
		n--
	}
	if n == 0 {
		return "{0}"
	}
	parts := make([]string, n)
	for i := range n {
		parts[i] = scnNum(v[i])
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func scnLabels(ls []string) string { return "[" + strings.Join(ls, ",") + "]" }

func scnFormatAssignments(as []assignment) []string {
	if len(as) == 0 {
		return []string{"no assignments"}
	}
	var out []string
	for _, x := range as {
		var l string
		if x.Preempted != "" {
			l = fmt.Sprintf("preempt %s -> %s at %s t=%s aborting %s", x.Request, x.Worker, x.Priority, scnTimeOf(x.Time), x.Preempted)
		} else {
			l = fmt.Sprintf("assign %s -> %s at %s t=%s", x.Request, x.Worker, x.Priority, scnTimeOf(x.Time))
		}
		if x.ProvisionRequired {
			l += " provision_required"
		}
		out = append(out, l)
	}
	return out
}

// scnCost is a running task's cost at the clock (design.md: cost at the last
// level change plus the time since at its paid level).
func scnCost(rt *statev1.RunningTask, now int64) []float64 {
	c := make([]float64, NumPaidLevels)
	copy(c, rt.Cost)
	if p := rt.Priority; p >= 0 && p < NumPaidLevels {
		c[p] = float64(c[p] + float64(now-rt.LevelSinceUnixNanos)/1e9)
	}
	return c
}

func scnRequest(r *statev1.Request) string {
	var parts []string
	if r.AccountId != "" {
		parts = append(parts, "account="+r.AccountId)
	}
	if len(r.BaseLabels) > 0 {
		parts = append(parts, "base="+scnLabels(r.BaseLabels))
	}
	if len(r.ProvisionableLabels) > 0 {
		parts = append(parts, "prov="+scnLabels(r.ProvisionableLabels))
	}
	parts = append(parts, "enqueued="+scnTime(r.EnqueueTimeUnixNanos), "confirmed="+scnTime(r.ConfirmedTimeUnixNanos))
	return strings.Join(parts, " ")
}

func scnSection(name string, items []string) []string {
	if len(items) == 0 {
		return []string{name + ": (none)"}
	}
	out := []string{name + ":"}
	for _, it := range items {
		out = append(out, "  "+it)
	}
	return out
}

func (h *scnHarness) cmdDump(a *scnArgs) ([]string, error) {
	if len(a.pos) == 0 {
		return nil, fmt.Errorf("dump what?")
	}
	var out []string
	for _, what := range a.pos {
		st := h.s.ToProto()
		now := st.GetLastUpdateUnixNanos()
		var items []string
		switch what {
		case "clock":
			if st.LastUpdateUnixNanos == nil {
				out = append(out, "clock: unset")
			} else {
				out = append(out, "clock: "+scnTime(now))
			}
			continue
		case "balances":
			for _, b := range st.Balances {
				items = append(items, b.AccountId+" "+scnVec(b.Value))
			}
		case "waiting":
			ws := slices.Clone(st.Waiting)
			slices.SortFunc(ws, func(x, y *statev1.Request) int {
				if x.EnqueueTimeUnixNanos != y.EnqueueTimeUnixNanos {
					if x.EnqueueTimeUnixNanos < y.EnqueueTimeUnixNanos {
						return -1
					}
					return 1
				}
				return strings.Compare(x.Id, y.Id)
			})
			for _, r := range ws {
				items = append(items, r.Id+" "+scnRequest(r))
			}
		case "running":
			var ws []*statev1.Worker
			for _, w := range st.Workers {
				if w.Running != nil {
					ws = append(ws, w)
				}
			}
			slices.SortFunc(ws, func(x, y *statev1.Worker) int { return strings.Compare(x.Running.Request.Id, y.Running.Request.Id) })
			for _, w := range ws {
				rt := w.Running
				items = append(items, fmt.Sprintf("%s on %s at %s cost=%s %s", rt.Request.Id, w.Id, Priority(rt.Priority),
					scnVec(scnCost(rt, now)), scnRequest(rt.Request)))
			}
		case "workers":
			for _, w := range st.Workers {
				l := fmt.Sprintf("%s %s confirmed=%s", w.Id, scnLabels(w.Labels), scnTime(w.ConfirmedTimeUnixNanos))
				if w.Running != nil {
					l += " running " + w.Running.Request.Id
				} else {
					l += " idle"
				}
				items = append(items, l)
			}
		case "assignments":
			for _, e := range st.Pending {
				l := fmt.Sprintf("%s: assign=%s", e.WorkerId, e.TaskToAssign)
				if e.TaskToAbort != "" {
					l += " abort=" + e.TaskToAbort
				}
				items = append(items, l+" t="+scnTime(e.TimeUnixNanos))
			}
			out = append(out, scnSection("pending assignments", items)...)
			continue
		case "events":
			evs := append(h.events, h.s.TakeEvents()...)
			h.events = nil
			for _, e := range evs {
				items = append(items, scnEvent(e))
			}
		case "cancellations":
			for _, c := range h.s.Cancellations() {
				switch c.Reason {
				case CancelPreempted:
					items = append(items, fmt.Sprintf("PREEMPTED %s bot=%s%s", c.Task, c.Worker, scnQuoted(" extra_info=", c.ExtraInfo)))
				case CancelError:
					items = append(items, fmt.Sprintf("ERROR %s%s%s", c.Task, scnQuoted(" bot=", string(c.Worker)), scnQuoted(" extra_info=", c.ExtraInfo)))
				default:
					items = append(items, fmt.Sprintf("reason=%d %s bot=%s extra_info=%q", c.Reason, c.Task, c.Worker, c.ExtraInfo))
				}
			}
		case "callbacks":
			var ids []string
			for _, id := range h.s.Callbacks() {
				ids = append(ids, string(id))
			}
			if len(ids) == 0 {
				out = append(out, "callbacks: (none)")
			} else {
				out = append(out, "callbacks: "+strings.Join(ids, " "))
			}
			continue
		case "tombstones":
			for _, x := range st.Tombstones {
				items = append(items, x.RequestId+" finished="+scnTime(x.FinishTimeUnixNanos))
			}
		default:
			return nil, fmt.Errorf("dump: unknown section %q", what)
		}
		out = append(out, scnSection(what, items)...)
	}
	return out, nil
}

func scnQuoted(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + strconv.Quote(s)
}

func scnEvent(e Event) string {
	parts := []string{e.Type.String(), string(e.Task)}
	if e.Worker != "" {
		parts = append(parts, "worker="+string(e.Worker))
	}
	switch e.Type {
	case EventAssigned:
		parts = append(parts, "level="+e.Level.String())
		if e.ProvisionRequired {
			parts = append(parts, "provision_required")
		}
		if e.Preempting {
			parts = append(parts, "preempting="+string(e.PreemptedTask), "preemption_cost="+scnVec(e.PreemptionCost[:]))
		}
	case EventPreempted:
		parts = append(parts, "level="+e.Level.String(), "by="+string(e.PreemptorTask))
	case EventReprioritized:
		parts = append(parts, e.OldLevel.String()+"->"+e.Level.String())
	case EventCompleted:
		parts = append(parts, "reason="+e.Reason.String())
		if e.Worker != "" { // it was running: its cost at the clock
			parts = append(parts, "cost="+scnVec(e.Cost[:]))
		}
		if e.OtherTask != "" {
			parts = append(parts, "other_task="+string(e.OtherTask))
		}
		if e.OtherWorker != "" {
			parts = append(parts, "other_worker="+string(e.OtherWorker))
		}
	case EventEnqueued:
		if len(e.Tags) > 0 {
			parts = append(parts, "tags="+scnLabels(e.Tags))
		}
	case EventTaskError:
		parts = append(parts, "error="+strconv.Quote(e.Error))
	}
	parts = append(parts, "t="+scnTime(e.Time))
	if e.FromCallback {
		parts = append(parts, "from_callback")
	}
	return strings.Join(parts, " ")
}
