package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

// streamTap is an http.RoundTripper that records, for each Messages request on the
// wire, its max_tokens and whether it asked for a stream.
type streamTap struct {
	mu    sync.Mutex
	calls []streamCall
}

type streamCall struct {
	maxTokens int64
	stream    bool
}

func (s *streamTap) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	var p struct {
		MaxTokens int64 `json:"max_tokens"`
		Stream    bool  `json:"stream"`
	}
	if json.Unmarshal(body, &p) == nil {
		s.mu.Lock()
		s.calls = append(s.calls, streamCall{p.MaxTokens, p.Stream})
		s.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// writeMixedInput writes n requests to dir/input.jsonl, custom_ids req-000…,
// every other one with a max_tokens above the default streaming threshold.
func writeMixedInput(t *testing.T, dir string, n int) string {
	t.Helper()
	in := testkit.Input{IDFormat: "req-%03d", MaxTokensOf: func(i int) int {
		if i%2 == 1 {
			return 30_000
		}
		return 64
	}}
	return in.Write(t, filepath.Join(dir, "input.jsonl"), n)
}

var (
	msgIDRE   = regexp.MustCompile(`"id":"msg_[0-9A-Za-z]+"`)
	msgTextRE = regexp.MustCompile(`"text":"[^"]*"`)
)

// resultLines returns custom_id → result line with the message id and the filler
// text (drawn from the request body, which "stream" changes) blanked, text lengths
// kept.
func resultLines(t *testing.T, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range testkit.ResultLines(t, path) {
		s := msgIDRE.ReplaceAllString(r.Line, `"id":"msg_X"`)
		out[r.CustomID] = msgTextRE.ReplaceAllStringFunc(s, func(m string) string {
			return fmt.Sprintf(`"text":"<%d bytes>"`, len(m)-2-len(`"text":`))
		})
	}
	return out
}

// TestRunStreamAbove checks the routing on the wire (requests whose max_tokens is
// above the threshold go as streams, the others do not) and that a streamed request
// ends the same as a non-streaming one: the same result lines (but for the message
// id and the filler text, which the emulator draws from the body), the same tokens
// and the same cost.
func TestRunStreamAbove(t *testing.T) {
	t.Parallel()
	const n = 12
	tests := []struct {
		name   string
		above  int64
		stream func(maxTokens int64) bool
	}{
		{name: "never", above: runner.StreamNever, stream: func(int64) bool { return false }},
		{name: "default", above: 0, stream: func(mt int64) bool { return mt > runner.DefaultStreamAbove }},
		{name: "1000", above: 1000, stream: func(mt int64) bool { return mt > 1000 }},
		{name: "always", above: runner.StreamAlways, stream: func(int64) bool { return true }},
	}
	// A fixed output length, so both ways of sending give the same usage.
	em := emulator.StartTB(t, emulator.Config{Seed: 5, Output: emulator.OutputModel{MedianTokens: 40}})
	var baseLines map[string]string
	var base *runner.Summary
	for _, tt := range tests {
		tap := &streamTap{}
		client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(testKey), HTTPClient: &http.Client{Transport: tap}})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		st, err := jobs.Open(context.Background(), filepath.Join(dir, "run.db"))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "results.jsonl")
		sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: writeMixedInput(t, dir, n),
			Output: out, Tier: "start"}, StreamAbove: tt.above})
		st.Close()
		if err != nil {
			t.Fatalf("%s: Run: %v", tt.name, err)
		}
		if sum.Succeeded != n || sum.Sent != n {
			t.Errorf("%s: %d succeeded in %d calls, want %d in %d", tt.name, sum.Succeeded, sum.Sent, n, n)
		}
		tap.mu.Lock()
		streamed := 0
		for _, c := range tap.calls {
			if c.stream != tt.stream(c.maxTokens) {
				t.Errorf("%s: a request with max_tokens %d went with stream %v, want %v", tt.name, c.maxTokens, c.stream, !c.stream)
			}
			if c.stream {
				streamed++
			}
		}
		tap.mu.Unlock()
		t.Logf("%s: %d of %d requests streamed", tt.name, streamed, n)

		lines := resultLines(t, out)
		if base == nil {
			base, baseLines = sum, lines
			continue
		}
		if sum.InputTokens != base.InputTokens || sum.OutputTokens != base.OutputTokens || sum.CostUSD != base.CostUSD {
			t.Errorf("%s: tokens %d/%d cost $%.6f, want the non-streaming run's %d/%d $%.6f",
				tt.name, sum.InputTokens, sum.OutputTokens, sum.CostUSD, base.InputTokens, base.OutputTokens, base.CostUSD)
		}
		for id, want := range baseLines {
			if got := lines[id]; got != want {
				t.Errorf("%s: result line\n%s\nwant (non-streaming)\n%s", tt.name, got, want)
			}
		}
	}
}

// TestRunUnderStreamErrors runs streamed requests while the emulator ends a fifth of
// the streams with an overloaded_error event after the 200 and drops some mid-output:
// every request must still succeed, and the error events must count as overloads
// (529s), as they would have without streaming.
func TestRunUnderStreamErrors(t *testing.T) {
	t.Parallel()
	faults, err := emulator.ParseFaults("stream_error=0.2,drop=0.05")
	if err != nil {
		t.Fatal(err)
	}
	client, st, dir := setup(t, emulator.Config{Faults: faults, Seed: 9, APIKeys: []string{testKey}})
	const n = 60
	out := filepath.Join(dir, "results.jsonl")
	sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: writeInput(t, dir, n),
		Output: out, Tier: "start"}, MaxConcurrency: 16, StreamAbove: runner.StreamAlways})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := testkit.ResultTypes(t, out)
	for id, typ := range got {
		if typ != "succeeded" {
			t.Errorf("%s ended %s, want succeeded despite mid-stream errors", id, typ)
		}
	}
	if len(got) != n {
		t.Errorf("%d results, want %d", len(got), n)
	}
	if sum.Overloaded == 0 || sum.Retried == 0 {
		t.Errorf("summary %+v: want overloads counted from the error events, and retries", sum)
	}
	t.Logf("%d requests: %d calls, %d overloaded, %d retries", n, sum.Sent, sum.Overloaded, sum.Retried)
}

func TestRunStreamAboveInvalid(t *testing.T) {
	t.Parallel()
	client, st, dir := setup(t, emulator.Config{APIKeys: []string{testKey}})
	_, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: writeInput(t, dir, 1)}, StreamAbove: -3})
	if err == nil || !strings.Contains(err.Error(), "StreamAbove") {
		t.Errorf("Run(StreamAbove: -3) = %v, want an error naming StreamAbove", err)
	}
}
