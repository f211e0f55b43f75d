package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

const testKey = "sk-ant-runner-test-0123456789abcdef"

// writeInput writes n good request lines (custom_ids req-00000…, the default
// testkit.Input) plus the given extra lines to dir/input.jsonl.
func writeInput(t *testing.T, dir string, n int, extra ...string) string {
	t.Helper()
	return testkit.Input{}.Write(t, filepath.Join(dir, "input.jsonl"), n, extra...)
}

func setup(t *testing.T, cfg emulator.Config) (*upstream.Client, *jobs.Store, string) {
	t.Helper()
	em := emulator.StartTB(t, cfg)
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(testKey)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := jobs.Open(context.Background(), filepath.Join(dir, "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return client, st, dir
}

func TestRunEndToEndWithBadLines(t *testing.T) {
	t.Parallel()
	client, st, dir := setup(t, emulator.Config{Tier: "tier-4"})
	input := writeInput(t, dir, 300,
		`{"custom_id":"bad id!","params":{"model":"claude-haiku-4-5","max_tokens":5,"messages":[]}}`,
		`{"custom_id":"req-00001","params":{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"dup"}]}}`,
		`not json`,
		`{"custom_id":"nomax","params":{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"x"}]}}`,
		`{"custom_id":"unknown-model","params":{"model":"claude-nope","max_tokens":5,"messages":[{"role":"user","content":"x"}]}}`,
	)
	out := filepath.Join(dir, "results.jsonl")
	var progress bytes.Buffer
	sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Output: out, Tier: "tier-4", Progress: &progress}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := testkit.ResultTypes(t, out)
	if len(got) != 301 {
		t.Fatalf("results for %d custom_ids, want 301 (300 good + the unknown model)", len(got))
	}
	for i := 0; i < 300; i++ {
		if typ := got[fmt.Sprintf("req-%05d", i)]; typ != "succeeded" {
			t.Errorf("req-%05d: %q, want succeeded", i, typ)
		}
	}
	if got["unknown-model"] != "errored" {
		t.Errorf("unknown-model: %q, want errored (the API's 404 is final)", got["unknown-model"])
	}
	if sum.Problems != 4 || sum.Succeeded != 300 || sum.Errored != 1 || sum.Pending != 0 {
		t.Errorf("summary = %+v, want 4 problems, 300 succeeded, 1 errored, 0 pending", sum)
	}
	for _, want := range []string{":301:", ":302:", ":303:", ":304:"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress output lacks the bad line %s:\n%s", want, progress.String())
		}
	}
	if sum.CostUSD <= 0 || sum.BatchCostUSD != sum.CostUSD*0.5 {
		t.Errorf("cost %v, batch %v: want positive and half", sum.CostUSD, sum.BatchCostUSD)
	}

	// Running it again sends nothing and rewrites the same results.
	sum2, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Output: out, Tier: "tier-4"}})
	if err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if sum2.Sent != 0 {
		t.Errorf("resumed finished run sent %d requests, want 0", sum2.Sent)
	}
	if again := testkit.ResultTypes(t, out); len(again) != 301 {
		t.Errorf("after resume %d results, want 301", len(again))
	}
}

func TestRunStrictAbortsBeforeAnyRequest(t *testing.T) {
	t.Parallel()
	client, st, dir := setup(t, emulator.Config{Tier: "tier-4"})
	input := writeInput(t, dir, 10, `{"custom_id":"x"}`)
	sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Strict: true}})
	if err == nil || !strings.Contains(err.Error(), "bad lines") {
		t.Fatalf("Run strict: %v, want ErrStrict", err)
	}
	if sum == nil || sum.Sent != 0 {
		t.Errorf("strict run sent requests: %+v", sum)
	}
}

func TestRunSpendCapStopsAndResumes(t *testing.T) {
	t.Parallel()
	faults, err := emulator.ParseFaults("spend_cap")
	if err != nil {
		t.Fatal(err)
	}
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", Faults: faults})
	client, _ := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(testKey)})
	dir := t.TempDir()
	st, err := jobs.Open(context.Background(), filepath.Join(dir, "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	input := writeInput(t, dir, 50)
	out := filepath.Join(dir, "results.jsonl")
	sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Output: out}})
	if err == nil || !strings.Contains(err.Error(), "enforced_spend_limit_reached") {
		t.Fatalf("Run under a spend cap: %v, want ErrStopped naming the spend cap", err)
	}
	if sum.Pending != 50 || sum.Errored != 0 {
		t.Errorf("after the stop: %+v, want all 50 pending, none errored", sum)
	}
	// The cap lifts (next month): the same command finishes the run.
	if err := em.Server.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	sum, err = runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Output: out}})
	if err != nil {
		t.Fatalf("resumed Run: %v", err)
	}
	if got := testkit.ResultTypes(t, out); len(got) != 50 || sum.Succeeded != 50 {
		t.Errorf("after resume %d results, summary %+v; want 50 succeeded", len(got), sum)
	}
}

func TestRunModelOverrideAndCountTokens(t *testing.T) {
	t.Parallel()
	client, st, dir := setup(t, emulator.Config{Tier: "tier-4"})
	input := writeInput(t, dir, 20)
	out := filepath.Join(dir, "results.jsonl")
	sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Output: out}, Routing: &runner.Routing{Override: "sonnet"}, CountTokens: true})
	if err != nil || sum.Succeeded != 20 {
		t.Fatalf("Run: %v, %+v", err, sum)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"model":"claude-sonnet-5"`); n != 20 {
		t.Errorf("%d results answered by claude-sonnet-5, want all 20 (--model sonnet)", n)
	}
}
