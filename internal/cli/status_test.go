package cli_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/cli"
)

func TestRunEmulatedThenStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 30, `{"custom_id":"x y","params":{}}`, `{"custom_id":"ok","params":{"model":"haiku","messages":[]}}`)
	out := filepath.Join(dir, "out.jsonl")
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), []string{"run", input, "-o", out, "--emulate", "tier-4", "-q"}, nil, &stdout, &stderr)
	if code != cli.ExitOK {
		t.Fatalf("clade run --emulate: exit %d\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "30 requests: 30 succeeded, 0 errored, 0 pending; 2 bad lines skipped") {
		t.Errorf("summary missing or wrong:\n%s", stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	code = cli.Run(context.Background(), []string{"status", out}, nil, &stdout, &stderr)
	if code != cli.ExitOK {
		t.Fatalf("clade status: exit %d\n%s", code, stderr.String())
	}
	s := stdout.String()
	for _, want := range []string{"succeeded 30, errored 0", "bad line " + input + ":31: custom_id:", "bad line " + input + ":32: params.max_tokens:"} {
		if !strings.Contains(s, want) {
			t.Errorf("status output lacks %q:\n%s", want, s)
		}
	}
}

func TestRunWithoutKeySaysWhatToDo(t *testing.T) {
	// No key, no emulator: a clear error naming the variable and what to try.
	t.Setenv("ANTHROPIC_API_KEY", "")
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 1)
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), []string{"run", input, "-o", filepath.Join(dir, "out.jsonl")}, nil, &stdout, &stderr)
	if code != cli.ExitUsage || !strings.Contains(stderr.String(), "Error: ANTHROPIC_API_KEY is not set") || !strings.Contains(stderr.String(), "Try: ") {
		t.Errorf("run without a key: exit %d\n%s", code, stderr.String())
	}
}
