package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/qscheduler-swarming/qscheduler-swarming/frontend"
)

// TestDefaultsAndEnvironment: no flags gives the documented defaults;
// QSCHEDULER_* variables set defaults; flags win over them; bad values are
// errors, not surprises.
func TestDefaultsAndEnvironment(t *testing.T) {
	c, err := parseFlags(nil, noEnv, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.grpcAddr != "127.0.0.1:9090" || c.httpAddr != "127.0.0.1:8080" || c.store != "embedded:qscheduler-data" ||
		c.eventLog != "jsonl:qscheduler-data/events.jsonl" || c.maxClockSkew != 10*time.Minute || c.maxNotifyQueue != 100000 {
		t.Errorf("defaults %+v", c)
	}
	if c.limits != frontend.DefaultLimits || c.maxRequestBytes != 16<<20 {
		t.Errorf("limits %+v, --max-request-bytes %d; want the defaults", c.limits, c.maxRequestBytes)
	}
	if c.httpHosts != nil || c.httpTimeouts != (httpTimeouts{10 * time.Second, 30 * time.Second, 60 * time.Second, 120 * time.Second}) {
		t.Errorf("--http-host %q, HTTP timeouts %+v; want none (the loopback names) and 10s, 30s, 60s, 120s", c.httpHosts, c.httpTimeouts)
	}
	env := map[string]string{"QSCHEDULER_GRPC_ADDR": "127.0.0.1:1", "QSCHEDULER_STORE": "memory", "QSCHEDULER_BATCH_WINDOW": "5ms", "QSCHEDULER_MAX_CLOCK_SKEW": "1m",
		"QSCHEDULER_MAX_TAG_BYTES": "100", "QSCHEDULER_MAX_REQUEST_BYTES": "1000", "QSCHEDULER_HTTP_HOST": "a.example, b.example:8443",
		"QSCHEDULER_HTTP_IDLE_TIMEOUT": "5s"}
	c, err = parseFlags([]string{"--store=embedded:/tmp/x", "--max-request-bytes=2000"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.grpcAddr != "127.0.0.1:1" || c.store != "embedded:/tmp/x" || c.batchWindow != 5*time.Millisecond || c.maxClockSkew != time.Minute ||
		c.limits.TagBytes != 100 || c.maxRequestBytes != 2000 || strings.Join(c.httpHosts, ",") != "a.example,b.example:8443" || c.httpTimeouts.idle != 5*time.Second {
		t.Errorf("env and flags: %+v", c)
	}
	if _, err := parseFlags(nil, func(k string) string {
		if k == "QSCHEDULER_MAX_QUEUE" {
			return "lots"
		}
		return ""
	}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "QSCHEDULER_MAX_QUEUE") {
		t.Errorf("a bad QSCHEDULER_MAX_QUEUE: %v, want an error naming it", err)
	}
	for _, arg := range []string{"--max-bot-dimensions=0", "--max-request-bytes=-1", "--max-notify-items=0", "--http-read-timeout=0", "--http-idle-timeout=-1s"} {
		if _, err := parseFlags([]string{arg}, noEnv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "not a positive") {
			t.Errorf("%s: %v, want an error", arg, err)
		}
	}
	if _, err := parseFlags([]string{"--no-such-flag"}, noEnv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--help") {
		t.Errorf("an unknown flag: %v, want an error pointing at --help", err)
	}
	for _, spec := range []string{"datastore:p", "embedded:", "file:/x"} {
		if _, err := openStore(spec, nil); err == nil {
			t.Errorf("--store=%s accepted", spec)
		}
	}
	for _, spec := range []string{"bigquery:p.d", "jsonl:", "stdout"} {
		if _, err := openEventLog(spec, "i", nil); err == nil {
			t.Errorf("--eventlog=%s accepted", spec)
		}
	}
}

// TestEventLogDefaultsUnderTheStore: the event log goes beside the state
// (never into the current directory); with a memory store there is none.
func TestEventLogDefaultsUnderTheStore(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store=embedded:/var/lib/qs"}, "jsonl:/var/lib/qs/events.jsonl"},
		{[]string{"--store=memory"}, "none"},
		{[]string{"--store=embedded:/var/lib/qs", "--eventlog=jsonl:/logs/e.jsonl"}, "jsonl:/logs/e.jsonl"},
	} {
		c, err := parseFlags(tc.args, noEnv, io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.eventLog != tc.want {
			t.Errorf("%v: --eventlog %q, want %q", tc.args, c.eventLog, tc.want)
		}
	}
}

// TestHelpAndVersion: --help lists every flag with its environment variable
// on stdout and exits 0; --version prints the version and revision; neither
// serves. Both run the real binary.
func TestHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, noEnv, &out, io.Discard, nil); err != nil {
		t.Fatalf("run --help: %v", err)
	}
	for _, want := range []string{"--grpc-addr", "QSCHEDULER_GRPC_ADDR", "--max-clock-skew", "QSCHEDULER_MAX_CLOCK_SKEW", "QSCHEDULER_MAX_NOTIFY_QUEUE", "--version",
		"QSCHEDULER_MAX_REQUEST_BYTES", "QSCHEDULER_MAX_ASSIGN_BOTS", "QSCHEDULER_MAX_BOT_DIMENSIONS", "QSCHEDULER_MAX_NOTIFY_ITEMS",
		"QSCHEDULER_MAX_SLICE_DIMENSIONS", "QSCHEDULER_MAX_DIMENSION_BYTES", "QSCHEDULER_MAX_TASK_TAGS", "QSCHEDULER_MAX_TAG_BYTES",
		"QSCHEDULER_HTTP_HOST", "QSCHEDULER_HTTP_READ_HEADER_TIMEOUT", "QSCHEDULER_HTTP_READ_TIMEOUT", "QSCHEDULER_HTTP_WRITE_TIMEOUT", "QSCHEDULER_HTTP_IDLE_TIMEOUT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "QSCHEDULER_VERSION") {
		t.Errorf("--help offers QSCHEDULER_VERSION:\n%s", out.String())
	}
	if testing.Short() {
		return
	}
	bin := buildServer(t)
	for _, tc := range []struct {
		arg  string
		want string
	}{
		{"--help", "QSCHEDULER_STORE"},
		{"-h", "QSCHEDULER_STORE"},
		{"--version", "qscheduler-swarming dev (revision "},
	} {
		cmd := exec.Command(bin, tc.arg)
		cmd.Dir = t.TempDir() // nothing may be written here
		b, err := cmd.Output()
		if err != nil {
			t.Errorf("%s: %v (want exit 0)", tc.arg, err)
		}
		if !strings.Contains(string(b), tc.want) {
			t.Errorf("%s printed %q, want %q", tc.arg, b, tc.want)
		}
		if entries, _ := os.ReadDir(cmd.Dir); len(entries) > 0 {
			t.Errorf("%s created %v in the current directory", tc.arg, entries)
		}
	}
}
