package runner_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestRunBudgetStopsAndResumes: with a budget for about a quarter of the input at
// its worst case and 16 requests in flight at once, the run stops naming the
// budget before its cost exceeds it, with the rest pending; run again with a
// budget large enough, it finishes, counting what the first run spent.
func TestRunBudgetStopsAndResumes(t *testing.T) {
	t.Parallel()
	const n = 80
	client, st, dir := setup(t, emulator.Config{Tier: "tier-4"})
	input := writeInput(t, dir, n)
	out := filepath.Join(dir, "results.jsonl")
	cat := catalog.Default()
	m, err := cat.Resolve(testkit.DefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	// One request's worst case is its few input tokens and its 64 output tokens.
	perRequest := cat.Cost(m, catalog.Usage{OutputTokens: testkit.DefaultMaxTokens}, false)
	cfg := runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Output: out, Tier: "tier-4",
		Budget: n / 4 * perRequest}, MaxConcurrency: 16}
	sum, err := runner.Run(context.Background(), cfg)
	if !errors.Is(err, runner.ErrStopped) || !strings.Contains(err.Error(), "budget") {
		t.Fatalf("Run() error = %v, want ErrStopped naming the budget", err)
	}
	if sum.Succeeded == 0 || sum.Succeeded >= n || sum.Pending != n-sum.Succeeded {
		t.Errorf("stopped with %d succeeded, %d pending; want some but not all %d done, the rest pending", sum.Succeeded, sum.Pending, n)
	}
	if sum.CostUSD > cfg.Budget {
		t.Errorf("cost $%.6f exceeds the budget $%.6f", sum.CostUSD, cfg.Budget)
	}
	first := sum.CostUSD

	// The same budget again: what was spent counts, so little or nothing is sent.
	sum, err = runner.Run(context.Background(), cfg)
	if !errors.Is(err, runner.ErrStopped) || sum.CostUSD > cfg.Budget {
		t.Errorf("resumed with the same budget: error %v, cost $%.6f; want ErrStopped within $%.6f (the first run's $%.6f counted)",
			err, sum.CostUSD, cfg.Budget, first)
	}

	cfg.Budget = 2 * n * perRequest
	sum, err = runner.Run(context.Background(), cfg)
	if err != nil || sum.Succeeded != n || sum.Pending != 0 {
		t.Fatalf("resumed with a larger budget: %+v, %v; want all %d succeeded", sum, err, n)
	}
	if sum.CostUSD > cfg.Budget {
		t.Errorf("cost $%.6f exceeds the budget $%.6f", sum.CostUSD, cfg.Budget)
	}
}
