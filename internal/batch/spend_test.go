package batch_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
)

// emulatorHolds sums the requests in the emulator's batches.
func emulatorHolds(t *testing.T, e *env) (requests int64, sizes []int64) {
	t.Helper()
	page, err := e.client.ListBatches(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range page.Data {
		c := b.RequestCounts
		n := c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
		requests += n
		sizes = append(sizes, n)
	}
	return requests, sizes
}

// TestBudgetStopsBatches: with a budget for about half the input at its worst
// case, batches stop being created before the worst case could exceed it; what
// was sent is read, the rest stays pending, and the summary says why.
func TestBudgetStopsBatches(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{})
	input := writeInput(t, e.dir, 40)
	cat := catalog.Default()
	m, err := cat.Resolve("claude-haiku-4-5")
	if err != nil {
		t.Fatal(err)
	}
	// Worst case of one request: its estimated input (a few tokens) and 64 output
	// tokens at batch prices; the budget covers 20 output-only worst cases.
	perRequest := cat.Cost(m, catalog.Usage{OutputTokens: 64}, true)
	cfg := e.config(input, 10)
	cfg.Budget = 20 * perRequest
	sum, err := batch.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sum.Stopped == "" || !strings.Contains(sum.Stopped, "budget") {
		t.Errorf("Stopped = %q, want the budget named", sum.Stopped)
	}
	sent, _ := emulatorHolds(t, e)
	if sent == 0 || sent >= 40 || sum.Pending != 40-sent || sum.Succeeded != sent {
		t.Errorf("sent %d, succeeded %d, pending %d; want some but not all 40 sent, the rest pending", sent, sum.Succeeded, sum.Pending)
	}
	if sum.CostUSD > cfg.Budget {
		t.Errorf("cost $%.6f exceeds the budget $%.6f", sum.CostUSD, cfg.Budget)
	}
}

// TestRoutingInBatches: --model sends every request with the routed model, and
// the cost is priced by the model that answered.
func TestRoutingInBatches(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{})
	input := writeInput(t, e.dir, 12)
	cfg := e.config(input, 100)
	cfg.Routing = &runner.Routing{Override: "sonnet"}
	sum, err := batch.Run(context.Background(), cfg)
	if err != nil || sum.Succeeded != 12 {
		t.Fatalf("Run: %+v, %v", sum, err)
	}
	for _, l := range testkit.ResultLines(t, filepath.Join(e.dir, "results.jsonl")) {
		if !strings.HasPrefix(l.Model, "claude-sonnet") {
			t.Fatalf("answered by %q, want the routed sonnet model", l.Model)
		}
	}
	cat := catalog.Default()
	m, _ := cat.Resolve("sonnet")
	want := cat.Cost(m, catalog.Usage{InputTokens: sum.InputTokens, OutputTokens: sum.OutputTokens}, true)
	if d := sum.CostUSD - want; d > 1e-9 || d < -1e-9 {
		t.Errorf("cost $%.6f, want $%.6f (sonnet at batch prices)", sum.CostUSD, want)
	}
}

// TestQueueCountsOtherBatches: the processing queue is the organisation's. With
// another client's batch of 30 requests in progress and a queue of 50, the first
// batch takes 20, not 50.
func TestQueueCountsOtherBatches(t *testing.T) {
	t.Parallel()
	// The batch clock stands still until the test moves it, so the other client's
	// batch is still in the queue however long this run takes to start.
	e := setup(t, emulator.Config{BatchProcessingRate: 20, ClockSpeed: 1e-9})
	other := strings.NewReader(otherBody(30))
	if _, err := e.client.CreateBatch(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	input := writeInput(t, e.dir, 50)
	cfg := e.config(input, 100)
	cfg.QueueLimit = 50
	type result struct {
		sum *batch.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := batch.Run(context.Background(), cfg)
		done <- result{sum, err}
	}()
	// Once ours is created, the clock runs: 10 s of batch time (200 requests) a tick.
	var res result
	started := false
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case res = <-done:
			break wait
		case <-tick.C:
			if !started {
				_, sizes := emulatorHolds(t, e)
				started = len(sizes) >= 2
			}
			if started {
				e.em.Server.Clock().Advance(10 * time.Second)
			}
		}
	}
	if res.err != nil || res.sum.Succeeded != 50 {
		t.Fatalf("Run: %+v, %v", res.sum, res.err)
	}
	_, sizes := emulatorHolds(t, e)
	// Newest first: ours, then the other client's 30.
	if len(sizes) < 3 || sizes[len(sizes)-1] != 30 || sizes[len(sizes)-2] != 20 {
		t.Errorf("batch sizes (newest first) %v; want our first batch to take 20 (50 less the other's 30)", sizes)
	}
}

func otherBody(n int) string {
	var b strings.Builder
	b.WriteString(`{"requests":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"custom_id":"other-` + strings.Repeat("x", i+1) + `","params":{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

// TestOrderedOutput: with Ordered the results file is in input order at the end.
func TestOrderedOutput(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{})
	input := writeInput(t, e.dir, 30)
	cfg := e.config(input, 7) // several batches, read in any order
	cfg.Ordered = true
	if sum, err := batch.Run(context.Background(), cfg); err != nil || sum.Succeeded != 30 {
		t.Fatalf("Run: %+v, %v", sum, err)
	}
	var ids []string
	for _, l := range testkit.ResultLines(t, filepath.Join(e.dir, "results.jsonl")) {
		ids = append(ids, l.CustomID)
	}
	if len(ids) != 30 || !slices.IsSorted(ids) {
		t.Errorf("output custom_ids %v, want the 30 in input order", ids)
	}
}
