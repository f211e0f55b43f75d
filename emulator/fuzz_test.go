package emulator_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/wire"
)

// fuzzBodies are realistic Messages bodies, and near misses, for the handler fuzz corpora.
var fuzzBodies = []string{
	`{"model":"claude-haiku-4-5","max_tokens":256,"messages":[{"role":"user","content":"Write a haiku about load testing."}]}`,
	`{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"system":"You are terse.","messages":[{"role":"user","content":"Hello"},{"role":"assistant","content":"Hi."},{"role":"user","content":"Again"}]}`,
	`{"model":"claude-opus-4-5","max_tokens":40,"temperature":0.2,"stop_sequences":["END"],"metadata":{"user_id":"u-1"},"messages":[{"role":"user","content":[{"type":"text","text":"caf\u00e9","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}`,
	`{"model":"claude-haiku-4-5","max_tokens":30,"system":[{"type":"text","text":"rules","cache_control":{"type":"ephemeral"}}],"cache_control":{"type":"ephemeral"},"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}},{"type":"text","text":"Describe."}]}]}`,
	`{"model":"claude-sonnet-4-5","max_tokens":500,"stream":true,"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"unit":{"enum":["c","f"]},"ok":{"type":"boolean"},"x":{"type":"number"},"l":{"type":"array"},"o":{"type":"object"},"n":{"type":"null"}}}}],"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"Weather in Paris?"}]}`,
	`{"model":"claude-sonnet-4-5","max_tokens":3,"tools":[{"name":"lookup","input_schema":{"type":"object"}},{"type":"bash_20250124","name":"bash"}],"tool_choice":{"type":"tool","name":"bash"},"messages":[{"role":"user","content":"look"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_01","name":"lookup","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01","content":"found"}]}]}`,
	`{"model":"claude-sonnet-5","max_tokens":100,"messages":[{"role":"system","content":"rules"},{"role":"user","content":"hi"}]}`,
	`{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"count me"}],"system":"s"}`,
	`{"model":"claude-haiku-4-5","max_tokens":999999999,"messages":[{"role":"user","content":"x"}]}`,
	`{"model":"claude-nonexistent","max_tokens":10,"messages":[{"role":"user","content":"x"}]}`,
	`{"model":"claude-haiku-4-5","max_tokens":0,"messages":[]}`,
	`{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}],"extra":true}`,
	`{"model":`,
	``,
}

// fuzzServer is one emulator shared by all inputs of a fuzz target: tier unlimited, so
// no input depends on the ones before it through rate limits.
func fuzzServer(f *testing.F) *emulator.Server {
	s, err := emulator.New(emulator.Config{Tier: "unlimited", Seed: 1})
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	return s
}

// serve sends body to path through s.ServeHTTP with valid credentials; version picks
// the API version (and the auth header the matching SDK sends).
func serve(s *emulator.Server, path string, body []byte, version uint8) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if version%2 == 0 {
		req.Header.Set("X-Api-Key", "sk-ant-fuzz")
		req.Header.Set("Anthropic-Version", emulator.Version2023)
	} else {
		req.Header.Set("Authorization", "Bearer sk-ant-fuzz")
		req.Header.Set("Anthropic-Version", emulator.Version2026)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// checkErrorEnvelope fails unless rec is an API error: the JSON envelope, a status
// matching its type, and the request id of the request-id header.
func checkErrorEnvelope(t *testing.T, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("body %q: status %d, want no 5xx: %s", body, rec.Code, rec.Body.Bytes())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("body %q: error Content-Type = %q, want application/json", body, ct)
	}
	var env struct {
		Type  *string `json:"type"`
		Error *struct {
			Type    *string           `json:"type"`
			Message *string           `json:"message"`
			Details map[string]string `json:"details"`
		} `json:"error"`
		RequestID *string `json:"request_id"`
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		t.Fatalf("body %q: error response %s is not an envelope: %v", body, rec.Body.Bytes(), err)
	}
	switch {
	case env.Type == nil || *env.Type != "error":
		t.Fatalf("body %q: envelope type = %v, want error: %s", body, env.Type, rec.Body.Bytes())
	case env.Error == nil || env.Error.Type == nil || env.Error.Message == nil || *env.Error.Message == "":
		t.Fatalf("body %q: envelope %s lacks error.type or error.message", body, rec.Body.Bytes())
	case wire.StatusOf(*env.Error.Type) != rec.Code:
		t.Fatalf("body %q: status %d for error type %s, want %d", body, rec.Code, *env.Error.Type, wire.StatusOf(*env.Error.Type))
	case env.RequestID == nil || !strings.HasPrefix(*env.RequestID, "req_") || *env.RequestID != rec.Header().Get("request-id"):
		t.Fatalf("body %q: request_id = %v, header %q, want the same req_ id", body, env.RequestID, rec.Header().Get("request-id"))
	}
}

func FuzzMessagesHandler(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b), uint8(0))
		f.Add([]byte(b), uint8(1))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte, version uint8) {
		rec := serve(s, "/v1/messages", body, version)
		if rec.Code != http.StatusOK {
			checkErrorEnvelope(t, body, rec)
			return
		}
		switch ct := rec.Header().Get("Content-Type"); ct {
		case "application/json":
			var msg emulator.Message
			if err := json.Unmarshal(rec.Body.Bytes(), &msg); err != nil || msg.Type != "message" || msg.StopReason == nil || len(msg.Content) == 0 {
				t.Fatalf("body %q: 200 response %s is not a message: %v", body, rec.Body.Bytes(), err)
			}
		case "text/event-stream; charset=utf-8":
			out := rec.Body.String()
			if !strings.HasPrefix(out, "event: message_start\n") || !strings.HasSuffix(out, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n") {
				t.Fatalf("body %q: stream is not message_start … message_stop:\n%s", body, out)
			}
		default:
			t.Fatalf("body %q: 200 with Content-Type %q", body, ct)
		}
	})
}

func FuzzCountTokensHandler(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b), uint8(0))
		f.Add([]byte(b), uint8(1))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte, version uint8) {
		rec := serve(s, "/v1/messages/count_tokens", body, version)
		if rec.Code != http.StatusOK {
			checkErrorEnvelope(t, body, rec)
			return
		}
		var got struct {
			InputTokens *int64 `json:"input_tokens"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.InputTokens == nil || *got.InputTokens < 1 {
			t.Fatalf("body %q: 200 response %s, want {\"input_tokens\": n ≥ 1}", body, rec.Body.Bytes())
		}
	})
}
