package emulator

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

func mustParse(t *testing.T, body string) *wire.MessageRequest {
	t.Helper()
	r, err := wire.ParseMessageRequest([]byte(body), wire.ParseOptions{})
	if err != nil {
		t.Fatalf("ParseMessageRequest(%s): %v", body, err)
	}
	return r
}

func TestGenerateStopReasons(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Output: OutputModel{MedianTokens: 50}})
	if err != nil {
		t.Fatal(err)
	}
	tools := `"tools":[{"name":"lookup","description":"find","input_schema":{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer"},"mode":{"enum":["a","b"]}}}}]`
	tests := []struct {
		name, body string
		want       string
	}{
		{"end_turn", `{"model":"claude-haiku-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}]}`, "end_turn"},
		{"max_tokens", `{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}]}`, "max_tokens"},
		{"tool_use forced", `{"model":"claude-haiku-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],` + tools + `,"tool_choice":{"type":"tool","name":"lookup"}}`, "tool_use"},
		{"tool_choice none", `{"model":"claude-haiku-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],` + tools + `,"tool_choice":{"type":"none"}}`, "end_turn"},
	}
	for _, tt := range tests {
		g := s.generate(mustParse(t, tt.body), []byte(tt.body))
		if g.stopReason != tt.want {
			t.Errorf("%s: stop_reason = %q, want %q", tt.name, g.stopReason, tt.want)
		}
		if tt.want == "tool_use" {
			tu, ok := g.blocks[len(g.blocks)-1].(ToolUseBlock)
			if !ok || tu.Name != "lookup" || !strings.HasPrefix(tu.ID, "toolu_") {
				t.Fatalf("%s: last block = %#v, want a tool_use of lookup", tt.name, g.blocks[len(g.blocks)-1])
			}
			var in map[string]any
			if err := json.Unmarshal(tu.Input, &in); err != nil {
				t.Fatalf("tool input %s: %v", tu.Input, err)
			}
			if _, ok := in["n"].(float64); !ok {
				t.Errorf("tool input %s: n is not a number as the schema says", tu.Input)
			}
			if m := in["mode"]; m != "a" && m != "b" {
				t.Errorf("tool input %s: mode %v not from the enum", tu.Input, m)
			}
		}
		if tt.want == "max_tokens" && g.outputTokens != 10 {
			t.Errorf("max_tokens: output_tokens = %d, want 10", g.outputTokens)
		}
	}
}

func TestGenerateStopSequence(t *testing.T) {
	t.Parallel()
	s, _ := New(Config{Output: OutputModel{MedianTokens: 50}})
	seen := false
	for i := 0; i < 200 && !seen; i++ {
		body := `{"model":"claude-haiku-4-5","max_tokens":1000,"stop_sequences":["END"],"messages":[{"role":"user","content":"x` + strings.Repeat("y", i) + `"}]}`
		g := s.generate(mustParse(t, body), []byte(body))
		if g.stopReason == "stop_sequence" {
			seen = true
			if g.stopSequence == nil || *g.stopSequence != "END" {
				t.Errorf("stop_sequence = %v, want END", g.stopSequence)
			}
		}
	}
	if !seen {
		t.Errorf("no stop_sequence in 200 requests with stop_sequences set")
	}
}

func TestGenerateDeterministicPerSeed(t *testing.T) {
	t.Parallel()
	body := `{"model":"claude-haiku-4-5","max_tokens":1000,"messages":[{"role":"user","content":"same"}]}`
	text := func(seed int64) string {
		s, _ := New(Config{Seed: seed})
		g := s.generate(mustParse(t, body), []byte(body))
		return g.blocks[0].(TextBlock).Text
	}
	if a, b := text(1), text(1); a != b {
		t.Errorf("same seed and body gave different outputs:\n%q\n%q", a, b)
	}
	if text(1) == text(2) {
		t.Errorf("different seeds gave the same output")
	}
}

func TestOutputLengthDistribution(t *testing.T) {
	t.Parallel()
	s, _ := New(Config{Output: OutputModel{MedianTokens: 200, Sigma: 0.5}})
	var lens []int64
	for i := 0; i < 401; i++ {
		body := `{"model":"claude-haiku-4-5","max_tokens":100000,"messages":[{"role":"user","content":"` + strings.Repeat("q", i) + `"}]}`
		lens = append(lens, s.generate(mustParse(t, body), []byte(body)).outputTokens)
	}
	below := 0
	for _, n := range lens {
		if n < 200 {
			below++
		}
	}
	// Median 200: about half below (binomial, n=401: 200 ± 40 is > 4 sigma).
	if below < 160 || below > 240 {
		t.Errorf("%d of 401 outputs below the median 200, want about half", below)
	}
}

func TestLatencyModelOrder(t *testing.T) {
	t.Parallel()
	s, _ := New(Config{LatencyScale: 1})
	lat := func(model string) time.Duration {
		m, _ := s.cat.Model(model)
		return s.latency(s.cat.Class(m), 500)
	}
	h, so, o, f := lat("claude-haiku-4-5"), lat("claude-sonnet-5"), lat("claude-opus-4-8"), lat("claude-fable-5")
	if !(h < so && so < o && o < f) {
		t.Errorf("latency haiku %v, sonnet %v, opus %v, fable %v: want haiku fastest, fable slowest", h, so, o, f)
	}
	off, _ := New(Config{})
	m, _ := off.cat.Model("claude-opus-4-8")
	if d := off.latency(off.cat.Class(m), 500); d != 0 {
		t.Errorf("latency with scale 0 = %v, want 0", d)
	}
}

func TestClockSpeedAndAdvance(t *testing.T) {
	t.Parallel()
	real := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return real }
	c := NewClock(now, 3600)
	start := c.Now()
	real = real.Add(24 * time.Second)
	if got := c.Now().Sub(start); got != 24*time.Hour {
		t.Errorf("24 s at speed 3600 = %v of emulator time, want 24h", got)
	}
	c.Advance(time.Hour)
	if got := c.Now().Sub(start); got != 25*time.Hour {
		t.Errorf("after Advance(1h) = %v, want 25h", got)
	}
}

func TestCountTokensRule(t *testing.T) {
	t.Parallel()
	body := `{"model":"claude-haiku-4-5","max_tokens":5,"system":"abcdefgh","messages":[{"role":"user","content":[{"type":"text","text":"abcd"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}]}`
	ic := countInput("claude-haiku-4-5", mustParse(t, body), []byte(body))
	// request 3 + system 2 + 2 + message 4 + text 1 + image 1500
	if want := int64(3 + 2 + 2 + 4 + 1 + 1500); ic.Total != want {
		t.Errorf("countInput = %d, want %d", ic.Total, want)
	}
}

// TestRateLimitHeadersThroughHandler checks the headers are in canonical form, so that
// Header().Get finds them on an httptest recorder, not only over the network.
func TestRateLimitHeadersThroughHandler(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Tier: "tier-1"})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	req := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(body))
	req.Header.Set("x-api-key", "k")
	req.Header.Set("anthropic-version", Version2023)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	for _, h := range []string{"anthropic-ratelimit-requests-limit", "anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-output-tokens-reset", "anthropic-ratelimit-tokens-limit"} {
		if rec.Header().Get(h) == "" {
			t.Errorf("Header().Get(%q) is empty", h)
		}
	}
}

// TestGenerateToolChoiceAuto: under tool_choice auto, a tool the user's last text
// names is called every time (as a model asked to use a tool does), a name inside
// another word is not taken for it, and the chance of another call halves with
// each tool round trip, so that agent loops end.
func TestGenerateToolChoiceAuto(t *testing.T) {
	t.Parallel()
	s, _ := New(Config{Output: OutputModel{MedianTokens: 50}})
	tools := `"tools":[{"name":"Read","input_schema":{"type":"object","properties":{"file_path":{"type":"string"}},"required":["file_path"]}},` +
		`{"name":"Bash","input_schema":{"type":"object","properties":{"command":{"type":"string"}}}}]`
	toolCalls := func(messages string) (calls int, names map[string]int) {
		names = map[string]int{}
		for i := range 400 {
			body := `{"model":"claude-haiku-4-5","max_tokens":2000,"metadata":{"user_id":"u` + strings.Repeat("x", i%40) + string(rune('a'+i/40)) + `"},"messages":` + messages + `,` + tools + `}`
			g := s.generate(mustParse(t, body), []byte(body))
			if g.stopReason == "tool_use" {
				calls++
				names[g.blocks[len(g.blocks)-1].(ToolUseBlock).Name]++
			}
		}
		return calls, names
	}
	if calls, names := toolCalls(`[{"role":"user","content":"Please use the Read tool on hello.txt"}]`); calls != 400 || names["Read"] != 400 {
		t.Errorf("asked to use Read: %d tool calls of 400 (%v), want Read every time", calls, names)
	}
	fresh, _ := toolCalls(`[{"role":"user","content":"Reader, what is rebashing?"}]`)
	if fresh < 140 || fresh > 260 {
		t.Errorf("a question naming no tool: %d tool calls of 400, want about half", fresh)
	}
	result := `{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Read","input":{"file_path":"a"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}`
	after3, _ := toolCalls(`[{"role":"user","content":"Use Read"},` + result + `,` + result + `,` + result + `]`)
	if after3 > 60 {
		t.Errorf("after 3 tool round trips: %d tool calls of 400, want about 1 in 16 (25)", after3)
	}
}

// TestGenerateNamedToolBeforeSystemMessage: a system-role message after the user's
// (as Claude Code sends) does not hide the tool the user named.
func TestGenerateNamedToolBeforeSystemMessage(t *testing.T) {
	t.Parallel()
	s, _ := New(Config{Output: OutputModel{MedianTokens: 50}})
	body := `{"model":"claude-haiku-4-5","max_tokens":2000,"messages":[{"role":"user","content":[{"type":"text","text":"<system-reminder>ctx</system-reminder>"},{"type":"text","text":"Use the Read tool"}]},{"role":"system","content":"agents"}],` +
		`"tools":[{"name":"Bash","input_schema":{"type":"object"}},{"name":"Read","input_schema":{"type":"object"}}]}`
	req, err := wire.ParseMessageRequest([]byte(body), wire.ParseOptions{AllowSystemRole: true})
	if err != nil {
		t.Fatal(err)
	}
	g := s.generate(req, []byte(body))
	if tu, ok := g.blocks[len(g.blocks)-1].(ToolUseBlock); !ok || tu.Name != "Read" {
		t.Errorf("last block %#v, want a tool_use of Read", g.blocks[len(g.blocks)-1])
	}
}
