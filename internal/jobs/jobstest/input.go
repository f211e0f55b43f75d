package jobstest

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/testkit"
)

// Model is the model of generated requests.
const Model = "claude-sonnet-4-5"

// input is the generator of GenerateInput's lines.
var input = testkit.Input{IDFormat: "req-%d", Model: Model, MaxTokens: 256,
	Content: "Label item %d as positive or negative: the service was fine."}

// CustomID is the custom_id of generated line i (0-based).
func CustomID(i int) string { return input.ID(i) }

// GenerateInput writes n valid request lines, custom_ids CustomID(0..n-1),
// streaming (constant memory).
func GenerateInput(w io.Writer, n int) error { return input.Generate(w, n) }

// WriteInput writes n generated lines to a new file in a temporary directory and
// returns its path.
func WriteInput(tb testing.TB, n int) string {
	tb.Helper()
	return input.Write(tb, filepath.Join(tb.TempDir(), "input.jsonl"), n)
}

// WriteFile writes lines (each without newline) to a new file and returns its path.
func WriteFile(tb testing.TB, lines ...string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "input.jsonl")
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
		b = append(b, '\n')
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Line returns a valid input line for id.
func Line(id string) string {
	return `{"custom_id":"` + id + `","params":{"model":"` + Model + `","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}}`
}

// Echo is a WorkFunc that succeeds at once with a small message naming the
// request, and usage from its estimate.
func Echo(_ context.Context, job *jobs.Job) (jobs.Result, error) {
	return EchoResult(job), nil
}

// EchoResult is the result Echo returns for job.
func EchoResult(job *jobs.Job) jobs.Result {
	usage := catalog.Usage{InputTokens: job.Request.EstInputTokens, OutputTokens: 1}
	msg, _ := json.Marshal(map[string]any{
		"id": "msg_" + job.Request.CustomID, "type": "message", "role": "assistant", "model": job.Request.Model,
		"content":     []map[string]string{{"type": "text", "text": "positive"}},
		"stop_reason": "end_turn", "stop_sequence": nil,
		"usage": map[string]int64{"input_tokens": usage.InputTokens, "output_tokens": usage.OutputTokens},
	})
	return jobs.Result{Type: jobs.Succeeded, Message: msg, Usage: usage, CostUSD: 0.000001}
}
