package eventlog

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	eventsv1 "github.com/qscheduler-swarming/qscheduler-swarming/proto/qscheduler/events/v1"
	"github.com/qscheduler-swarming/qscheduler-swarming/scheduler"
	"google.golang.org/protobuf/encoding/protojson"
)

func events(n int) []scheduler.Event {
	var out []scheduler.Event
	for i := range n {
		out = append(out, scheduler.Event{Type: scheduler.EventAssigned, Task: scheduler.RequestID(string(rune('a' + i%26))), Level: 2,
			Worker: "bot", WorkerLabels: []string{"pool:x"}, Preempting: true, PreemptedTask: "victim", PreemptionCost: scheduler.Vector{1, 2}})
	}
	return out
}

// TestJSONLWritesRows: every emitted event becomes one parseable row with
// its fields and a unique row id, and Close flushes.
func TestJSONLWritesRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "events.jsonl")
	j, err := OpenJSONL(path, "inst", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	j.Emit("pool1", events(3))
	j.Emit("pool2", events(2))
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]bool{}
	var rows []*eventsv1.TaskEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r := &eventsv1.TaskEvent{}
		if err := protojson.Unmarshal(sc.Bytes(), r); err != nil {
			t.Fatalf("row %q: %v", sc.Text(), err)
		}
		if ids[r.RowId] {
			t.Errorf("row id %s repeated", r.RowId)
		}
		ids[r.RowId] = true
		rows = append(rows, r)
	}
	if len(rows) != 5 || j.Written.Load() != 5 || j.Dropped.Load() != 0 {
		t.Fatalf("%d rows, written %d dropped %d; want 5, 5, 0", len(rows), j.Written.Load(), j.Dropped.Load())
	}
	r := rows[0]
	if r.Pool != "pool1" || r.Type != eventsv1.TaskEvent_TYPE_ASSIGNED || r.Priority != 2 || !r.Preempting || r.PreemptedTaskId != "victim" ||
		len(r.PreemptionCost) != 5 || r.PreemptionCost[1] != 2 || r.BotDimensions[0] != "pool:x" {
		t.Errorf("row %v", r)
	}
	if rows[4].Pool != "pool2" {
		t.Errorf("last row pool %s, want pool2", rows[4].Pool)
	}
	// After Close, nothing more is written and what is offered is counted.
	j.Emit("pool1", events(1))
	if j.Dropped.Load() != 1 {
		t.Errorf("dropped %d after close, want 1", j.Dropped.Load())
	}
}

// TestJSONLShedsOldest: beyond its bound the queue drops the oldest rows and
// counts them.
func TestJSONLShedsOldest(t *testing.T) {
	j := &JSONL{instance: "i", max: 3} // no writer: the queue only fills
	j.cond = sync.NewCond(&j.mu)
	evs := events(5)
	j.Emit("p", evs)
	if j.Dropped.Load() != 2 || len(j.queue) != 3 {
		t.Fatalf("dropped %d, queued %d; want 2 and 3", j.Dropped.Load(), len(j.queue))
	}
	r := &eventsv1.TaskEvent{}
	if err := protojson.Unmarshal(j.queue[0], r); err != nil || r.TaskId != string(evs[2].Task) {
		t.Errorf("oldest kept row %v (%v), want the third event's", r, err)
	}
}

// TestRowTypesAndReasons: every scheduler event type and completion reason
// becomes the row enum value of the same name.
func TestRowTypesAndReasons(t *testing.T) {
	for typ := scheduler.EventEnqueued; typ.String() != "UNKNOWN"; typ++ {
		got := Row("i", "p", scheduler.Event{Type: typ}).Type.String()
		if want := "TYPE_" + typ.String(); got != want {
			t.Errorf("event type %v: row type %s, want %s", typ, got, want)
		}
	}
	if n := len(eventsv1.TaskEvent_Type_name); n != int(scheduler.EventTaskError)+1 {
		t.Errorf("the row has %d types, the scheduler %d (with UNSPECIFIED)", n, scheduler.EventTaskError+1)
	}
	for r := scheduler.ReasonBotIdle; r.String() != "UNKNOWN"; r++ {
		got := Row("i", "p", scheduler.Event{Type: scheduler.EventCompleted, Reason: r}).Reason.String()
		if want := "REASON_" + r.String(); got != want {
			t.Errorf("reason %v: row reason %s, want %s", r, got, want)
		}
	}
}

// TestJSONLTaskError: a TASK_ERROR event is a JSON line with its type's name
// and the error text, which GetCancellations reports as extra_info.
func TestJSONLTaskError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	j, err := OpenJSONL(path, "inst", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	const msg = "task has 2 qs_account tags"
	j.Emit("pool1", []scheduler.Event{{Type: scheduler.EventTaskError, Task: "r9", Time: 5e9, Error: msg}})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSuffix(string(b), "\n")
	if strings.Contains(line, "\n") || !strings.Contains(line, `"TYPE_TASK_ERROR"`) || !strings.Contains(line, `"`+msg+`"`) {
		t.Fatalf("line %s: want one line with \"TYPE_TASK_ERROR\" and %q", line, msg)
	}
	r := &eventsv1.TaskEvent{}
	if err := protojson.Unmarshal([]byte(line), r); err != nil {
		t.Fatal(err)
	}
	if r.Type != eventsv1.TaskEvent_TYPE_TASK_ERROR || r.TaskId != "r9" || r.Error != msg || r.Time.AsTime().Unix() != 5 {
		t.Errorf("row %v", r)
	}
}
