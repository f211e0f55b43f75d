package testkit

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/clade-dev/clade/internal/upstream"
)

// Result is one line of a results file, in the Message Batches results format,
// with the fields tests check.
type Result struct {
	CustomID string
	// Type is result.type: succeeded, errored, canceled or expired.
	Type string
	// ErrorType is result.error.error.type of an errored result, e.g.
	// invalid_request_error; empty otherwise.
	ErrorType string
	// Model is result.message.model of a succeeded result: the model that answered.
	Model string
	// Usage is result.message.usage of a succeeded result (its cache writes split
	// by TTL); zero otherwise.
	Usage upstream.Usage
	// Line is the line as it stands in the file, without its newline.
	Line string
}

// ResultLines returns every line of the results file at path in file order,
// repeated custom_ids included. It fails the test on a file it cannot read or a
// line that is not a JSON object (a torn write).
func ResultLines(tb testing.TB, path string) []Result {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("open results: %v", err)
	}
	defer f.Close()
	var out []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l struct {
			CustomID string `json:"custom_id"`
			Result   struct {
				Type  string `json:"type"`
				Error struct {
					Error struct {
						Type string `json:"type"`
					} `json:"error"`
				} `json:"error"`
				Message struct {
					Model string         `json:"model"`
					Usage upstream.Usage `json:"usage"`
				} `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			tb.Fatalf("results line %q: %v", sc.Text(), err)
		}
		out = append(out, Result{
			CustomID:  l.CustomID,
			Type:      l.Result.Type,
			ErrorType: l.Result.Error.Error.Type,
			Model:     l.Result.Message.Model,
			Usage:     l.Result.Message.Usage,
			Line:      sc.Text(),
		})
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return out
}

// ReadResults returns custom_id → result of the results file at path. Besides
// what ResultLines fails on, it fails the test on a custom_id written twice.
func ReadResults(tb testing.TB, path string) map[string]Result {
	tb.Helper()
	out := map[string]Result{}
	for _, r := range ResultLines(tb, path) {
		if _, dup := out[r.CustomID]; dup {
			tb.Fatalf("custom_id %s appears twice in %s", r.CustomID, path)
		}
		out[r.CustomID] = r
	}
	return out
}

// ResultTypes returns custom_id → result type (succeeded, errored, …) of the
// results file at path, failing as ReadResults does.
func ResultTypes(tb testing.TB, path string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for id, r := range ReadResults(tb, path) {
		out[id] = r.Type
	}
	return out
}
