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
	env := map[string]string{"QSCHEDULER_GRPC_ADDR": "127.0.0.1:1", "QSCHEDULER_STORE": "memory", "QSCHEDULER_BATCH_WINDOW": "5ms", "QSCHEDULER_MAX_CLOCK_SKEW": "1m"}
	c, err = parseFlags([]string{"--store=embedded:/tmp/x"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.grpcAddr != "127.0.0.1:1" || c.store != "embedded:/tmp/x" || c.batchWindow != 5*time.Millisecond || c.maxClockSkew != time.Minute {
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
	for _, want := range []string{"--grpc-addr", "QSCHEDULER_GRPC_ADDR", "--max-clock-skew", "QSCHEDULER_MAX_CLOCK_SKEW", "QSCHEDULER_MAX_NOTIFY_QUEUE", "--version"} {
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
