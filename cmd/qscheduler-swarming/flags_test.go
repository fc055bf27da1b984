package main

import (
	"io"
	"testing"
	"time"
)

// TestDefaultsAndEnvironment: no flags gives the documented defaults;
// QSCHEDULER_* variables set defaults; flags win over them; bad values are
// errors, not surprises.
func TestDefaultsAndEnvironment(t *testing.T) {
	c, err := parseFlags(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.grpcAddr != "127.0.0.1:9090" || c.httpAddr != "127.0.0.1:8080" || c.store != "embedded:qscheduler-data" || c.eventLog != "jsonl:qscheduler-data/events.jsonl" {
		t.Errorf("defaults %+v", c)
	}
	env := map[string]string{"QSCHEDULER_GRPC_ADDR": "127.0.0.1:1", "QSCHEDULER_STORE": "memory", "QSCHEDULER_BATCH_WINDOW": "5ms"}
	c, err = parseFlags([]string{"--store=embedded:/tmp/x"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.grpcAddr != "127.0.0.1:1" || c.store != "embedded:/tmp/x" || c.batchWindow != 5*time.Millisecond {
		t.Errorf("env and flags: %+v", c)
	}
	if _, err := parseFlags(nil, func(k string) string {
		if k == "QSCHEDULER_MAX_QUEUE" {
			return "lots"
		}
		return ""
	}, io.Discard); err == nil {
		t.Error("a bad QSCHEDULER_MAX_QUEUE was accepted")
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
