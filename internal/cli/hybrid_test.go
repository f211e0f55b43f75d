package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
)

// TestRunDeadlineSpillsAndMeetsIt runs `clade run --deadline` against an emulator
// whose batches are too slow for the deadline: the command prints its plan,
// spills to realtime, meets the deadline and writes one result per custom_id.
func TestRunDeadlineSpillsAndMeetsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run: skipped with -short")
	}
	t.Parallel()
	const n = 90
	key := "sk-ant-hybrid-cli-" + strings.Repeat("h", 24)
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 2, BatchProcessingRate: 2})
	dir := t.TempDir()
	input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeWorkload(t, input, n)
	cmd := cladeCmd(key, "run", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4",
		"--deadline", "12s", "--max-batch-requests", "30", "--poll", "50ms", "--metrics-addr", "127.0.0.1:0")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("clade run --deadline: %v\n%s", err, tail(stderr.String(), 3000))
	}
	log := stderr.String()
	for _, want := range []string{"metrics on http://127.0.0.1:", "plan: 90 requests left", "batches first", "spill to realtime", "met with"} {
		if !strings.Contains(log, want) {
			t.Errorf("output lacks %q:\n%s", want, tail(log, 3000))
		}
	}
	seen := countResults(t, out)
	for i := 0; i < n; i++ {
		if id := fmt.Sprintf("job-%05d", i); seen[id] != 1 {
			t.Errorf("%s appears %d times in the output, want once", id, seen[id])
		}
	}
}

func TestRunDeadlineUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 1)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"run", input, "--deadline", "2h"}, "name its tier with --tier"},
		{[]string{"run", input, "--tier", "tier-1", "--deadline", "-5m"}, "not in the future"},
		{[]string{"run", input, "--tier", "tier-1", "--deadline", "soon"}, "neither a duration"},
		{[]string{"run", input, "--tier", "tier-1", "--mode", "fast"}, "want realtime or auto"},
		{[]string{"run", input, "--tier", "tier-1", "--deadline", "2h", "--count-tokens"}, "not available with --deadline"},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		if code != cli.ExitUsage || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("clade %s: exit %d, stderr %q; want exit %d naming %q", strings.Join(tt.args[2:], " "), code, stderr.String(), cli.ExitUsage, tt.want)
		}
	}
}
