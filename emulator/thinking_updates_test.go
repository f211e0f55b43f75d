package emulator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
)

// TestThinkingDisplayUpdates: Claude Code 2.1.332's first request of a session has
// adaptive thinking with display "updates" and the thinking-display-updates beta;
// it is answered 200 with a thinking block, and without the beta gets the API's 400.
func TestThinkingDisplayUpdates(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	body := `{"model":"claude-opus-4-6","max_tokens":4000,"thinking":{"type":"adaptive","display":"updates"},` +
		`"output_config":{"effort":"max"},"messages":[{"role":"user","content":"Think."}]}`
	send := func(beta string) (int, string) {
		req, err := http.NewRequest("POST", em.URL+"/v1/messages", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("x-api-key", "k")
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("content-type", "application/json")
		if beta != "" {
			req.Header.Set("anthropic-beta", beta)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, got := send("claude-code-20250219," + emulator.ThinkingDisplayUpdatesBeta)
	var m struct {
		Content []struct{ Type, Thinking, Signature string } `json:"content"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(got), &m) != nil || len(m.Content) == 0 ||
		m.Content[0].Type != "thinking" || m.Content[0].Thinking == "" || m.Content[0].Signature == "" {
		t.Errorf("display updates with the beta: %d %.500s, want 200 opening with a signed thinking block", code, got)
	}
	if code, got := send(""); code != http.StatusBadRequest || !strings.Contains(got, "thinking.adaptive.display") {
		t.Errorf("display updates without the beta: %d %.300s, want the API's 400 naming thinking.adaptive.display", code, got)
	}
}
