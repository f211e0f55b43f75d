package hybrid_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/hybrid"
	"github.com/clade-dev/clade/internal/testkit"
)

// cacheInput writes prefixes "a" and "b", 6 questions each, a prefix's lines
// together: each line's user turn is its document (about 5,000 tokens, over
// Haiku's minimum) in a cache_control block, then its question. Warming pays on
// 6 lines in the emulator's batch cache of groups of 4 (plan.WarmSaving).
func cacheInput(t *testing.T, e *env) {
	t.Helper()
	var lines []string
	for _, name := range []string{"a", "b"} {
		doc := strings.Repeat("document "+name+". ", 20000/(len(name)+11))
		for q := range 6 {
			lines = append(lines, fmt.Sprintf(`{"custom_id":"%s-q%d","params":{"model":"claude-haiku-4-5","max_tokens":32,"messages":[{"role":"user","content":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}},{"type":"text","text":"Question %d?"}]}]}}`, name, q, doc, q))
		}
	}
	e.input = filepath.Join(filepath.Dir(e.input), "cache.jsonl")
	if err := os.WriteFile(e.input, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cacheUse returns the custom_ids of the results that wrote the prompt cache and
// the number that read it, failing on a result that did not succeed.
func cacheUse(t *testing.T, path string) (writes []string, reads int) {
	t.Helper()
	for _, l := range testkit.ResultLines(t, path) {
		if l.Type != "succeeded" {
			t.Errorf("%s: %s, want succeeded", l.CustomID, l.Type)
		}
		u := l.Usage
		if u.CacheCreationInputTokens > 0 {
			writes = append(writes, l.CustomID)
		}
		if u.CacheReadInputTokens > 0 {
			reads++
		}
	}
	return writes, reads
}

// TestHybridCacheWarm: a hybrid run whose batches suffice, on two prefixes of 6
// lines. Off, the batch alone writes each prefix on several lines (the emulator's
// best-effort batch cache: groups of 4). With Batch.CacheWarm realtime, each
// prefix's first line goes through realtime first and is its one write; its 5
// other lines, in the batch, read it; the summary counts the 2 prefixes warmed.
func TestHybridCacheWarm(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{batch.CacheWarmOff, batch.CacheWarmRealtime} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := setup(t, 0, emulator.Config{Tier: "tier-4", BatchProcessingRate: 1000})
			cacheInput(t, e)
			var progress testkit.Buffer
			cfg := e.config(time.Now().Add(10*time.Minute), &progress)
			cfg.Batch.CacheWarm = mode
			sum, err := hybrid.Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, progress.String())
			}
			if sum.Succeeded != 12 || sum.Pending != 0 || sum.Spilled {
				t.Fatalf("summary %+v, want 12 succeeded by batches alone\n%s", sum, progress.String())
			}
			writes, reads := cacheUse(t, e.output)
			if mode == batch.CacheWarmOff {
				if len(writes) <= 2 || sum.WarmedPrefixes != 0 {
					t.Fatalf("off: %d lines wrote the cache (%v), %d prefixes warmed; want more than one a prefix (best effort), none warmed", len(writes), writes, sum.WarmedPrefixes)
				}
				return
			}
			slices.Sort(writes) // the two warm calls answer in either order
			if strings.Join(writes, ",") != "a-q0,b-q0" || reads != 10 {
				t.Errorf("lines that wrote the cache %v, %d read it; want a-q0 and b-q0 (the warm calls), 10 reads", writes, reads)
			}
			if sum.WarmedPrefixes != 2 || sum.WarmCostUSD <= 0 {
				t.Errorf("summary: %d prefixes warmed ($%v), want 2 (> $0)", sum.WarmedPrefixes, sum.WarmCostUSD)
			}
			if !strings.Contains(strings.Join(sum.Lines(), "\n"), "2 prompt-cache prefixes warmed") {
				t.Errorf("the summary does not say the prefixes warmed:\n%s", strings.Join(sum.Lines(), "\n"))
			}
			total, inBatch, _ := emulatorRequests(t, e.client)
			if total != 10 || inBatch != 10 {
				t.Errorf("the emulator's batches hold %d requests (%d succeeded), want 10: the warm lines are in none", total, inBatch)
			}
		})
	}
}

// TestHybridCacheWarmThenSpill: warm calls, then batches too slow for the
// deadline: the run spills, the dispatcher's realtime workers stop before the
// run's start (Batch.StopRealtime), and every line ends with one result, none
// paid twice (warm calls, realtime calls and the batches' successes add up to
// the input).
func TestHybridCacheWarmThenSpill(t *testing.T) {
	t.Parallel()
	// 1 request a second (0.5 of the emulator's clock at 2×): the batch of 10
	// would take 10 s; the deadline is 14 s away, so the spill is due about 8 s
	// in (the lead: 1.25 × realtime's 1.4 s, the slack's 3 s, 1 s of hand-over),
	// which leaves the warm calls room on a loaded -race run (with the spill
	// due 2 s in, they once were still queued when it came).
	e := setup(t, 0, emulator.Config{Tier: "tier-4", BatchProcessingRate: 0.5, ClockSpeed: 2})
	cacheInput(t, e)
	var progress testkit.Buffer
	deadline := time.Now().Add(14 * time.Second)
	cfg := e.config(deadline, &progress)
	cfg.Slack = 3 * time.Second
	cfg.Batch.CacheWarm = batch.CacheWarmRealtime
	sum, err := hybrid.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	if sum.Succeeded != 12 || sum.Pending != 0 || !sum.Spilled {
		t.Fatalf("summary %+v, want 12 succeeded and a spill\n%s", sum, progress.String())
	}
	if got := testkit.ReadResults(t, e.output); len(got) != 12 { // ReadResults fails on a custom_id twice
		t.Errorf("%d results, want 12", len(got))
	}
	if sum.WarmedPrefixes != 2 {
		t.Errorf("%d prefixes warmed before the spill, want 2\n%s", sum.WarmedPrefixes, progress.String())
	}
	_, batchDone, _ := emulatorRequests(t, e.client)
	if calls := sum.WarmedPrefixes + sum.RealtimeSent + batchDone; calls != 12 {
		t.Errorf("%d warm calls, %d realtime calls and %d batch results: %d, want 12 (none paid twice)", sum.WarmedPrefixes, sum.RealtimeSent, batchDone, calls)
	}
	out := progress.String()
	if w, s := strings.Index(out, "prompt cache: warming"), strings.Index(out, "spill to realtime"); w < 0 || s < w {
		t.Errorf("progress does not show the warm calls before the spill:\n%s", out)
	}
}
