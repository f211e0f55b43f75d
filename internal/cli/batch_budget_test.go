package cli_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/cli"
)

// TestBatchBudgetStops: a budget too small for any request creates no batch,
// exits with a failure that names the budget, and says what to do.
func TestBatchBudgetStops(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 5)
	args := []string{"batch", input, "-o", filepath.Join(dir, "out.jsonl"), "--emulate", "tier-4", "--tier", "tier-4", "--budget", "0.000001", "--poll", "10ms"}
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	if code != cli.ExitFailure {
		t.Fatalf("exit %d, want %d\n%s", code, cli.ExitFailure, stderr.String())
	}
	for _, want := range []string{"0 batches created", "budget", "raise --budget"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}
