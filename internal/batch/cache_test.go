package batch_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestBatchCacheReadShare runs 2 documents × 5 questions, the document in a
// cache_control block, in batches of 5 (one document each, as the import groups a
// prefix's lines): the emulator, its batch cache in request order (BatchCacheGroup 1),
// writes each document once per batch and reads it for the other 4. Each batch's progress line and the summary report the cache read
// share, equal to what the result lines' usage says.
func TestBatchCacheReadShare(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000, BatchCacheGroup: 1})
	var lines []string
	for d := range 2 {
		doc := strings.Repeat(fmt.Sprintf("document %d. ", d), 20000/12) // ~5,000 tokens: over haiku's minimum
		for q := range 5 {
			lines = append(lines, fmt.Sprintf(`{"custom_id":"d%dq%d","params":{"model":"claude-haiku-4-5","max_tokens":32,"messages":[{"role":"user","content":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}},{"type":"text","text":"Question %d?"}]}]}}`, d, q, doc, q))
		}
	}
	input := filepath.Join(e.dir, "cached.jsonl")
	if err := os.WriteFile(input, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(input, 5)
	var progress testkit.Buffer
	cfg.Progress = &progress
	sum := run(t, cfg)

	var read, write, in int64
	for _, l := range testkit.ResultLines(t, cfg.Output) {
		u := l.Usage
		read += u.CacheReadInputTokens
		write += u.CacheCreation.Ephemeral5m + u.CacheCreation.Ephemeral1h
		in += u.InputTokens + u.CacheCreation.Ephemeral5m + u.CacheCreation.Ephemeral1h + u.CacheReadInputTokens
	}
	if sum.Succeeded != 10 || sum.Batches != 2 {
		t.Fatalf("Run() = %d succeeded in %d batches, want 10 in 2", sum.Succeeded, sum.Batches)
	}
	if read == 0 || write == 0 {
		t.Fatalf("result lines read %d and wrote %d cache tokens: the cache was not exercised", read, write)
	}
	if sum.CacheReadTokens != read || sum.CacheWriteTokens != write || sum.BatchInputTokens != in {
		t.Errorf("Summary cache read/write/input = %d/%d/%d, the result lines say %d/%d/%d",
			sum.CacheReadTokens, sum.CacheWriteTokens, sum.BatchInputTokens, read, write, in)
	}
	share := fmt.Sprintf("%.1f %%", 100*float64(read)/float64(in))
	if got := strings.Join(sum.Lines(), "\n"); !strings.Contains(got, "prompt cache: reads "+share+" of batch input tokens") {
		t.Errorf("Summary.Lines() = %q, want the cache read share %s", got, share)
	}
	perBatch := regexp.MustCompile(`batch \S+ ended: 5 results, 0 to resubmit; cache reads ([0-9.]+) % of input tokens`).FindAllStringSubmatch(progress.String(), -1)
	if len(perBatch) != 2 {
		t.Fatalf("progress has %d batch-ended lines with a cache read share, want 2:\n%s", len(perBatch), progress.String())
	}
	for _, m := range perBatch {
		// Each batch: one write, four reads of the same document.
		if m[1]+" %" != share {
			t.Errorf("a batch's cache read share = %s %%, want %s (the two batches are alike)", m[1], share)
		}
	}
}

// TestBatchNoCacheNoShare checks that a run without cache_control prints no cache
// share.
func TestBatchNoCacheNoShare(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	cfg := e.config(writeInput(t, e.dir, 10), 5)
	var progress testkit.Buffer
	cfg.Progress = &progress
	sum := run(t, cfg)
	if sum.Succeeded != 10 || sum.BatchInputTokens == 0 || sum.CacheReadTokens != 0 {
		t.Fatalf("Run() = %d succeeded, %d batch input, %d cache read tokens; want 10, > 0, 0", sum.Succeeded, sum.BatchInputTokens, sum.CacheReadTokens)
	}
	if got := strings.Join(sum.Lines(), "\n") + progress.String(); strings.Contains(got, "cache") {
		t.Errorf("output without cache_control mentions the cache:\n%s", got)
	}
}
