package emulator_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
)

// Claude Code's first request of a session: anthropic-version 2023-06-01 with the
// mid-conversation beta, and a role "system" message after the first user turn.
// The emulator answers it 200 (it wasted a call on a 400 before); without the
// beta, or with the setting emptied, the old version refuses it as the API does.
func TestSystemRoleMessagesUnderBeta(t *testing.T) {
	t.Parallel()
	body := []byte(`{"model":"claude-haiku-4-5","max_tokens":16,"messages":[
		{"role":"user","content":"hi"},
		{"role":"system","content":[{"type":"text","text":"the tools changed"}]},
		{"role":"user","content":"go on"}]}`)
	const beta = "interleaved-thinking-2025-05-14, mid-conversation-tool-changes-2026-07-01"
	em := start(t, emulator.Config{Tier: "tier-4", APIKeys: []string{testKey}})
	url := em.URL + "/v1/messages"
	if r := rawCall(t, "POST", url, "2023-06-01", body, "anthropic-beta", beta); r.status != 200 {
		t.Errorf("2023-06-01 with the beta: %d %s, want 200", r.status, r.body)
	}
	if r := rawCall(t, "POST", url, "2026-10-21", body); r.status != 200 {
		t.Errorf("2026-10-21: %d %s, want 200", r.status, r.body)
	}
	r := rawCall(t, "POST", url, "2023-06-01", body)
	if typ, msg := r.errEnvelope(t); r.status != 400 || typ != "invalid_request_error" || !strings.Contains(msg, "messages.1.role") {
		t.Errorf("2023-06-01 without the beta: %d %s %s, want 400 naming messages.1.role", r.status, typ, msg)
	}
	none := start(t, emulator.Config{Tier: "tier-4", APIKeys: []string{testKey}, SystemRoleBetas: []string{}})
	if r := rawCall(t, "POST", none.URL+"/v1/messages", "2023-06-01", body, "anthropic-beta", beta); r.status != 400 {
		t.Errorf("SystemRoleBetas empty: %d, want 400", r.status)
	}
}

// A request with "thread" (the message-threads beta) gets the API's fallback
// error: 400 invalid_request_error with details.error_code
// thread_unsupported_request, on which the SDKs send the conversation again
// without the thread.
func TestThreadGetsTheFallbackError(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "tier-4", APIKeys: []string{testKey}})
	body := []byte(`{"model":"claude-haiku-4-5","max_tokens":16,"thread":{"type":"create"},"messages":[{"role":"user","content":"hi"}]}`)
	r := rawCall(t, "POST", em.URL+"/v1/messages", "2023-06-01", body, "anthropic-beta", "message-threads-2026-08-12")
	var env struct {
		Error struct {
			Type    string            `json:"type"`
			Details map[string]string `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || r.status != 400 || env.Error.Type != "invalid_request_error" ||
		env.Error.Details["error_code"] != "thread_unsupported_request" {
		t.Errorf("thread: %d %s, want 400 invalid_request_error with error_code thread_unsupported_request", r.status, r.body)
	}
	plain := []byte(`{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"a \"thread\" in the text"}]}`)
	if r := rawCall(t, "POST", em.URL+"/v1/messages", "2023-06-01", plain); r.status != 200 {
		t.Errorf("the word thread in a message: %d %s, want 200", r.status, r.body)
	}
}

// TestEffortAndContextManagement: output_config.effort and context_management as
// current clients send them are answered 200; an effort the API does not know and
// a context_management without typed edits get its 400.
func TestEffortAndContextManagement(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "tier-4", APIKeys: []string{testKey}})
	url := em.URL + "/v1/messages"
	msg := `"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]`
	for _, tt := range []struct {
		extra  string
		status int
		want   string
	}{
		{`"output_config":{"effort":"low"}`, 200, ""},
		{`"output_config":{"effort":"max"}`, 200, ""},
		{`"output_config":{"effort":"extreme"}`, 400, "output_config.effort"},
		{`"context_management":{"edits":[{"type":"clear_tool_uses_20250919","trigger":{"type":"input_tokens","value":30000}}]}`, 200, ""},
		{`"context_management":{"edits":[{"trigger":{}}]}`, 400, "context_management.edits.0.type"},
	} {
		r := rawCall(t, "POST", url, "2023-06-01", []byte("{"+msg+","+tt.extra+"}"))
		if r.status != tt.status || tt.want != "" && !strings.Contains(string(r.body), tt.want) {
			t.Errorf("%s: %d %s, want %d %s", tt.extra, r.status, r.body, tt.status, tt.want)
		}
	}
}

// TestDeferredAndServerToolsAreNotCalled: a tool with defer_loading is hidden from
// the model until a tool search finds it, and server tools run on the API's side:
// asked to use them, the emulator never answers them with a client tool_use; the
// visible tool is still called.
func TestDeferredAndServerToolsAreNotCalled(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "tier-4", APIKeys: []string{testKey}})
	tools := `"tools":[{"name":"hidden","input_schema":{"type":"object"},"defer_loading":true},` +
		`{"type":"tool_search_tool_regex_20251119","name":"tool_search_tool_regex"},` +
		`{"type":"web_search_20250305","name":"web_search"},` +
		`{"name":"visible","input_schema":{"type":"object","properties":{"q":{"type":"string"}}}}]`
	for i := range 30 {
		prompt := []string{"Use hidden now", "Use web_search now", "Use tool_search_tool_regex", "Use visible now"}[i%4]
		body := `{"model":"claude-haiku-4-5","max_tokens":400,"messages":[{"role":"user","content":"` + prompt + ` ` + strings.Repeat("x", i) + `"}],` + tools + `}`
		r := rawCall(t, "POST", em.URL+"/v1/messages", "2023-06-01", []byte(body))
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var m struct {
			Content []struct{ Type, Name string } `json:"content"`
		}
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatal(err)
		}
		for _, b := range m.Content {
			if b.Type == "tool_use" && b.Name != "visible" {
				t.Errorf("%q: a tool_use of %s, which the model cannot call", prompt, b.Name)
			}
		}
		if strings.HasPrefix(prompt, "Use visible") && (len(m.Content) == 0 || m.Content[len(m.Content)-1].Name != "visible") {
			t.Errorf("asked to use visible: %s, want a tool_use of it", r.body)
		}
	}
}
