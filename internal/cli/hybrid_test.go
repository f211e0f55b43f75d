package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/runner"
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
	// The batches would take 45 s (2 requests a real second); the deadline is 25 s
	// away. The tier allows 600 requests a minute, so the plan's realtime estimate
	// (9 s for 90) is set by the limit, not by how fast a loaded machine runs the
	// client under -race (on tier-4 the estimate was 1.9 s, and the client's own
	// time missed a 25 s deadline by 2 s).
	overlay := []byte("tiers:\n  paced:\n    batch: {rpm: 1000, queue: 100000, max_requests: 100000}\n    limits:\n      default: {rpm: 600, itpm: 10000000, otpm: 10000000}\n")
	cat, err := catalog.Overlay(catalog.Default(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "paced", APIKeys: []string{key}, ClockSpeed: 2, BatchProcessingRate: 1})
	dir := t.TempDir()
	input, out, catPath := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "catalog.yaml")
	writeWorkload(t, input, n)
	if err := os.WriteFile(catPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := cladeCmd(key, "run", input, "-o", out, "--base-url", em.URL, "--catalog", catPath, "--tier", "paced",
		"--deadline", "25s", "--max-batch-requests", "30", "--poll", "50ms", "--metrics-addr", "127.0.0.1:0")
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
		{[]string{"run", input, "--tier", "tier-1", "--deadline", "2h", "--cache-warm", "always"}, `--cache-warm "always": want off or realtime`},
		{[]string{"run", input, "--tier", "tier-1", "--cache-warm", "realtime"}, "--cache-warm is for the batches of the auto mode"},
		{[]string{"run", input, "--tier", "tier-1", "--deadline", "2h", "--cache-warm", "realtime", "--cache-warm-group", "0"}, "--cache-warm-group must be ≥ 1"},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		if code != cli.ExitUsage || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("clade %s: exit %d, stderr %q; want exit %d naming %q", strings.Join(tt.args[2:], " "), code, stderr.String(), cli.ExitUsage, tt.want)
		}
	}
}

// TestConcurrencyOutOfRange: clade run and clade batch refuse a --concurrency
// below 1 or above what one process can work (runner.MaxConcurrency), naming the
// flag and the range, before they import anything.
func TestConcurrencyOutOfRange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 1)
	over := fmt.Sprint(runner.MaxConcurrency + 1)
	for _, args := range [][]string{
		{"run", input, "--emulate", "tier-4", "--concurrency", "0"},
		{"run", input, "--emulate", "tier-4", "--concurrency", over},
		{"batch", input, "--emulate", "tier-4", "--concurrency", over},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		want := fmt.Sprintf("--concurrency %s: want 1 to %d", args[len(args)-1], runner.MaxConcurrency)
		if args[0] == "batch" {
			want = fmt.Sprintf("--concurrency must be 1 to %d", runner.MaxConcurrency)
		}
		if code != cli.ExitUsage || !strings.Contains(stderr.String(), want) {
			t.Errorf("clade %s: exit %d, stderr %q; want exit %d naming %q", strings.Join(args, " "), code, stderr.String(), cli.ExitUsage, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries after the refusals, want only the input (nothing imported)", len(entries))
	}
}

// TestRunDeadlineRealtimeFlags: the realtime side of a hybrid run takes clade run's
// own flags. --batch-min-window above the deadline makes it realtime only.
func TestRunDeadlineRealtimeFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run: skipped with -short")
	}
	t.Parallel()
	const n = 12
	key := "sk-ant-hybrid-flags-" + strings.Repeat("f", 24)
	run := func(t *testing.T, faults string, extra ...string) (*emulator.Running, string, int) {
		t.Helper()
		cfg := emulator.Config{Tier: "tier-4", APIKeys: []string{key}}
		if faults != "" {
			f, err := emulator.ParseFaults(faults)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Faults = f
		}
		em := emulator.StartTB(t, cfg)
		dir := t.TempDir()
		input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
		writeWorkload(t, input, n)
		args := append([]string{"run", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4",
			"--deadline", "1h", "--batch-min-window", "2h", "-q"}, extra...)
		cmd := cladeCmd(key, args...)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		code := 0
		if err := cmd.Run(); err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return em, stderr.String(), code
	}
	t.Run("count-tokens and fallback", func(t *testing.T) {
		t.Parallel()
		em, log, code := run(t, "", "--count-tokens", "--fallback-model", "claude-sonnet-4-5")
		if code != cli.ExitOK || !strings.Contains(log, fmt.Sprintf("%d succeeded", n)) {
			t.Fatalf("clade run --deadline --count-tokens --fallback-model: exit %d\n%s", code, tail(log, 2000))
		}
		if got := emulatorResponses(t, em.URL, "count_tokens"); got < n {
			t.Errorf("the emulator answered %d count_tokens calls, want at least %d (one per request)", got, n)
		}
	})
	t.Run("stream-above always", func(t *testing.T) {
		t.Parallel()
		// Every stream fails mid-way and a non-streaming call never does: with one
		// attempt each, every request ending errored shows they were streamed.
		_, log, code := run(t, "stream_error=1", "--stream-above", "always", "--max-attempts", "1")
		if code != cli.ExitFailedRequests || !strings.Contains(log, fmt.Sprintf("0 succeeded, %d errored", n)) {
			t.Fatalf("clade run --deadline --stream-above always against failing streams: exit %d, want %d with every request errored\n%s",
				code, cli.ExitFailedRequests, tail(log, 2000))
		}
	})
}

// emulatorResponses sums the emulator's clade_emulator_responses_total for endpoint.
func emulatorResponses(t *testing.T, baseURL, endpoint string) int {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, "clade_emulator_responses_total{") || !strings.Contains(l, `endpoint="`+endpoint+`"`) {
			continue
		}
		var v float64
		if _, err := fmt.Sscanf(l[strings.LastIndexByte(l, ' ')+1:], "%g", &v); err == nil {
			total += int(v)
		}
	}
	return total
}
