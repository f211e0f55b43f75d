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

// TestStatusGroupsErrorsAndShowsPace: after a run with errored lines of two kinds,
// clade status groups them by error type and message (with counts and the first
// line), says when results came and how fast, and that no process works the store
// any more.
func TestStatusGroupsErrorsAndShowsPace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	// 10 good lines; 3 ask for more max_tokens than the model allows (the API's
	// 400, with a number in the message); 2 name a model the catalog lacks.
	writeWorkload(t, input, 10,
		`{"custom_id":"big1","params":{"model":"claude-haiku-4-5","max_tokens":900000,"messages":[{"role":"user","content":"a"}]}}`,
		`{"custom_id":"big2","params":{"model":"claude-haiku-4-5","max_tokens":800000,"messages":[{"role":"user","content":"b"}]}}`,
		`{"custom_id":"big3","params":{"model":"claude-haiku-4-5","max_tokens":700000,"messages":[{"role":"user","content":"c"}]}}`,
		`{"custom_id":"nope1","params":{"model":"claude-nonesuch-9","max_tokens":10,"messages":[{"role":"user","content":"d"}]}}`,
		`{"custom_id":"nope2","params":{"model":"claude-nonesuch-9","max_tokens":10,"messages":[{"role":"user","content":"e"}]}}`)
	out := filepath.Join(dir, "out.jsonl")
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"run", input, "-o", out, "--emulate", "tier-4", "-q"}, nil, &stdout, &stderr); code != cli.ExitFailedRequests {
		t.Fatalf("clade run: exit %d, want %d (5 lines fail)\n%s", code, cli.ExitFailedRequests, stderr.String())
	}
	stdout.Reset()
	if code := cli.Run(context.Background(), []string{"status", out}, nil, &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("clade status: exit %d\n%s", code, stderr.String())
	}
	s := stdout.String()
	for _, want := range []string{
		"succeeded 10, errored 5",
		"errored, by error type:",
		"     3  invalid_request_error (first: line 11): max_tokens: 900000 >",
		"     2  invalid_request_error (first: line 14): model:",
		"in the last minute",
		"now: no clade process is working this store",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("status lacks %q:\n%s", want, s)
		}
	}
}
