package bench_test

import (
	"context"
	"testing"

	"github.com/clade-dev/clade/internal/bench"
)

// TestMeasureCacheSmall is the benchmark at CI size (8 documents × 6 questions of
// 2,000 tokens, latency at 1: 800 ms to first token): with scheduling each document is written once and
// read by its other questions; today's order at full concurrency writes it with
// many of its questions, so the scheduled input costs several times less. How
// many naive requests arrive before a document's first write is readable depends
// on the machine's load: with 160 ms to first token (latency 0.2) a loaded CI
// machine spread them enough for the cost ratio to fall from 4 to 1.56; with
// 800 ms all 48 write. The naive side is held to at least twice the writes and
// the cost; the scheduled side's counts are exact.
func TestMeasureCacheSmall(t *testing.T) {
	t.Parallel()
	cfg := bench.CacheConfig{Documents: 8, Questions: 6, DocTokens: 2000, LatencyScale: 1, Dir: t.TempDir()}
	sched, err := bench.MeasureCache(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ScheduleOff = true
	naive, err := bench.MeasureCache(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*bench.CacheResult{sched, naive} {
		if r.Succeeded != 48 {
			t.Fatalf("ScheduleOff %v: %d succeeded, want 48", r.Config.ScheduleOff, r.Succeeded)
		}
	}
	t.Logf("cache write tokens: naive %d, scheduled %d; input cost naive $%.4f, scheduled $%.4f", naive.CacheWrite, sched.CacheWrite, naive.InputCostUSD, sched.InputCostUSD)
	perDoc := sched.CacheWrite / 8
	if sched.Warmed != 8 || sched.CacheWrite != 8*perDoc || sched.CacheRead != 5*sched.CacheWrite {
		t.Errorf("scheduled: warmed %d, written %d, read %d; want 8 warm-ups, each document written once and read 5 times", sched.Warmed, sched.CacheWrite, sched.CacheRead)
	}
	if naive.CacheWrite < 2*sched.CacheWrite {
		t.Errorf("naive wrote %d cache tokens, scheduled %d: want the naive order to write each document several times (the comparison means nothing otherwise)", naive.CacheWrite, sched.CacheWrite)
	}
	if ratio := naive.InputCostUSD / sched.InputCostUSD; ratio < 2 {
		t.Errorf("input cost naive $%.4f / scheduled $%.4f = %.2f, want at least 2", naive.InputCostUSD, sched.InputCostUSD, ratio)
	}
}
