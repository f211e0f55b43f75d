package cli_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/cli"
)

func TestBatchEmulated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	const n = 100
	writeWorkload(t, in, n)
	var stdout, stderr bytes.Buffer
	args := []string{"batch", in, "-o", out, "--emulate", "tier-4", "--tier", "tier-4", "--max-requests", "40", "--poll", "10ms", "-q"}
	if code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("clade %s = exit %d, want 0; stderr:\n%s", strings.Join(args, " "), code, stderr.String())
	}
	seen := countResults(t, out)
	if len(seen) != n {
		t.Errorf("results file has %d custom_ids, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("custom_id %s has %d result lines, want 1", id, c)
		}
	}
	for _, want := range []string{"100 requests: 100 succeeded, 0 errored", "3 batches created", "at batch prices"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestBatchUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, in, 1)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no input", args: []string{"batch", filepath.Join(dir, "missing.jsonl")}, want: "Try: clade batch"},
		{name: "bad tier", args: []string{"batch", in, "--tier", "tier-9"}, want: "--tier"},
		{name: "bad rounds", args: []string{"batch", in, "--max-rounds", "0"}, want: "--max-rounds"},
		{name: "cancel without store", args: []string{"batch", "cancel"}, want: "no store named"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != cli.ExitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("clade %s = exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr.String(), cli.ExitUsage, tt.want)
			}
		})
	}
}
