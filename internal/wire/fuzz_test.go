package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// seedBodies are realistic Messages bodies, and near misses, for the fuzz corpora.
var seedBodies = []string{
	`{"model":"claude-haiku-4-5","max_tokens":256,"messages":[{"role":"user","content":"Write a haiku about load testing."}]}`,
	`{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"system":"You are terse.","messages":[{"role":"user","content":"Hello"},{"role":"assistant","content":"Hi."},{"role":"user","content":"Again"}]}`,
	`{"model":"claude-opus-4-5","max_tokens":4096,"temperature":0.2,"top_p":0.9,"top_k":40,"stop_sequences":["\n\nHuman:","END"],"metadata":{"user_id":"u-1"},"messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9 \"quoted\"\n","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}`,
	`{"model":"claude-haiku-4-5","max_tokens":300,"system":[{"type":"text","text":"Long rules...","cache_control":{"type":"ephemeral"}}],"cache_control":{"type":"ephemeral","ttl":"5m"},"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"text","text":"Describe this."}]}]}`,
	`{"model":"claude-sonnet-4-5","max_tokens":500,"tools":[{"name":"get_weather","description":"Weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"enum":["c","f"]}},"required":["city"]},"cache_control":{"type":"ephemeral"}},{"type":"bash_20250124","name":"bash"}],"tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true},"messages":[{"role":"user","content":"Weather in Paris?"}]}`,
	`{"model":"claude-sonnet-4-5","max_tokens":500,"tools":[{"name":"lookup","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"look it up"},{"role":"assistant","content":[{"type":"thinking","thinking":"I should call lookup","signature":"sig"},{"type":"tool_use","id":"toolu_01","name":"lookup","input":{"q":"x"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":[{"type":"text","text":"found"},{"type":"image","source":{}}],"is_error":false}]}]}`,
	`{"model":"claude-sonnet-5","max_tokens":100,"messages":[{"role":"system","content":"rules"},{"role":"user","content":[{"type":"document","source":{"type":"text","data":"doc"}},{"type":"search_result","source":"s","title":"t","content":[]}]}],"thinking":{"type":"enabled","budget_tokens":2000},"service_tier":"auto"}`,
	`{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"count me"}],"system":"s","tools":[{"name":"t","input_schema":{}}],"tool_choice":{"type":"auto"}}`,
	`{"model":"claude-haiku-4-5","max_tokens":0,"messages":[]}`,
	`{"model":"","max_tokens":1,"messages":[{"role":"bot","content":5}]}`,
	`{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text"}]}],"tool_choice":{"type":"any"}}`,
	`{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}],"extra":true}`,
	`{"Model":"claude-haiku-4-5","max_tokens":1e3,"messages":null,"stream":"yes"}`,
	`{"model":"claude-haiku-4-5","model":"claude-opus-4-5","max_tokens":10,"messages":[{"role":"user","ROLE":"assistant","content":"dup"}]}`,
	`[{"model":"claude-haiku-4-5"}]`,
	`{"model":`,
	`null`,
	``,
}

// flagOptions maps a fuzzed byte to parse options.
func flagOptions(flags uint8) ParseOptions {
	return ParseOptions{CountTokens: flags&1 != 0, AllowSystemRole: flags&2 != 0, RejectSampling: flags&4 != 0}
}

func FuzzParseMessageRequest(f *testing.F) {
	for _, b := range seedBodies {
		for _, flags := range []uint8{0, 1, 2, 4} {
			f.Add([]byte(b), flags)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, flags uint8) {
		opt := flagOptions(flags)
		r, err := ParseMessageRequest(body, opt)
		if err != nil {
			var we *Error
			if !errors.As(err, &we) || we.Status != 400 || we.Type != InvalidRequest || we.Message == "" {
				t.Fatalf("ParseMessageRequest(%q) error = %#v, want a 400 invalid_request_error with a message", body, err)
			}
			return
		}
		checkRequestInvariants(t, body, opt, r)
		again, err := ParseMessageRequest(body, opt)
		if err != nil || !sameRequest(r, again) {
			t.Fatalf("ParseMessageRequest(%q) is not deterministic: %+v then %+v, %v", body, r, again, err)
		}
	})
}

// checkRequestInvariants checks what a parsed request promises its users.
func checkRequestInvariants(t *testing.T, body []byte, opt ParseOptions, r *MessageRequest) {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("ParseMessageRequest accepted invalid JSON %q", body)
	}
	if r.Model == "" {
		t.Errorf("Model is empty")
	}
	if opt.CountTokens {
		if r.HasMaxTokens || r.MaxTokens != 0 || r.HasStream || r.Stream {
			t.Errorf("count_tokens request has max_tokens/stream: %+v", r)
		}
	} else if !r.HasMaxTokens || r.MaxTokens < 1 {
		t.Errorf("MaxTokens = %d (set %v), want ≥ 1", r.MaxTokens, r.HasMaxTokens)
	}
	if r.Stream && !r.HasStream {
		t.Errorf("Stream set without HasStream")
	}
	if len(r.Messages) == 0 {
		t.Errorf("no messages")
	}
	allowed := messageFields
	if opt.CountTokens {
		allowed = countFields
	}
	seen := map[string]bool{}
	for _, k := range r.Fields {
		if !allowed[k] || seen[k] {
			t.Errorf("Fields = %v: %q unknown or repeated", r.Fields, k)
		}
		if opt.RejectSampling && (k == "temperature" || k == "top_p" || k == "top_k") {
			t.Errorf("Fields = %v has a sampling field despite RejectSampling", r.Fields)
		}
		seen[k] = true
	}
	for _, k := range []string{"model", "messages"} {
		if !seen[k] {
			t.Errorf("Fields = %v, want %s", r.Fields, k)
		}
	}
	checkCC := func(where string, cc *CacheControl) {
		if cc != nil && (cc.Type != "ephemeral" || (cc.TTL != "5m" && cc.TTL != "1h")) {
			t.Errorf("%s cache_control = %+v, want ephemeral 5m or 1h", where, cc)
		}
	}
	checkBlocks := func(where string, blocks []Block) {
		for _, b := range blocks {
			switch b.Type {
			case "text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "tool_result", "web_search_tool_result":
			case "image", "document", "search_result", "container_upload":
				if !b.Media {
					t.Errorf("%s: %s block without Media", where, b.Type)
				}
			default:
				t.Errorf("%s: unexpected block type %q", where, b.Type)
			}
			checkCC(where, b.CacheControl)
		}
	}
	for i, m := range r.Messages {
		switch {
		case m.Role == "user" || m.Role == "assistant":
		case m.Role == "system" && opt.AllowSystemRole:
			for _, b := range m.Content {
				if b.Type != "text" {
					t.Errorf("system message %d has a %s block", i, b.Type)
				}
			}
		default:
			t.Errorf("message %d role = %q", i, m.Role)
		}
		checkBlocks("message", m.Content)
	}
	for _, b := range r.System {
		if b.Type != "text" {
			t.Errorf("system block type = %q, want text", b.Type)
		}
	}
	checkBlocks("system", r.System)
	names := map[string]bool{}
	for _, tl := range r.Tools {
		if tl.Name == "" || names[tl.Name] || !json.Valid(tl.Raw) {
			t.Errorf("tool %+v: empty or repeated name, or invalid JSON", tl)
		}
		names[tl.Name] = true
		checkCC("tool", tl.CacheControl)
	}
	switch r.ToolChoice.Type {
	case "", "auto", "none":
	case "any":
		if len(r.Tools) == 0 {
			t.Errorf("tool_choice any without tools")
		}
	case "tool":
		if !names[r.ToolChoice.Name] {
			t.Errorf("tool_choice names %q, not among the tools", r.ToolChoice.Name)
		}
	default:
		t.Errorf("ToolChoice.Type = %q", r.ToolChoice.Type)
	}
	checkCC("top-level", r.CacheControl)
}

// sameRequest compares two parses, Fields as a set.
func sameRequest(a, b *MessageRequest) bool {
	x, y := *a, *b
	fx, fy := slices.Sorted(slices.Values(x.Fields)), slices.Sorted(slices.Values(y.Fields))
	x.Fields, y.Fields = nil, nil
	return slices.Equal(fx, fy) && reflect.DeepEqual(x, y)
}

var customIDRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func FuzzValidCustomID(f *testing.F) {
	for _, s := range []string{"req-1", "a", "A_b-9", strings.Repeat("z", 64), strings.Repeat("z", 65), "", "with space", "ü", "a\x00", "line\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidCustomID(s), customIDRE.MatchString(s); got != want {
			t.Fatalf("ValidCustomID(%q) = %v, want %v", s, got, want)
		}
	})
}

// FuzzParseFastMatchesSlow checks the fast path against the reference decoder: whatever
// parseFast accepts, parseSlow accepts with the same result.
func FuzzParseFastMatchesSlow(f *testing.F) {
	for _, b := range seedBodies {
		for _, flags := range []uint8{0, 1, 2, 4} {
			f.Add([]byte(b), flags)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, flags uint8) {
		opt := flagOptions(flags)
		fast, ok := parseFast(body, opt)
		if !ok {
			return
		}
		slow, err := parseSlow(body, opt)
		if err != nil {
			t.Fatalf("parseFast(%q) accepted what parseSlow rejects: %v", body, err)
		}
		if !sameRequest(fast, slow) {
			t.Fatalf("parseFast(%q)\n = %+v\nparseSlow = %+v", body, fast, slow)
		}
	})
}

// TestParseFastTakesCommonShapes makes sure realistic requests do not fall back to
// parseSlow, which would keep them correct but slow.
func TestParseFastTakesCommonShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body string
		opt  ParseOptions
	}{
		{body: seedBodies[0]},
		{body: seedBodies[1]},
		{body: seedBodies[2]},
		{body: seedBodies[3]},
		{body: seedBodies[4]},
		{body: seedBodies[5]},
		{body: seedBodies[6], opt: ParseOptions{AllowSystemRole: true}},
		{body: seedBodies[7], opt: ParseOptions{CountTokens: true}},
		{body: " {\n \"model\" : \"m\" ,\t\"max_tokens\" : 5 , \"messages\" : [ { \"role\" : \"user\" , \"content\" : [ ] } ] }\n"},
		{body: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"日本語 \u00e9"}],"stop_sequences":[],"tools":[]}`},
		{body: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"say \"hi\\\" \\\\"}],"stop_sequences":["\\","\""],"metadata":{"k\"":"\\"}}`},
	}
	for _, tc := range tests {
		fast, ok := parseFast([]byte(tc.body), tc.opt)
		if !ok {
			t.Errorf("parseFast(%s) fell back to parseSlow", tc.body)
			continue
		}
		slow, err := parseSlow([]byte(tc.body), tc.opt)
		if err != nil || !sameRequest(fast, slow) {
			t.Errorf("parseFast(%s) = %+v, parseSlow = %+v, %v", tc.body, fast, slow, err)
		}
	}
}

// TestTopFieldNamesCoverAllowedFields keeps the fast path's field table in step with
// messageFields and countFields.
func TestTopFieldNamesCoverAllowedFields(t *testing.T) {
	t.Parallel()
	for _, m := range []map[string]bool{messageFields, countFields} {
		for name := range m {
			if f := topField([]byte(name)); f < 0 || topFieldNames[f] != name {
				t.Errorf("topField(%q) = %d, want the index of %q in topFieldNames", name, f, name)
			}
		}
	}
	for i, name := range topFieldNames {
		if topField([]byte(name)) != i {
			t.Errorf("topField(%q) = %d, want %d", name, topField([]byte(name)), i)
		}
	}
}

// validJSONCases are edge cases of the JSON grammar.
var validJSONCases = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5e+3`, `1E-0`, `1e`, `+1`, `2.0e`, `-01`,
	`true`, `tru`, `truex`, `nul`, `null `, ` null`, `[1,]`, `[,1]`, `{"a":1,}`, `{"a" 1}`, `{1:2}`, `{"a":}`,
	`"\u00e9"`, `"\u00g9"`, `"\u12"`, `"\x"`, `"\/\b\f\n\r\t\"\\"`, "\"a\x01\"", "\"\xff\xfe\"", `"abc`,
	"\t{\n\"a\" : [ 1 , 2 ] }\r\n", `{"a":{"b":[{"c":null}]}}`, `[[[[[[]]]]]]`, `[1 2]`, `{} {}`, `"\"`,
	"\"\x7f\"", `"\uD800"`, `1 1`, `[-]`, `{"a":"b"}x`,
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, c := range append(validJSONCases, seedBodies...) {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%q) = %v, want %v", c, got, want)
		}
	}
	deep := strings.Repeat("[", maxValidDepth+1) + strings.Repeat("]", maxValidDepth+1)
	if validJSON([]byte(deep)) || !validJSON([]byte(deep[1:len(deep)-1])) {
		t.Errorf("validJSON with nesting %d / %d = %v / %v, want false / true", maxValidDepth+1, maxValidDepth,
			validJSON([]byte(deep)), validJSON([]byte(deep[1:len(deep)-1])))
	}
}

// FuzzValidJSON checks validJSON against json.Valid: always equal, except that
// validJSON may refuse nesting deeper than maxValidDepth.
func FuzzValidJSON(f *testing.F) {
	for _, c := range append(validJSONCases, seedBodies...) {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := validJSON(b), json.Valid(b)
		if got && !want {
			t.Fatalf("validJSON(%q) = true, but the JSON is invalid", b)
		}
		if !got && want && len(b) <= 2*maxValidDepth {
			t.Fatalf("validJSON(%q) = false, want true", b)
		}
	})
}
