package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func sse(events ...string) string {
	var b strings.Builder
	for _, e := range events {
		name := e[:strings.IndexByte(e, ' ')]
		b.WriteString("event: " + name + "\ndata: " + e[len(name)+1:] + "\n\n")
	}
	return b.String()
}

// TestReadStreamAssembles feeds readStream the event shapes of the API docs that the
// emulator does not produce (thinking, signature, citations, a tool input whose
// partial_json splits an escape) and checks the non-streaming message it builds,
// byte for byte.
func TestReadStreamAssembles(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("abcd", 20000) // one line longer than the reader's buffer
	stream := sse(
		`message_start {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":1,"service_tier":"standard"}}}`,
		`content_block_start {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}`,
		`ping {"type":"ping"}`,
		`content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me \"think\""}}`,
		`content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" \ud83d"}}`,
		`content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"\ude00."}}`,
		`content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}`,
		`content_block_stop {"type":"content_block_stop","index":0}`,
		`content_block_start {"type":"content_block_start","index":1,"content_block":{"type":"text","text":"","citations":[]}}`,
		`content_block_delta {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"The grass "}}`,
		`content_block_delta {"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"green","document_index":0,"start_char_index":0,"end_char_index":5}}}`,
		`content_block_delta {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"is green.`+long+`"}}`,
		`content_block_delta {"type":"content_block_delta","index":1,"delta":{"type":"future_delta","x":1}}`,
		`content_block_stop {"type":"content_block_stop","index":1}`,
		`future_event {"type":"future_event","anything":[1,2]}`,
		`content_block_start {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}`,
		`content_block_delta {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}`,
		`content_block_delta {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Par"}}`,
		`content_block_delta {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"is\\u00e9\", \"days\": [1, 2]}"}}`,
		`content_block_stop {"type":"content_block_stop","index":2}`,
		`message_delta {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":25,"cache_read_input_tokens":null,"output_tokens":89}}`,
		`message_stop {"type":"message_stop"}`,
	)
	stream = strings.ReplaceAll(stream, "\n", "\r\n") // CRLF line ends
	stream = ": a comment\r\n" + stream
	got, err := readStream(strings.NewReader(stream), 1<<20)
	if err != nil {
		t.Fatalf("readStream: %v", err)
	}
	want := `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-5","content":[` +
		`{"type":"thinking","thinking":"Let me \"think\" \ud83d\ude00.","signature":"EqQBCgIYAhIM"},` +
		`{"type":"text","text":"The grass is green.` + long + `","citations":[{"type":"char_location","cited_text":"green","document_index":0,"start_char_index":0,"end_char_index":5}]},` +
		`{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris\u00e9","days":[1,2]}}` +
		`],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":89,"service_tier":"standard"}}`
	if string(got) != want {
		t.Errorf("readStream =\n%.600s\nwant\n%.600s", got, want)
	}
	var m struct {
		Content []struct {
			Thinking string `json:"thinking"`
		} `json:"content"`
	}
	if err := json.Unmarshal(got, &m); err != nil || m.Content[0].Thinking != "Let me \"think\" 😀." {
		t.Errorf("thinking decodes to %q (%v), want the surrogate pair split across deltas joined", m.Content[0].Thinking, err)
	}
}

func TestReadStreamFailures(t *testing.T) {
	t.Parallel()
	start := `message_start {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}}`
	text := `content_block_start {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`
	tests := []struct {
		name   string
		stream string
		max    int64
		want   error
	}{
		{name: "no message_stop", stream: sse(start, text), max: 1 << 20, want: errStreamIncomplete},
		{name: "empty", stream: "", max: 1 << 20, want: errStreamIncomplete},
		{name: "index gap", stream: sse(start, `content_block_start {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}`), max: 1 << 20, want: errBadEvent},
		{name: "delta before start", stream: sse(start, `content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}`), max: 1 << 20, want: errBadEvent},
		{name: "not JSON", stream: sse(start, `message_delta {"type":`), max: 1 << 20, want: errBadEvent},
		{name: "too large", stream: sse(start, text, `content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"`+strings.Repeat("x", 4096)+`"}}`), max: 2048, want: errSSETooLarge},
	}
	for _, tt := range tests {
		_, err := readStream(strings.NewReader(tt.stream), tt.max)
		if !errors.Is(err, tt.want) {
			t.Errorf("readStream(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	_, err := readStream(strings.NewReader(sse(start, `error {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)), 1<<20)
	var se *streamError
	if !errors.As(err, &se) || !strings.Contains(string(se.data), "overloaded_error") {
		t.Errorf("readStream(error event) = %v, want a *streamError with the event's data", err)
	}
}

func TestStreamParams(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		err      error
	}{
		{in: `{"model":"m","max_tokens":1}`, want: `{"stream":true,"model":"m","max_tokens":1}`},
		{in: " {\n  \"model\": \"m\" }\n", want: " {\"stream\":true,\n  \"model\": \"m\" }\n"},
		{in: `{}`, want: `{"stream":true}`},
		{in: `{ }`, want: `{"stream":true }`},
		{in: `{"model":"m","stream":true}`, want: `{"model":"m","stream":true}`},
		{in: `{"messages":[{"content":"\"stream\": false"}],"metadata":{"stream":false}}`, want: `{"stream":true,"messages":[{"content":"\"stream\": false"}],"metadata":{"stream":false}}`},
		{in: `{"model":"m","stream":false}`, err: ErrStreamParam},
		{in: `{"str\u0065am":false}`, err: ErrStreamParam},
		{in: `[1]`, err: errNotObject},
		{in: `{"model":`, err: errNotObject},
	}
	for _, tt := range tests {
		got, err := streamParams([]byte(tt.in))
		if !errors.Is(err, tt.err) || string(got) != tt.want {
			t.Errorf("streamParams(%s) = %s, %v, want %s, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// FuzzReadStream checks that any bytes either fail cleanly or assemble into valid
// JSON, and that params given to streamParams stay valid JSON objects.
func FuzzReadStream(f *testing.F) {
	f.Add([]byte(sse(
		`message_start {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}}`,
		`content_block_start {"type":"content_block_start","index":0,"content_block":{"type":"text","text":"","citations":[ ]}}`,
		`content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi \u00e9"}}`,
		`content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{"a":1}}}`,
		`content_block_start {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"n","input":{}}}`,
		`content_block_delta {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}`,
		`content_block_delta {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" [1]}"}}`,
		`message_delta {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}`,
		`message_stop {"type":"message_stop"}`,
	)))
	f.Add([]byte("data: {\"type\":\"message_start\",\"message\":{\"content\":[]}}\n\ndata: {\"type\":\"message_stop\"}\n\n"))
	f.Add([]byte("event: error\ndata: {\"type\":\"error\"}\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := readStream(strings.NewReader(string(b)), 1<<16)
		if err == nil && !json.Valid(out) {
			t.Fatalf("readStream(%q) = %q: not JSON", b, out)
		}
		if json.Valid(b) {
			if p, err := streamParams(b); err == nil && !json.Valid(p) {
				t.Fatalf("streamParams(%q) = %q: not JSON", b, p)
			}
		}
	})
}

// BenchmarkReadStream is the client's side of a stream alone: assembling a
// 4,000-token answer sent as 500 text deltas of 8 tokens, as the emulator sends it.
func BenchmarkReadStream(b *testing.B) {
	events := []string{`message_start {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}`,
		`content_block_start {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`}
	for range 500 {
		events = append(events, `content_block_delta {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"the and for are but not you all "}}`)
	}
	events = append(events, `content_block_stop {"type":"content_block_stop","index":0}`,
		`message_delta {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":4000}}`,
		`message_stop {"type":"message_stop"}`)
	stream := sse(events...)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readStream(strings.NewReader(stream), 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMembers: the members of an object, keys decoded as encoding/json decodes
// them (escapes, bytes that are not UTF-8) and values raw; what is not one
// object is an error.
func TestMembers(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{}`, ` { "a" : 1 , "b":[1,{"c":"}"}], "d\u0041":"x\"y" ,"e":null}`, "{\"k\xff\":true}",
	} {
		ms, err := members([]byte(in))
		var want map[string]json.RawMessage
		if jerr := json.Unmarshal([]byte(in), &want); jerr != nil || err != nil {
			t.Fatalf("members(%q) error %v; encoding/json %v", in, err, jerr)
		}
		if len(ms) != len(want) {
			t.Errorf("members(%q) = %d members, want %d", in, len(ms), len(want))
		}
		for _, m := range ms {
			if w, ok := want[m.key]; !ok || !bytes.Equal(m.val, w) {
				t.Errorf("members(%q): %q = %s, encoding/json has %s (%v)", in, m.key, m.val, w, ok)
			}
		}
	}
	for _, in := range []string{``, `[]`, `{"a":1`, `{"a":1 "b":2}`, `{"a" 1}`, `{"a":}`, `{"a":1,}`, `{a:1}`} {
		if ms, err := members([]byte(in)); err == nil {
			t.Errorf("members(%q) = %v, want an error", in, ms)
		}
	}
}
