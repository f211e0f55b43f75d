package emulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/emulator"
)

// rawPost sends body to path with the given headers and returns status, headers and body.
func rawDo(t *testing.T, method, url string, body io.Reader, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

var v1Headers = map[string]string{"x-api-key": testKey, "anthropic-version": "2023-06-01", "content-type": "application/json"}

type envelope struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID *string `json:"request_id"`
}

func TestErrorEnvelopes(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", APIKeys: []string{testKey}})
	noVersion := map[string]string{"x-api-key": testKey}
	badKey := map[string]string{"x-api-key": "sk-wrong", "anthropic-version": "2023-06-01"}
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		header  map[string]string
		status  int
		errType string
		msgHas  string
	}{
		{"malformed json", "POST", "/v1/messages", `{"model":`, v1Headers, 400, "invalid_request_error", "parsing the body"},
		{"not an object", "POST", "/v1/messages", `[1,2]`, v1Headers, 400, "invalid_request_error", "JSON object"},
		{"missing model", "POST", "/v1/messages", `{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, v1Headers, 400, "invalid_request_error", "model: Field required"},
		{"missing max_tokens", "POST", "/v1/messages", `{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}`, v1Headers, 400, "invalid_request_error", "max_tokens: Field required"},
		{"missing messages", "POST", "/v1/messages", `{"model":"claude-haiku-4-5","max_tokens":5}`, v1Headers, 400, "invalid_request_error", "messages: Field required"},
		{"wrong type", "POST", "/v1/messages", `{"model":"claude-haiku-4-5","max_tokens":"5","messages":[]}`, v1Headers, 400, "invalid_request_error", "max_tokens: Input should be a valid integer"},
		{"extra field", "POST", "/v1/messages", `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"colour":1}`, v1Headers, 400, "invalid_request_error", "colour: Extra inputs are not permitted"},
		{"bad role", "POST", "/v1/messages", `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"robot","content":"hi"}]}`, v1Headers, 400, "invalid_request_error", "messages.0.role"},
		{"max_tokens above model", "POST", "/v1/messages", `{"model":"claude-haiku-4-5-20251001","max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}`, v1Headers, 400, "invalid_request_error", "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5-20251001"},
		{"unknown model", "POST", "/v1/messages", `{"model":"claude-nope","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, v1Headers, 404, "not_found_error", "model: claude-nope"},
		{"clade alias is not an API id", "POST", "/v1/messages", `{"model":"haiku","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, v1Headers, 404, "not_found_error", "model: haiku"},
		{"no version", "POST", "/v1/messages", `{}`, noVersion, 400, "invalid_request_error", "anthropic-version: header is required"},
		{"bad key", "POST", "/v1/messages", `{}`, badKey, 401, "authentication_error", "invalid x-api-key"},
		{"no key", "GET", "/v1/models", ``, map[string]string{"anthropic-version": "2023-06-01"}, 401, "authentication_error", ""},
		{"unknown path", "GET", "/v1/nothing", ``, v1Headers, 404, "not_found_error", ""},
		{"unknown model info", "GET", "/v1/models/claude-nope", ``, v1Headers, 404, "not_found_error", "claude-nope"},
		{"count_tokens takes no max_tokens", "POST", "/v1/messages/count_tokens", `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, v1Headers, 400, "invalid_request_error", "max_tokens: Extra inputs"},
		{"bad list limit", "GET", "/v1/models?limit=0", ``, v1Headers, 400, "invalid_request_error", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, h, body := rawDo(t, tt.method, em.URL+tt.path, strings.NewReader(tt.body), tt.header)
			if status != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", status, tt.status, body)
			}
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var env envelope
			if err := json.Unmarshal(body, &env); err != nil {
				t.Fatalf("body %s is not JSON: %v", body, err)
			}
			if env.Type != "error" || env.Error.Type != tt.errType {
				t.Errorf("envelope = %+v, want type error / %s", env, tt.errType)
			}
			if !strings.Contains(env.Error.Message, tt.msgHas) {
				t.Errorf("message %q does not contain %q", env.Error.Message, tt.msgHas)
			}
			rid := h.Get("request-id")
			if !strings.HasPrefix(rid, "req_") || env.RequestID == nil || *env.RequestID != rid {
				t.Errorf("request-id header %q and body request_id %v must match", rid, env.RequestID)
			}
		})
	}
}

func TestOversizeBodyIs413(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	// Declare a body just over 32 MB; the emulator refuses it from the header alone.
	req, _ := http.NewRequest("POST", em.URL+"/v1/messages", io.LimitReader(zeroReader{}, emulator.MaxMessageBody+1))
	req.ContentLength = emulator.MaxMessageBody + 1
	for k, v := range v1Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || !bytes.Contains(body, []byte(`"request_too_large"`)) {
		t.Errorf("oversize body: %d %s, want 413 request_too_large", resp.StatusCode, body)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestSDKErrorTypes(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", APIKeys: []string{testKey}})
	ctx := context.Background()

	// v2 (Bearer) with an unknown model: 404 not_found_error with the request id.
	c2 := clientV2(em.URL)
	_, err := c2.Messages.New(ctx, userText("claude-unknown", 10, "hi"))
	var e2 *anthropic.Error
	if !errors.As(err, &e2) || e2.StatusCode != 404 || e2.Type() != "not_found_error" || !strings.HasPrefix(e2.RequestID, "req_") {
		t.Errorf("v2 unknown model: %v, want 404 not_found_error with a request id", err)
	}
	// v2 with a wrong key: 401.
	bad := clientV2(em.URL, option.WithAPIKey("sk-wrong"))
	_, err = bad.Messages.New(ctx, userText("claude-haiku-4-5", 10, "hi"))
	if !errors.As(err, &e2) || e2.StatusCode != 401 || e2.Type() != "authentication_error" {
		t.Errorf("v2 bad key: %v, want 401 authentication_error", err)
	}
	// v1 (x-api-key, 2023-06-01) with max_tokens over the model's (4,096): 400.
	c1 := clientV1(em.URL)
	_, err = c1.Messages.New(ctx, anthropic1.MessageNewParams{
		Model: "claude-3-haiku-20240307", MaxTokens: 5000,
		Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("hi"))},
	})
	var e1 *anthropic1.Error
	if !errors.As(err, &e1) || e1.StatusCode != 400 || !strings.Contains(e1.RawJSON(), "invalid_request_error") {
		t.Errorf("v1 max_tokens too high: %v, want 400 invalid_request_error", err)
	}
}

func TestAPIVersionsAndAuthStyles(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", APIKeys: []string{testKey}})
	body := `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"system","content":[{"type":"text","text":"be brief"}]},{"role":"user","content":"hi"}]}`
	// The 2026-10-21 version accepts role "system" in messages; 2023-06-01 does not.
	status, _, b := rawDo(t, "POST", em.URL+"/v1/messages", strings.NewReader(body), map[string]string{
		"authorization": "Bearer " + testKey, "anthropic-version": "2026-10-21", "content-type": "application/json"})
	if status != 200 {
		t.Errorf("Bearer + 2026-10-21 with a system message: %d %s, want 200", status, b)
	}
	status, _, b = rawDo(t, "POST", em.URL+"/v1/messages", strings.NewReader(body), v1Headers)
	if status != 400 {
		t.Errorf("x-api-key + 2023-06-01 with a system message: %d %s, want 400", status, b)
	}
	status, _, _ = rawDo(t, "GET", em.URL+"/v1/models", nil, map[string]string{"anthropic-version": "2023-06-10", "x-api-key": testKey})
	if status != 400 {
		t.Errorf("unknown anthropic-version: %d, want 400", status)
	}
}

func TestModelsListAndGet(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{})
	ctx := context.Background()
	c := clientV2(em.URL)
	var ids []string
	iter := c.Models.ListAutoPaging(ctx, anthropic.ModelListParams{Limit: anthropic.Int(3)})
	for iter.Next() {
		ids = append(ids, iter.Current().ID)
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("ListAutoPaging: %v", err)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("model %s listed twice across pages", id)
		}
		seen[id] = true
	}
	for _, want := range []string{"claude-haiku-4-5", "claude-sonnet-5", "claude-opus-4-8", "claude-fable-5"} {
		if !seen[want] {
			t.Errorf("models list lacks %s (got %v)", want, ids)
		}
	}
	page, err := c.Models.List(ctx, anthropic.ModelListParams{Limit: anthropic.Int(2)})
	if err != nil || len(page.Data) != 2 || !page.HasMore || page.LastID != page.Data[1].ID {
		t.Errorf("List(limit 2) = %+v, %v; want 2 items, has_more, last_id", page, err)
	}
	c1 := clientV1(em.URL)
	m, err := c1.Models.Get(ctx, "claude-haiku-4-5-20251001", anthropic1.ModelGetParams{})
	if err != nil || m.MaxTokens != 64000 || m.ID != "claude-haiku-4-5-20251001" {
		t.Errorf("v1 Models.Get = %+v, %v; want haiku 4.5 with max_tokens 64000", m, err)
	}
}
