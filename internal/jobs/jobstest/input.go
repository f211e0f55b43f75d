package jobstest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
)

// Model is the model of generated requests.
const Model = "claude-sonnet-4-5"

// CustomID is the custom_id of generated line i (0-based).
func CustomID(i int) string { return "req-" + strconv.Itoa(i) }

// GenerateInput writes n valid request lines, custom_ids CustomID(0..n-1),
// streaming (constant memory).
func GenerateInput(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for i := range n {
		fmt.Fprintf(bw, `{"custom_id":"%s","params":{"model":"%s","max_tokens":256,"messages":[{"role":"user","content":"Label item %d as positive or negative: the service was fine."}]}}`+"\n",
			CustomID(i), Model, i)
	}
	return bw.Flush()
}

// WriteInput writes n generated lines to a new file in a temporary directory and
// returns its path.
func WriteInput(tb testing.TB, n int) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "input.jsonl")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := GenerateInput(f, n); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
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
