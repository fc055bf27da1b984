package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestREADMEQuickstart runs the README's grpcurl quickstart, line by line,
// with the real grpcurl (pinned in tools/grpcurl/go.mod) against a running
// server, substituting only the server address.
func TestREADMEQuickstart(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "<!-- quickstart -->")
	block, _, ok2 := strings.Cut(block, "<!-- /quickstart -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- quickstart --> block")
	}
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.HasPrefix(l, "grpcurl ") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 5 {
		t.Fatalf("quickstart has %d grpcurl lines, want at least 5", len(lines))
	}

	bin := filepath.Join(t.TempDir(), "grpcurl")
	build := exec.Command("go", "build", "-modfile="+filepath.Join(root, "tools/grpcurl/go.mod"), "-o", bin, "github.com/fullstorydev/grpcurl/cmd/grpcurl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building grpcurl: %v\n%s", err, out)
	}

	ts := startServer(t)
	var outputs []string
	for _, l := range lines {
		cmdline := strings.Replace(l, "127.0.0.1:9090", ts.grpcAddr, 1)
		cmdline = strings.Replace(cmdline, "grpcurl ", bin+" ", 1)
		cmd := exec.Command("bash", "-c", cmdline)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s\nfailed: %v\n%s", l, err, out.String())
		}
		outputs = append(outputs, out.String())
	}
	// The bot was given the task, and the pool shows it running.
	assign, inspect := outputs[3], outputs[4]
	if !strings.Contains(assign, `"taskId": "task-1"`) || !strings.Contains(assign, `"botId": "bot-1"`) {
		t.Errorf("AssignTasks printed %s, want task-1 for bot-1", assign)
	}
	if !strings.Contains(inspect, `"numRunningTasks": 1`) || !strings.Contains(inspect, `"team-a"`) {
		t.Errorf("InspectPool printed %s, want one running task and the account", inspect)
	}
}
