package wire

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// req builds a Messages body from top-level members, e.g. req(`"model":"m"`, …).
func req(members ...string) string { return "{" + strings.Join(members, ",") + "}" }

const (
	mModel = `"model":"claude-haiku-4-5"`
	mMax   = `"max_tokens":100`
	mMsgs  = `"messages":[{"role":"user","content":"hi"}]`
)

// withMsg is a valid request whose single user message has the given content.
func withMsg(content string) string {
	return req(mModel, mMax, `"messages":[{"role":"user","content":`+content+`}]`)
}

func TestParseMessageRequestRejects(t *testing.T) {
	t.Parallel()
	tool := `{"name":"get_weather","input_schema":{"type":"object"}}`
	tests := []struct {
		name string
		body string
		opt  ParseOptions
		want string // the exact error message
	}{
		// Malformed bodies.
		{name: "empty body", body: ``, want: "There was an error parsing the body of your request: invalid JSON at byte 0"},
		{name: "truncated", body: `{"model":`, want: "There was an error parsing the body of your request: invalid JSON at byte 9"},
		{name: "trailing garbage", body: req(mModel, mMax, mMsgs) + `x`, want: "There was an error parsing the body of your request: invalid JSON at byte 90"},
		{name: "array body", body: `[1]`, want: "There was an error parsing the body of your request: the body must be a JSON object"},
		{name: "null body", body: `null`, want: "There was an error parsing the body of your request: the body must be a JSON object"},
		{name: "string body", body: `"hi"`, want: "There was an error parsing the body of your request: the body must be a JSON object"},

		// Missing required fields.
		{name: "missing model", body: req(mMax, mMsgs), want: "model: Field required"},
		{name: "missing max_tokens", body: req(mModel, mMsgs), want: "max_tokens: Field required"},
		{name: "missing messages", body: req(mModel, mMax), want: "messages: Field required"},
		{name: "count_tokens missing messages", body: req(mModel), opt: ParseOptions{CountTokens: true}, want: "messages: Field required"},

		// Wrong types and values.
		{name: "model number", body: req(`"model":5`, mMax, mMsgs), want: "model: Input should be a valid string"},
		{name: "model null", body: req(`"model":null`, mMax, mMsgs), want: "model: Input should be a valid string"},
		{name: "model empty", body: req(`"model":""`, mMax, mMsgs), want: "model: String should have at least 1 character"},
		{name: "max_tokens string", body: req(mModel, `"max_tokens":"100"`, mMsgs), want: "max_tokens: Input should be a valid integer"},
		{name: "max_tokens fraction", body: req(mModel, `"max_tokens":1.5`, mMsgs), want: "max_tokens: Input should be a valid integer"},
		{name: "max_tokens null", body: req(mModel, `"max_tokens":null`, mMsgs), want: "max_tokens: Input should be a valid integer"},
		{name: "max_tokens overflow", body: req(mModel, `"max_tokens":99999999999999999999`, mMsgs), want: "max_tokens: Input should be a valid integer"},
		{name: "max_tokens zero", body: req(mModel, `"max_tokens":0`, mMsgs), want: "max_tokens: Input should be greater than or equal to 1"},
		{name: "max_tokens negative", body: req(mModel, `"max_tokens":-3`, mMsgs), want: "max_tokens: Input should be greater than or equal to 1"},
		{name: "stream string", body: req(mModel, mMax, mMsgs, `"stream":"yes"`), want: "stream: Input should be a valid boolean"},
		{name: "messages object", body: req(mModel, mMax, `"messages":{}`), want: "messages: Input should be a valid list"},
		{name: "messages null", body: req(mModel, mMax, `"messages":null`), want: "messages: Input should be a valid list"},
		{name: "messages empty", body: req(mModel, mMax, `"messages":[]`), want: "messages: at least one message is required"},
		{name: "message not object", body: req(mModel, mMax, `"messages":["hi"]`), want: "messages.0: Input should be a valid dictionary"},
		{name: "message null", body: req(mModel, mMax, `"messages":[null]`), want: "messages.0: Input should be a valid dictionary"},
		{name: "temperature string", body: req(mModel, mMax, mMsgs, `"temperature":"hot"`), want: "temperature: Input should be a valid number"},
		{name: "temperature above 1", body: req(mModel, mMax, mMsgs, `"temperature":1.5`), want: "temperature: Input should be less than or equal to 1 and greater than or equal to 0"},
		{name: "top_p negative", body: req(mModel, mMax, mMsgs, `"top_p":-0.1`), want: "top_p: Input should be less than or equal to 1 and greater than or equal to 0"},
		{name: "top_k fraction", body: req(mModel, mMax, mMsgs, `"top_k":2.5`), want: "top_k: Input should be a valid integer"},
		{name: "stop_sequences numbers", body: req(mModel, mMax, mMsgs, `"stop_sequences":[1]`), want: "stop_sequences: Input should be a valid list of strings"},
		{name: "metadata list", body: req(mModel, mMax, mMsgs, `"metadata":[]`), want: "metadata: Input should be a valid dictionary"},
		{name: "system number", body: req(mModel, mMax, mMsgs, `"system":5`), want: "system: Input should be a valid string or list"},
		{name: "system image block", body: req(mModel, mMax, mMsgs, `"system":[{"type":"image","source":{}}]`), want: "system.0.type: Input should be 'text'"},

		// Unknown top-level fields.
		{name: "unknown field", body: req(mModel, mMax, mMsgs, `"foo":1`), want: "foo: Extra inputs are not permitted"},
		{name: "field names are case-sensitive", body: req(mModel, mMax, mMsgs, `"Stream":true`), want: "Stream: Extra inputs are not permitted"},
		{name: "count_tokens takes no max_tokens", body: req(mModel, mMax, mMsgs), opt: ParseOptions{CountTokens: true}, want: "max_tokens: Extra inputs are not permitted"},
		{name: "count_tokens takes no stream", body: req(mModel, mMsgs, `"stream":false`), opt: ParseOptions{CountTokens: true}, want: "stream: Extra inputs are not permitted"},
		{name: "sampling rejected", body: req(mModel, mMax, mMsgs, `"top_k":5`), opt: ParseOptions{RejectSampling: true}, want: "top_k: Extra inputs are not permitted"},
		{name: "unknown field before a bad model", body: req(`"model":5`, mMax, mMsgs, `"foo":1`), want: "foo: Extra inputs are not permitted"},

		// Roles.
		{name: "role missing", body: req(mModel, mMax, `"messages":[{"content":"hi"}]`), want: "messages.0.role: Field required"},
		{name: "role unknown", body: req(mModel, mMax, `"messages":[{"role":"bot","content":"hi"}]`), want: "messages.0.role: Input should be 'user' or 'assistant'"},
		{name: "role system on 2023 version", body: req(mModel, mMax, `"messages":[{"role":"system","content":"hi"}]`), want: "messages.0.role: Input should be 'user' or 'assistant'"},
		{name: "system role takes text only", body: req(mModel, mMax, `"messages":[{"role":"system","content":[{"type":"image","source":{}}]}]`), opt: ParseOptions{AllowSystemRole: true}, want: "messages.0.content.0.type: system messages take text blocks only"},
		{name: "role in second message", body: req(mModel, mMax, `"messages":[{"role":"user","content":"a"},{"role":"model","content":"b"}]`), want: "messages.1.role: Input should be 'user' or 'assistant'"},
		{name: "content missing", body: req(mModel, mMax, `"messages":[{"role":"user"}]`), want: "messages.0.content: Field required"},

		// Content blocks.
		{name: "content number", body: withMsg(`5`), want: "messages.0.content: Input should be a valid string or list"},
		{name: "content null", body: withMsg(`null`), want: "messages.0.content: Input should be a valid string or list"},
		{name: "block not object", body: withMsg(`["hi"]`), want: "messages.0.content.0: Input should be a valid dictionary"},
		{name: "block type missing", body: withMsg(`[{"text":"hi"}]`), want: "messages.0.content.0.type: Field required"},
		{name: "block type unknown", body: withMsg(`[{"type":"video"}]`), want: "messages.0.content.0.type: Input tag 'video' found using 'type' does not match any of the expected tags"},
		{name: "text block without text", body: withMsg(`[{"type":"text"}]`), want: "messages.0.content.0.text: Field required"},
		{name: "text block text number", body: withMsg(`[{"type":"text","text":5}]`), want: "messages.0.content.0: Input should be a valid dictionary"},
		{name: "image without source", body: withMsg(`[{"type":"text","text":"a"},{"type":"image"}]`), want: "messages.0.content.1.source: Field required"},
		{name: "bad block inside tool_result", body: withMsg(`[{"type":"tool_result","tool_use_id":"t","content":[{"type":"nope"}]}]`), want: "messages.0.content.0.content.0.type: Input tag 'nope' found using 'type' does not match any of the expected tags"},

		// cache_control.
		{name: "cache_control wrong type", body: withMsg(`[{"type":"text","text":"a","cache_control":{"type":"persistent"}}]`), want: "messages.0.content.0.cache_control.type: Input should be 'ephemeral'"},
		{name: "cache_control bad ttl", body: withMsg(`[{"type":"text","text":"a","cache_control":{"type":"ephemeral","ttl":"2h"}}]`), want: "messages.0.content.0.cache_control.ttl: Input should be '5m' or '1h'"},
		{name: "cache_control not object", body: withMsg(`[{"type":"text","text":"a","cache_control":"ephemeral"}]`), want: "messages.0.content.0.cache_control: Input should be a valid dictionary"},
		{name: "top-level cache_control", body: req(mModel, mMax, mMsgs, `"cache_control":{"type":"forever"}`), want: "cache_control.type: Input should be 'ephemeral'"},
		{name: "system cache_control", body: req(mModel, mMax, mMsgs, `"system":[{"type":"text","text":"s","cache_control":{"type":"ephemeral","ttl":"1d"}}]`), want: "system.0.cache_control.ttl: Input should be '5m' or '1h'"},
		{name: "tool cache_control", body: req(mModel, mMax, mMsgs, `"tools":[{"name":"t","input_schema":{},"cache_control":{}}]`), want: "tools.0.cache_control.type: Input should be 'ephemeral'"},

		// Tools and tool_choice.
		{name: "tools object", body: req(mModel, mMax, mMsgs, `"tools":{}`), want: "tools: Input should be a valid list"},
		{name: "tool without name", body: req(mModel, mMax, mMsgs, `"tools":[{"input_schema":{}}]`), want: "tools.0.name: Field required"},
		{name: "tool without input_schema", body: req(mModel, mMax, mMsgs, `"tools":[{"name":"t"}]`), want: "tools.0.input_schema: Field required"},
		{name: "tool names repeat", body: req(mModel, mMax, mMsgs, `"tools":[`+tool+`,`+tool+`]`), want: "tools: Tool names must be unique."},
		{name: "tool_choice any without tools", body: req(mModel, mMax, mMsgs, `"tool_choice":{"type":"any"}`), want: "tool_choice: tool_choice requires tools"},
		{name: "tool_choice tool without tools", body: req(mModel, mMax, mMsgs, `"tool_choice":{"type":"tool","name":"get_weather"}`), want: `tool_choice: tool "get_weather" not found in tools`},
		{name: "tool_choice tool without name", body: req(mModel, mMax, mMsgs, `"tools":[`+tool+`]`, `"tool_choice":{"type":"tool"}`), want: "tool_choice.tool.name: Field required"},
		{name: "tool_choice unknown type", body: req(mModel, mMax, mMsgs, `"tool_choice":{"type":"some"}`), want: "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"},
		{name: "tool_choice string", body: req(mModel, mMax, mMsgs, `"tool_choice":"auto"`), want: "tool_choice: Input should be a valid dictionary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMessageRequest([]byte(tc.body), tc.opt)
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("ParseMessageRequest(%s) = %+v, %v, want *Error %q", tc.body, got, err, tc.want)
			}
			if we.Status != 400 || we.Type != InvalidRequest || we.Message != tc.want {
				t.Errorf("ParseMessageRequest(%s) error = %d %s %q, want 400 invalid_request_error %q", tc.body, we.Status, we.Type, we.Message, tc.want)
			}
		})
	}
}

func TestParseMessageRequestAccepts(t *testing.T) {
	t.Parallel()
	eph := func(ttl string) *CacheControl { return &CacheControl{Type: "ephemeral", TTL: ttl} }
	schema := `{"type":"object","properties":{"city":{"type":"string"}}}`
	toolDef := `{"name":"get_weather","description":"Weather for a city","input_schema":` + schema + `,"cache_control":{"type":"ephemeral","ttl":"1h"}}`
	tests := []struct {
		name string
		body string
		opt  ParseOptions
		want MessageRequest // Fields is compared as a set
	}{
		{
			name: "minimal",
			body: req(mModel, mMax, mMsgs),
			want: MessageRequest{
				Model: "claude-haiku-4-5", MaxTokens: 100, HasMaxTokens: true,
				Messages: []Message{{Role: "user", Content: []Block{{Type: "text", Text: "hi"}}}},
				Fields:   []string{"model", "max_tokens", "messages"},
			},
		},
		{
			name: "stream, system string, sampling, stop sequences, metadata, escapes",
			body: `{"model":"claude-sonnet-4-5","max_tokens":4096,"stream":true,"system":"Be \"brief\".\n",
				"temperature":0.7,"top_p":1,"top_k":40,"stop_sequences":["END","\u00e9"],"metadata":{"user_id":"u1"},
				"messages":[{"role":"user","content":"caf\u00e9 \ud83d\ude00"},{"role":"assistant","content":[{"type":"text","text":"ok"}]}]}`,
			want: MessageRequest{
				Model: "claude-sonnet-4-5", MaxTokens: 4096, HasMaxTokens: true, Stream: true, HasStream: true,
				System:        []Block{{Type: "text", Text: "Be \"brief\".\n"}},
				StopSequences: []string{"END", "é"},
				Messages: []Message{
					{Role: "user", Content: []Block{{Type: "text", Text: "café 😀"}}},
					{Role: "assistant", Content: []Block{{Type: "text", Text: "ok"}}},
				},
				Fields: []string{"model", "max_tokens", "stream", "system", "temperature", "top_p", "top_k", "stop_sequences", "metadata", "messages"},
			},
		},
		{
			name: "null optional fields are absent",
			body: req(mModel, mMax, mMsgs, `"stream":null`, `"system":null`, `"tools":null`, `"tool_choice":null`, `"cache_control":null`, `"temperature":null`),
			want: MessageRequest{
				Model: "claude-haiku-4-5", MaxTokens: 100, HasMaxTokens: true,
				Messages: []Message{{Role: "user", Content: []Block{{Type: "text", Text: "hi"}}}},
				Fields:   []string{"model", "max_tokens", "messages", "stream", "system", "tools", "tool_choice", "cache_control", "temperature"},
			},
		},
		{
			name: "every block kind, cache breakpoints, tools",
			body: req(mModel, mMax,
				`"system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}]`,
				`"tools":[`+toolDef+`]`,
				`"tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true}`,
				`"cache_control":{"type":"ephemeral","ttl":"5m"}`,
				`"messages":[
					{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}},{"type":"document","source":{}},{"type":"text","text":"what is this?","cache_control":{"type":"ephemeral","ttl":"1h"}}]},
					{"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"sig"},{"type":"redacted_thinking","data":"x"},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
					{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"sunny"},{"type":"image","source":{}}]},{"type":"tool_result","tool_use_id":"toolu_2","content":"rain"},{"type":"tool_result","tool_use_id":"toolu_3"},{"type":"search_result"},{"type":"container_upload"}]}
				]`),
			want: MessageRequest{
				Model: "claude-haiku-4-5", MaxTokens: 100, HasMaxTokens: true,
				System:       []Block{{Type: "text", Text: "sys", CacheControl: eph("5m")}},
				Tools:        []Tool{{Name: "get_weather", Raw: []byte(toolDef), InputSchema: []byte(schema), CacheControl: eph("1h")}},
				ToolChoice:   ToolChoice{Type: "tool", Name: "get_weather"},
				CacheControl: eph("5m"),
				Messages: []Message{
					{Role: "user", Content: []Block{{Type: "image", Media: true}, {Type: "document", Media: true}, {Type: "text", Text: "what is this?", CacheControl: eph("1h")}}},
					{Role: "assistant", Content: []Block{{Type: "thinking", Text: "hmm"}, {Type: "redacted_thinking"}, {Type: "tool_use", Text: `get_weather{"city":"Paris"}`}}},
					{Role: "user", Content: []Block{{Type: "tool_result", Text: "sunny", Media: true}, {Type: "tool_result", Text: "rain"}, {Type: "tool_result"}, {Type: "search_result", Media: true}, {Type: "container_upload", Media: true}}},
				},
				Fields: []string{"model", "max_tokens", "system", "tools", "tool_choice", "cache_control", "messages"},
			},
		},
		{
			name: "count_tokens needs no max_tokens",
			body: req(mModel, mMsgs),
			opt:  ParseOptions{CountTokens: true},
			want: MessageRequest{
				Model:    "claude-haiku-4-5",
				Messages: []Message{{Role: "user", Content: []Block{{Type: "text", Text: "hi"}}}},
				Fields:   []string{"model", "messages"},
			},
		},
		{
			name: "system role on 2026 version",
			body: req(mModel, mMax, `"messages":[{"role":"system","content":"rules"},{"role":"user","content":"hi"}]`),
			opt:  ParseOptions{AllowSystemRole: true},
			want: MessageRequest{
				Model: "claude-haiku-4-5", MaxTokens: 100, HasMaxTokens: true,
				Messages: []Message{{Role: "system", Content: []Block{{Type: "text", Text: "rules"}}}, {Role: "user", Content: []Block{{Type: "text", Text: "hi"}}}},
				Fields:   []string{"model", "max_tokens", "messages"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMessageRequest([]byte(tc.body), tc.opt)
			if err != nil {
				t.Fatalf("ParseMessageRequest(%s) error = %v, want nil", tc.body, err)
			}
			gotFields, wantFields := slices.Sorted(slices.Values(got.Fields)), slices.Sorted(slices.Values(tc.want.Fields))
			if !slices.Equal(gotFields, wantFields) {
				t.Errorf("Fields = %v, want %v", gotFields, wantFields)
			}
			g, w := *got, tc.want
			g.Fields, w.Fields = nil, nil
			if !reflect.DeepEqual(g, w) {
				t.Errorf("ParseMessageRequest(%s)\n got %+v\nwant %+v", tc.body, g, w)
			}
		})
	}
}

func TestValidCustomID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want bool
	}{
		{id: "a", want: true},
		{id: "req-001_B", want: true},
		{id: strings.Repeat("x", 64), want: true},
		{id: "", want: false},
		{id: strings.Repeat("x", 65), want: false},
		{id: "has space", want: false},
		{id: "dot.ted", want: false},
		{id: "é", want: false},
		{id: "slash/", want: false},
	}
	for _, tc := range tests {
		if got := ValidCustomID(tc.id); got != tc.want {
			t.Errorf("ValidCustomID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
