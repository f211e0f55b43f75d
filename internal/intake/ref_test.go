package intake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clade-dev/clade/internal/wire"
)

// parseLineRef is ParseLine written with encoding/json maps: the reference that
// FuzzParseLineMatchesDecoder compares the allocation-free walker against.
// (reference)

func parseLineRef(n int, b []byte) (*Request, *Problem) {
	bad := func(id, field, format string, args ...any) (*Request, *Problem) {
		return nil, &Problem{Line: n, CustomID: id, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return bad("", "", "invalid JSON: %s (at byte %d)", syn.Error(), syn.Offset)
		}
		return bad("", "", "must be a JSON object, not %s", jsonKind(b))
	}

	raw, ok := top["custom_id"]
	if !ok {
		return bad("", "custom_id", "required")
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil || isNull(raw) {
		return bad("", "custom_id", "must be a string, not %s", jsonKind(raw))
	}
	if !wire.ValidCustomID(id) {
		return bad("", "custom_id", "must match ^[a-zA-Z0-9_-]{1,64}$, got %s", quoteShort(id))
	}
	for k := range top {
		if k != "custom_id" && k != "params" {
			return bad(id, k, "unknown field (a line holds only custom_id and params)")
		}
	}

	rawParams, ok := top["params"]
	if !ok {
		return bad(id, "params", "required")
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(rawParams, &params); err != nil || params == nil {
		return bad(id, "params", "must be a JSON object, not %s", jsonKind(rawParams))
	}

	req := &Request{Line: n, CustomID: id, Params: rawParams}
	raw, ok = params["model"]
	if !ok {
		return bad(id, "params.model", "required")
	}
	if err := json.Unmarshal(raw, &req.Model); err != nil || isNull(raw) {
		return bad(id, "params.model", "must be a string, not %s", jsonKind(raw))
	}
	if req.Model == "" {
		return bad(id, "params.model", "must not be empty")
	}

	raw, ok = params["max_tokens"]
	if !ok {
		return bad(id, "params.max_tokens", "required")
	}
	if err := json.Unmarshal(raw, &req.MaxTokens); err != nil || isNull(raw) || req.MaxTokens < 1 {
		return bad(id, "params.max_tokens", "must be a positive integer")
	}

	raw, ok = params["messages"]
	if !ok {
		return bad(id, "params.messages", "required")
	}
	var msgs []json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil || isNull(raw) {
		return bad(id, "params.messages", "must be an array, not %s", jsonKind(raw))
	}
	if len(msgs) == 0 {
		return bad(id, "params.messages", "must not be empty")
	}

	if raw, ok = params["stream"]; ok && !isNull(raw) && string(bytes.TrimSpace(raw)) != "false" {
		return bad(id, "params.stream", "not supported in input files (results are not streamed); remove it")
	}

	req.EstInputTokens = 0 // not compared
	return req, nil
}

// FuzzParseLineMatchesDecoder checks that ParseLine decides every line as the
// encoding/json reference does.
func FuzzParseLineMatchesDecoder(f *testing.F) {
	for _, s := range []string{
		line("a", goodParams),
		`{"custom_id":"a","custom_id":"b","params":{"model":"m","model":"","max_tokens":1,"messages":[1]}}`,
		`{"custom_\u0069d":"a","par\u0061ms":{"mod\u0065l":"m","max_tokens":2,"messages":[[]],"stream":false}}`,
		`{"custom_id":"a","params":{"model":"m","max_tokens":1e2,"messages":[{}]}}`,
		`{"custom_id":"a","params":{"model":"m","max_tokens":-0,"messages":[ ] }}`,
		`{"custom_id":"a","params":{"model":"m","max_tokens":99999999999999999999,"messages":[{}]}}`,
		` {"custom_id" : "a" , "params" : { "model" : "m" , "max_tokens" : 3 , "messages" : [ {} ] , "stream" : null } } `,
		`{"custom_id":"a","x":1,"params":{}}`, `{}`, `[]`, `"x"`, `{"custom_id":null}`, `{"a":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return // encoding/json replaces invalid UTF-8; the walker keeps the bytes
		}
		got, gotP := ParseLine(3, b)
		want, wantP := parseLineRef(3, b)
		if (got == nil) != (want == nil) {
			t.Fatalf("ParseLine(%q) = %+v, %+v; reference %+v, %+v", b, got, gotP, want, wantP)
		}
		if got != nil {
			if got.CustomID != want.CustomID || string(got.Params) != string(want.Params) || got.Model != want.Model || got.MaxTokens != want.MaxTokens {
				t.Fatalf("ParseLine(%q) = %+v, reference %+v", b, got, want)
			}
			if est := EstimateInputTokens(got.Params); est != got.EstInputTokens {
				t.Fatalf("EstimateInputTokens(%s) = %d, ParseLine said %d", got.Params, est, got.EstInputTokens)
			}
			return
		}
		if strings.HasPrefix(wantP.Reason, "unknown field") {
			// The reference picks one of several unknown fields at random.
			if !strings.HasPrefix(gotP.Reason, "unknown field") || gotP.CustomID != wantP.CustomID {
				t.Fatalf("ParseLine(%q) = %+v, reference %+v", b, gotP, wantP)
			}
			return
		}
		if *gotP != *wantP {
			t.Fatalf("ParseLine(%q) = %+v, reference %+v", b, *gotP, *wantP)
		}
	})
}
