package serve_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
)

// accessLines returns the access log's lines (msg=call) of a gateway's debug log,
// each as its key=value pairs.
func accessLines(logs string) []map[string]string {
	pair := regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)
	var out []map[string]string
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, " msg=call ") {
			continue
		}
		m := map[string]string{}
		for _, kv := range pair.FindAllStringSubmatch(line, -1) {
			m[kv[1]] = strings.Trim(kv[2], `"`)
		}
		out = append(out, m)
	}
	return out
}

// TestServeAccessLog: at debug level the gateway logs one line per API call, a
// Messages call (JSON or streamed) with its team, key label, model, status,
// attempts, queue wait, usage and cost, a refused key with its 401, other routes
// with theirs; its own pages are not logged, and no line holds a client key or the
// organisation's key.
func TestServeAccessLog(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{keys: "keys:\n  " + researchKey + ": {team: research, label: rkey}\n"})
	ctx := context.Background()
	c := v2(gw.URL, researchKey)
	msg, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 50, "log me"))
	if err != nil {
		t.Fatal(err)
	}
	st := c.Messages.NewStreaming(ctx, hello("claude-haiku-4-5", 50, "log my stream"))
	var acc anthropic.Message
	for st.Next() {
		acc.Accumulate(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	st.Close()
	other := v2(gw.URL, "ck-not-a-key-999")
	if _, err := other.Messages.New(ctx, hello("claude-haiku-4-5", 50, "who?")); err == nil {
		t.Fatal("an unknown key was answered")
	}
	if _, err := c.Models.List(ctx, anthropic.ModelListParams{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/_clade/status", "/metrics", "/"} {
		resp, err := http.Get(gw.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	logs := gw.logs.String()
	lines := accessLines(logs)
	if len(lines) != 4 {
		t.Fatalf("%d access lines, want 4 (JSON, stream, 401, models):\n%s", len(lines), logs)
	}
	want := []struct {
		endpoint, status, team, stream string
		tokens                         int64
	}{
		{"messages", "200", "research", "false", msg.Usage.OutputTokens},
		{"messages", "200", "research", "true", acc.Usage.OutputTokens},
		{"messages", "401", "none", "", 0},
		{"models", "200", "research", "", 0},
	}
	for i, w := range want {
		l := lines[i]
		if l["endpoint"] != w.endpoint || l["status"] != w.status || l["team"] != w.team {
			t.Errorf("line %d = %v, want endpoint %s, status %s, team %s", i, l, w.endpoint, w.status, w.team)
		}
		if w.endpoint == "messages" && w.status == "200" {
			if l["key"] != "rkey" || l["model"] != "claude-haiku-4-5" || l["stream"] != w.stream || l["attempts"] != "1" ||
				l["queue_wait_s"] == "" || l["output_tokens"] != itoa(int(w.tokens)) || l["cost_usd"] == "" || l["cost_usd"] == "0" ||
				!strings.HasPrefix(l["request_id"], "req_") || l["duration_s"] == "" {
				t.Errorf("line %d = %v, want key rkey, the model, stream %s, 1 attempt, a queue wait, %d output tokens, a cost, the upstream request-id and a duration",
					i, l, w.stream, w.tokens)
			}
		}
	}
	for _, secret := range []string{researchKey, "ck-not-a-key-999", orgKey} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds the key %q", secret)
		}
	}
}
