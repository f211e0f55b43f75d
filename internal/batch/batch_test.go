package batch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

const testKey = "sk-ant-batch-test-0123456789abcdef"

// writeInput writes n good request lines (custom_ids req-00000…, the default
// testkit.Input) plus the given extra lines to dir/input.jsonl.
func writeInput(t *testing.T, dir string, n int, extra ...string) string {
	t.Helper()
	return testkit.Input{}.Write(t, filepath.Join(dir, "input.jsonl"), n, extra...)
}

// templateDB is an empty, migrated store: copying it saves each test River's
// migrations (about 2 s under -race).
var templateDB []byte

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "clade-batch-test")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "template.db")
		st, err := jobs.Open(context.Background(), path)
		if err != nil {
			panic(err)
		}
		if err := st.PrepareBatches(context.Background()); err != nil {
			panic(err)
		}
		if err := st.Close(); err != nil {
			panic(err)
		}
		if templateDB, err = os.ReadFile(path); err != nil {
			panic(err)
		}
		return m.Run()
	}())
}

type env struct {
	em     *emulator.Running
	client *upstream.Client
	store  *jobs.Store
	dir    string
}

func setup(t *testing.T, cfg emulator.Config) *env {
	t.Helper()
	if cfg.Tier == "" {
		cfg.Tier = "tier-4"
	}
	em := emulator.StartTB(t, cfg)
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(testKey)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "run.db")
	if err := os.WriteFile(db, templateDB, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := jobs.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &env{em: em, client: client, store: st, dir: dir}
}

// config is a batch.Config on a fast poll.
func (e *env) config(input string, maxRequests int) batch.Config {
	return batch.Config{Spec: lifecycle.Spec{Store: e.store, Client: e.client, Input: input, Output: filepath.Join(e.dir, "results.jsonl"),
		Tier: "tier-4"}, MaxRequests: maxRequests, RPM: 3000,
		PollMin: 5 * time.Millisecond, PollMax: 40 * time.Millisecond,
	}
}

// apiBatches lists every batch the emulator holds.
func (e *env) apiBatches(t *testing.T) []upstream.Batch {
	t.Helper()
	var out []upstream.Batch
	after := ""
	for {
		page, err := e.client.ListBatches(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Data...)
		if !page.HasMore {
			return out
		}
		after = page.LastID
	}
}

func requestsIn(bs []upstream.Batch) int64 {
	var n int64
	for _, b := range bs {
		c := b.RequestCounts
		n += c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
	}
	return n
}

func run(t *testing.T, cfg batch.Config) *batch.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := batch.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run() error = %v", err)
	}
	return sum
}

func wantAll(t *testing.T, path string, n int, typ string) map[string]testkit.Result {
	t.Helper()
	res := testkit.ReadResults(t, path)
	if len(res) != n {
		t.Fatalf("results file has %d custom_ids, want %d", len(res), n)
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("req-%05d", i)
		if got := res[id].Type; got != typ {
			t.Errorf("result of %s = %q, want %q", id, got, typ)
		}
	}
	return res
}

func TestRunSplitsIntoBatches(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	const n = 200
	cfg := e.config(writeInput(t, e.dir, n), 70)
	sum := run(t, cfg)
	if sum.Succeeded != n || sum.Pending != 0 || sum.Errored != 0 {
		t.Errorf("Run() = %d succeeded, %d errored, %d pending; want %d, 0, 0", sum.Succeeded, sum.Errored, sum.Pending, n)
	}
	if sum.CostUSD <= 0 || sum.OutputTokens <= 0 {
		t.Errorf("Run() cost = $%v, output tokens %d; want both > 0", sum.CostUSD, sum.OutputTokens)
	}
	wantAll(t, cfg.Output, n, "succeeded")
	bs := e.apiBatches(t)
	if len(bs) != 3 || requestsIn(bs) != n {
		t.Errorf("emulator holds %d batches of %d requests in all, want 3 of %d", len(bs), requestsIn(bs), n)
	}

	// Running again finds nothing to do and creates no batch.
	sum = run(t, cfg)
	if sum.Batches != 0 || sum.Succeeded != n {
		t.Errorf("second Run() = %d batches, %d succeeded; want 0, %d", sum.Batches, sum.Succeeded, n)
	}
	wantAll(t, cfg.Output, n, "succeeded")
}

func TestRunSplitsByBytes(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	const n = 40
	cfg := e.config(writeInput(t, e.dir, n), 0)
	// One line's item is ~140 bytes: at most ~7 requests per batch.
	cfg.MaxBytes = 1000
	run(t, cfg)
	wantAll(t, cfg.Output, n, "succeeded")
	bs := e.apiBatches(t)
	if len(bs) < 6 || requestsIn(bs) != n {
		t.Errorf("emulator holds %d batches of %d requests, want ≥ 6 of %d", len(bs), requestsIn(bs), n)
	}
}

func TestInvalidParamsNotResubmitted(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	const n = 100
	var bad []string
	for i := 0; i < 5; i++ {
		bad = append(bad, fmt.Sprintf(`{"custom_id":"bad-%d","params":{"model":"claude-haiku-4-5","max_tokens":1000000,"messages":[{"role":"user","content":"x"}]}}`, i))
	}
	cfg := e.config(writeInput(t, e.dir, n, bad...), 60)
	sum := run(t, cfg)
	if sum.Succeeded != n || sum.Errored != 5 || sum.Resubmitted != 0 {
		t.Errorf("Run() = %d succeeded, %d errored, %d resubmitted; want %d, 5, 0", sum.Succeeded, sum.Errored, sum.Resubmitted, n)
	}
	res := testkit.ReadResults(t, cfg.Output)
	for i := 0; i < 5; i++ {
		if got := res[fmt.Sprintf("bad-%d", i)]; got.Type != "errored" || got.ErrorType != "invalid_request_error" {
			t.Errorf("result of bad-%d = %s %s, want errored invalid_request_error", i, got.Type, got.ErrorType)
		}
	}
	if bs := e.apiBatches(t); len(bs) != 2 || requestsIn(bs) != n+5 {
		t.Errorf("emulator holds %d batches of %d requests, want 2 of %d", len(bs), requestsIn(bs), n+5)
	}
}

func TestExpiredRequestsResubmitted(t *testing.T) {
	t.Parallel()
	// Each batch expires with part of its requests unprocessed, even one that has
	// the queue to itself (expiringEnv).
	e, _ := expiringEnv(t)
	const n = 120
	cfg := e.config(writeInput(t, e.dir, n), 50)
	cfg.MaxRounds = 40
	sum := run(t, cfg)
	if sum.Resubmitted == 0 {
		t.Errorf("Run() resubmitted 0 requests, want the expired ones")
	}
	if sum.Succeeded != n || sum.Expired != 0 {
		t.Errorf("Run() = %d succeeded, %d expired; want %d, 0", sum.Succeeded, sum.Expired, n)
	}
	wantAll(t, cfg.Output, n, "succeeded")
	// Some request went into two batches. (Counting batches proves nothing: on a
	// slow machine each batch may expire before the next is created, and take the
	// requests sent back with fresh ones.)
	if bs := e.apiBatches(t); requestsIn(bs) <= n {
		t.Errorf("the emulator's batches hold %d requests in all, want more than %d (resubmissions)", requestsIn(bs), n)
	}
}

func TestCanceledRequestsResubmitted(t *testing.T) {
	t.Parallel()
	// 0.1 request per emulated second (100 a real second): the first batch takes
	// 300 ms to process and is canceled at once.
	e := setup(t, emulator.Config{ClockSpeed: 1000, BatchProcessingRate: 0.1})
	const n = 60
	cfg := e.config(writeInput(t, e.dir, n), 30)
	calls := 0
	cfg.Test.AfterCreate = func(b *upstream.Batch) error {
		if calls++; calls == 1 {
			_, err := e.client.CancelBatch(context.Background(), b.ID)
			return err
		}
		return nil
	}
	sum := run(t, cfg)
	if sum.Resubmitted == 0 || sum.Succeeded != n || sum.Canceled != 0 {
		t.Errorf("Run() = %d resubmitted, %d succeeded, %d canceled; want > 0, %d, 0", sum.Resubmitted, sum.Succeeded, sum.Canceled, n)
	}
	wantAll(t, cfg.Output, n, "succeeded")
}

func TestResumeAfterCrashBeforeRecordingID(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	const n = 150
	cfg := e.config(writeInput(t, e.dir, n), 50)
	crash := errors.New("crash after create")
	calls := 0
	cfg.Test.AfterCreate = func(*upstream.Batch) error {
		if calls++; calls == 2 {
			return crash
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := batch.Run(ctx, cfg); !errors.Is(err, crash) {
		t.Fatalf("Run() with a crash on the second create: error = %v, want %v", err, crash)
	}
	if bs := e.apiBatches(t); len(bs) != 2 {
		t.Fatalf("after the crash the emulator holds %d batches, want 2", len(bs))
	}

	cfg.Test.AfterCreate = nil
	sum := run(t, cfg)
	if sum.Succeeded != n {
		t.Errorf("resumed Run() = %d succeeded, want %d", sum.Succeeded, n)
	}
	wantAll(t, cfg.Output, n, "succeeded")
	// The batch created before the crash was adopted, not sent again.
	if bs := e.apiBatches(t); len(bs) != 3 || requestsIn(bs) != n {
		t.Errorf("emulator holds %d batches of %d requests, want 3 of %d", len(bs), requestsIn(bs), n)
	}
}

func TestResumeDropsIntentThatWasNotCreated(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	const n = 50
	cfg := e.config(writeInput(t, e.dir, n), 0)
	ctx := context.Background()
	// A process recorded an intent and died before its create call.
	run, _, err := e.store.Import(ctx, jobs.ImportOptions{Path: cfg.Input})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.PrepareBatches(ctx); err != nil {
		t.Fatal(err)
	}
	reqs, err := e.store.BatchPending(ctx, run.ID, jobs.BatchCursor{}, 20)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range reqs {
		ids = append(ids, r.ID)
	}
	if _, err := e.store.RecordBatchIntent(ctx, run.ID, ids, 1, "x"); err != nil {
		t.Fatal(err)
	}
	sum, err := batch.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != n {
		t.Errorf("Run() = %d succeeded, want %d", sum.Succeeded, n)
	}
	wantAll(t, cfg.Output, n, "succeeded")
	if bs := e.apiBatches(t); len(bs) != 1 || requestsIn(bs) != n {
		t.Errorf("emulator holds %d batches of %d requests, want 1 of %d", len(bs), requestsIn(bs), n)
	}
	left, err := e.store.Batches(ctx, run.ID, jobs.BatchIntent)
	if err != nil || len(left) != 0 {
		t.Errorf("Batches(intent) = %v, %v; want none", left, err)
	}
}

// TestBatchCostExact: the run's cost is exactly each succeeded line's usage at the
// catalog's batch prices, for the model that answered, as the test reads them from
// the results file; and the token totals are theirs.
func TestBatchCostExact(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	const n = 60
	cfg := e.config(writeInput(t, e.dir, n), 25)
	cfg.Routing = &runner.Routing{Rules: []runner.Rule{{CustomID: "req-0001*", Model: "sonnet"}}}
	sum := run(t, cfg)
	cat := catalog.Default()
	var want float64
	var in, out int64
	models := map[string]int{}
	for _, l := range testkit.ResultLines(t, cfg.Output) {
		var v struct {
			Result struct {
				Message struct {
					Model string         `json:"model"`
					Usage upstream.Usage `json:"usage"`
				} `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(l.Line), &v); err != nil {
			t.Fatal(err)
		}
		m, err := cat.Resolve(v.Result.Message.Model)
		if err != nil {
			t.Fatal(err)
		}
		models[m.Class]++
		u := v.Result.Message.Usage
		want += cat.Cost(m, catalog.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
			CacheWrite5mTokens: u.CacheCreation.Ephemeral5m, CacheWrite1hTokens: u.CacheCreation.Ephemeral1h,
			CacheReadTokens: u.CacheReadInputTokens}, true)
		in += u.InputTokens + u.CacheCreation.Ephemeral5m + u.CacheCreation.Ephemeral1h + u.CacheReadInputTokens
		out += u.OutputTokens
	}
	if len(models) != 2 {
		t.Errorf("answers by model class %v, want two classes (the routing rule sends req-0001* to sonnet)", models)
	}
	if math.Abs(sum.CostUSD-want) > 1e-9 || sum.InputTokens != in || sum.OutputTokens != out || want == 0 {
		t.Errorf("Run() cost $%.9f, %d input, %d output tokens; the result lines say $%.9f, %d, %d", sum.CostUSD, sum.InputTokens, sum.OutputTokens, want, in, out)
	}
}
