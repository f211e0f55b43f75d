package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/upstream"
)

// TestBatchScale drives 250,000 requests through a real `clade batch` process
// against the emulator on a fast clock, with the default --max-requests (the tier's
// 100,000): three batches, every custom_id exactly once in the output, succeeded.
// docs/benchmarks.md ("Batch mode at scale") has the memory and time figures.
//
// The clade process is the binary users run, built without -race (go build, from
// the build cache): under -race the test binary spends about 70% of its time in
// the race detector's instrumentation of modernc.org/sqlite (C translated to Go,
// checkptr on every pointer step), and 250,000 requests took 7.5 minutes that way
// against about one minute built normally. The emulator runs in this (race-built)
// process; dispatch itself is race-tested by the in-process batch tests.
func TestBatchScale(t *testing.T) {
	longTest(t) // about a minute of both cores: make test-long
	// Not parallel: the run takes most of the machine's two cores for a while,
	// which would slow the package's timing-sensitive crash tests.
	const n = 250_000
	bin := buildClade(t)
	key := "sk-ant-scale-" + strings.Repeat("s", 24)
	// 1,000 emulated seconds per second at 200 requests each: 200,000 requests
	// processed per real second, so the run measures clade, not the emulator's queue.
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1000, BatchProcessingRate: 200})
	dir := t.TempDir()
	input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeWorkload(t, input, n)

	var logs bytes.Buffer
	cmd := exec.Command(bin, "batch", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4", "--poll", "20ms")
	cmd.Env = append(os.Environ(), "ANTHROPIC_API_KEY="+key, "ANTHROPIC_BASE_URL=")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("clade batch of %d requests: %v\n%s", n, err, tail(logs.String(), 3000))
	}
	t.Logf("clade batch of %d requests: %s", n, time.Since(start).Round(time.Millisecond))
	for _, want := range []string{fmt.Sprintf("%d requests: %d succeeded, 0 errored", n, n), "3 batches created, 0 requests resubmitted"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, tail(logs.String(), 2000))
		}
	}

	seen := countResults(t, out) // fails on a line that is not succeeded
	for i := range n {
		if id := fmt.Sprintf("job-%05d", i); seen[id] != 1 {
			t.Errorf("%s appears %d times in the output, want exactly once", id, seen[id])
			if t.Failed() && i > 20 {
				break
			}
		}
	}
	if len(seen) != n {
		t.Errorf("output has %d custom_ids, want %d", len(seen), n)
	}

	// The API side: three batches of at most 100,000 requests, 250,000 in all; none
	// created twice.
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(key)})
	if err != nil {
		t.Fatal(err)
	}
	page, err := client.ListBatches(context.Background(), "", 100)
	if err != nil {
		t.Fatalf("ListBatches() error = %v", err)
	}
	var total int64
	for _, b := range page.Data {
		c := b.RequestCounts
		size := c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
		if size > 100_000 || c.Succeeded != size {
			t.Errorf("batch %s: %+v; want at most 100,000 requests, all succeeded", b.ID, c)
		}
		total += size
	}
	if len(page.Data) != 3 || total != n {
		t.Errorf("emulator holds %d batches of %d requests in all, want 3 of %d", len(page.Data), total, n)
	}
}

// longTest skips t unless CLADE_TEST_LONG is set: an end-to-end test slow enough
// to hold make test past five minutes on two cores. make test-long runs these
// (the Makefile's LONG_TESTS), and CI runs it after make test.
func longTest(t *testing.T) {
	t.Helper()
	if os.Getenv("CLADE_TEST_LONG") == "" {
		t.Skip("long end-to-end test: make test-long runs it (CLADE_TEST_LONG=1)")
	}
	if testing.Short() {
		t.Skip("long end-to-end test: skipped with -short")
	}
}

// buildClade builds cmd/clade without -race into a temporary directory and returns
// its path. With the build cache warm (go vet or an earlier run) this is a link.
func buildClade(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "clade")
	start := time.Now()
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/clade-dev/clade/cmd/clade")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/clade: %v\n%s", err, out)
	}
	t.Logf("go build cmd/clade: %s", time.Since(start).Round(time.Millisecond))
	return bin
}
