package hybrid_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/hybrid"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

const testKey = "sk-ant-hybrid-test-0123456789abcdef"

type env struct {
	em     *emulator.Running
	client *upstream.Client
	store  *jobs.Store
	input  string
	output string
}

func setup(t *testing.T, n int, em emulator.Config) *env {
	t.Helper()
	em.APIKeys = []string{testKey}
	e := &env{em: emulator.StartTB(t, em)}
	var err error
	e.client, err = upstream.New(upstream.Config{BaseURL: e.em.URL, APIKey: upstream.NewSecret(testKey)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.input = testkit.Input{MaxTokens: 32}.Write(t, filepath.Join(dir, "input.jsonl"), n)
	e.output = filepath.Join(dir, "out.jsonl")
	e.store, err = jobs.Open(context.Background(), filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	return e
}

func (e *env) config(deadline time.Time, progress *testkit.Buffer) hybrid.Config {
	return hybrid.Config{Spec: lifecycle.Spec{Store: e.store, Client: e.client, Input: e.input, Output: e.output,
		Tier: "tier-4",

		Progress: progress}, Deadline: deadline, Slack: time.Second, Tick: 100 * time.Millisecond,
		Realtime: runner.Config{MaxConcurrency: 64},
		Batch:    batch.Config{MaxRequests: 100, PollMin: 50 * time.Millisecond, PollMax: 200 * time.Millisecond},
	}
}

// emulatorRequests sums the requests the emulator's batches hold, by result.
func emulatorRequests(t *testing.T, c *upstream.Client) (total, succeeded, canceled int64) {
	t.Helper()
	page, err := c.ListBatches(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range page.Data {
		rc := b.RequestCounts
		total += rc.Processing + rc.Succeeded + rc.Errored + rc.Canceled + rc.Expired
		succeeded += rc.Succeeded
		canceled += rc.Canceled
	}
	return total, succeeded, canceled
}

// TestHybridSpillsToRealtime: batches alone would take 25 s (4 requests per
// second); the deadline is 12 s away. The run sends everything to batches, spills
// to realtime when the remaining realtime time (with its safety margin) reaches
// the deadline, cancels the batches whose work realtime did, and finishes in
// time with one result per custom_id.
func TestHybridSpillsToRealtime(t *testing.T) {
	const n = 100
	// Clock at 2×: a canceled batch ends 0.5 s (real) after the cancel.
	e := setup(t, n, emulator.Config{Tier: "tier-4", BatchProcessingRate: 2, ClockSpeed: 2})
	var progress testkit.Buffer
	deadline := time.Now().Add(12 * time.Second)
	cfg := e.config(deadline, &progress)
	cfg.Batch.MaxRequests = 34
	cfg.Slack = 3 * time.Second            // room for a loaded machine (-race, 2 cores)
	cfg.Realtime.Spec.Progress = &progress // the live display, as clade run gives it
	sum, err := hybrid.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	if sum.Pending != 0 || sum.Succeeded != n {
		t.Fatalf("summary %+v, want %d succeeded and none pending\n%s", sum, n, progress.String())
	}
	if !sum.Spilled || sum.RealtimeSent == 0 {
		t.Errorf("the run did not spill to realtime (spilled %v, %d realtime calls)\n%s", sum.Spilled, sum.RealtimeSent, progress.String())
	}
	if sum.Late > 0 || sum.Finished.After(deadline) {
		t.Errorf("finished %s after the deadline", sum.Finished.Sub(deadline))
	}
	if sum.Batches != 3 {
		t.Errorf("%d batches created, want 3 (100 requests, 34 per batch)", sum.Batches)
	}
	got := testkit.ResultTypes(t, e.output)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("req-%05d", i)
		if got[id] != "succeeded" {
			t.Errorf("%s: result %q, want succeeded", id, got[id])
		}
	}
	total, batchDone, canceled := emulatorRequests(t, e.client)
	if total != n {
		t.Errorf("the emulator's batches hold %d requests, want %d (each request in one batch)", total, n)
	}
	if batchDone == 0 || canceled == 0 {
		t.Errorf("batches did %d requests and %d were canceled; want both > 0 (batches did the front, realtime the rest)", batchDone, canceled)
	}
	// No request was paid twice: realtime took over each batch after cancelling
	// it and reading what it had done, so its calls and the batches' successes add
	// up to the input (the emulator injects no faults here: one call per request).
	if sum.RealtimeSent+batchDone != n {
		t.Errorf("realtime sent %d calls and batches did %d requests, want %d in all (none paid twice)", sum.RealtimeSent, batchDone, n)
	}
	if !strings.Contains(progress.String(), "spill to realtime") {
		t.Errorf("progress does not announce the spill:\n%s", progress.String())
	}
	// The live display counts the whole run, the batches' results too: it ends
	// at 100 %, not at realtime's share.
	if !strings.Contains(progress.String(), "100/100 (100.0%)") {
		t.Errorf("progress never reached 100/100 (100.0%%):\n%s", progress.String())
	}
	t.Logf("batches did %d, realtime %d calls, %d canceled; finished %s before the deadline",
		batchDone, sum.RealtimeSent, canceled, deadline.Sub(sum.Finished).Round(time.Millisecond))
}

// TestHybridBatchesSuffice: batches finish long before the deadline, so no
// request goes to realtime and the cost is the batch price.
func TestHybridBatchesSuffice(t *testing.T) {
	const n = 200
	e := setup(t, n, emulator.Config{Tier: "tier-4", BatchProcessingRate: 1000})
	var progress testkit.Buffer
	deadline := time.Now().Add(10 * time.Minute)
	sum, err := hybrid.Run(context.Background(), e.config(deadline, &progress))
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	if sum.Pending != 0 || sum.Succeeded != n {
		t.Fatalf("summary %+v, want %d succeeded\n%s", sum, n, progress.String())
	}
	if sum.Spilled || sum.RealtimeSent != 0 {
		t.Errorf("spilled %v with %d realtime calls; batches alone had 10 minutes for 200 requests\n%s", sum.Spilled, sum.RealtimeSent, progress.String())
	}
	if got := testkit.ResultTypes(t, e.output); len(got) != n {
		t.Errorf("output has %d results, want %d", len(got), n)
	}
	// Every request priced at batch rates: the stored cost is half of the same
	// usage at realtime prices.
	cat := catalog.Default()
	m, err := cat.Resolve("claude-haiku-4-5")
	if err != nil {
		t.Fatal(err)
	}
	rt := cat.Cost(m, catalog.Usage{InputTokens: sum.InputTokens, OutputTokens: sum.OutputTokens}, false)
	if diff := sum.CostUSD - rt*cat.Pricing.Batch; diff > 1e-9 || diff < -1e-9 {
		t.Errorf("cost $%.6f, want the batch price $%.6f (realtime $%.6f × %v)", sum.CostUSD, rt*cat.Pricing.Batch, rt, cat.Pricing.Batch)
	}
}

// spillWatcher is a progress writer that cancels a run once it has spilled.
type spillWatcher struct {
	testkit.Buffer
	cancel context.CancelFunc
}

func (s *spillWatcher) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "spill to realtime") {
		s.cancel()
	}
	return s.Buffer.Write(p)
}

// TestHybridResumesAfterInterrupt stops a run right after it spilled to realtime
// (Ctrl-C), then runs it again: the second run sees that realtime owns the rest,
// finishes it, and every custom_id has exactly one result.
func TestHybridResumesAfterInterrupt(t *testing.T) {
	const n = 90
	e := setup(t, n, emulator.Config{Tier: "tier-4", BatchProcessingRate: 2, ClockSpeed: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &spillWatcher{cancel: cancel}
	cfg := e.config(time.Now().Add(8*time.Second), nil)
	cfg.Progress = w
	cfg.Batch.MaxRequests = 30
	first, err := hybrid.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, w.String())
	}
	if !first.Spilled {
		t.Fatalf("the first run did not spill:\n%s", w.String())
	}
	var progress testkit.Buffer
	cfg = e.config(time.Now().Add(20*time.Second), &progress)
	cfg.Batch.MaxRequests = 30
	second, err := hybrid.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, progress.String())
	}
	if second.Pending != 0 || second.Succeeded != n {
		t.Fatalf("after resuming: %+v\n%s", second, progress.String())
	}
	if !strings.Contains(progress.String(), "resuming a run that already moved to realtime") {
		t.Errorf("the second run did not resume in realtime:\n%s", progress.String())
	}
	got := testkit.ResultTypes(t, e.output)
	if len(got) != n {
		t.Errorf("output has %d custom_ids, want %d", len(got), n)
	}
	if second.Batches != 0 {
		t.Errorf("the resumed run created %d batches; realtime owns the rest", second.Batches)
	}
}

// TestResumeKeepsDurationDeadline: `clade run --deadline 3h` run again later keeps
// the deadline of its first start; another duration, or a clock time, replaces it.
func TestResumeKeepsDurationDeadline(t *testing.T) {
	t.Parallel()
	e := setup(t, 5, emulator.Config{Tier: "tier-4", ClockSpeed: 1000})
	first := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	runWith := func(spec string, deadline time.Time) (*hybrid.Summary, string) {
		t.Helper()
		var progress testkit.Buffer
		cfg := e.config(deadline, &progress)
		cfg.DeadlineSpec = spec
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sum, err := hybrid.Run(ctx, cfg)
		if err != nil {
			t.Fatalf("Run(--deadline %q) error = %v", spec, err)
		}
		return sum, progress.String()
	}
	if sum, _ := runWith("1h", first); !sum.Deadline.Equal(first) || sum.Pending != 0 {
		t.Fatalf("first run: deadline %v, %d pending; want %v, 0", sum.Deadline, sum.Pending, first)
	}
	// The same command an hour later: the deadline stays where it was, and says so.
	sum, progress := runWith("1h", first.Add(time.Hour))
	if !sum.Deadline.Equal(first) || !strings.Contains(progress, "kept from this run's first start (--deadline 1h)") {
		t.Errorf("resumed with the same --deadline: deadline %v, want %v kept and said so; progress:\n%s", sum.Deadline, first, progress)
	}
	// Another duration replaces it, and is kept in turn.
	second := first.Add(2 * time.Hour)
	if sum, _ := runWith("3h", second); !sum.Deadline.Equal(second) {
		t.Errorf("resumed with --deadline 3h: deadline %v, want %v", sum.Deadline, second)
	}
	if sum, _ := runWith("3h", second.Add(time.Minute)); !sum.Deadline.Equal(second) {
		t.Errorf("resumed again with --deadline 3h: deadline %v, want %v kept", sum.Deadline, second)
	}
	// A clock time is the same instant whenever given: it is used as is.
	third := first.Add(30 * time.Minute)
	if sum, _ := runWith("", third); !sum.Deadline.Equal(third) {
		t.Errorf("resumed with a clock time: deadline %v, want %v", sum.Deadline, third)
	}
}
