package serve_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// envelope is the API's error body.
type envelope struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

// do sends method path with body (chunked when chunked) and a client key, and returns
// the status, the request-id header and the body.
func do(t *testing.T, method, url string, body io.Reader, chunked bool) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if chunked {
		req.ContentLength = -1
	}
	req.Header.Set("x-api-key", clientKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// bigBody is a Messages body just over the API's 32 MB limit.
func bigBody() io.Reader {
	pad := strings.Repeat("a", 32<<20)
	return strings.NewReader(`{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"` + pad + `"}]}`)
}

// TestServeErrorsLikeTheAPI: what the gateway answers itself (a body over the API's
// limit, a path or method the API does not have) comes in the API's error envelope
// with the API's status and a request-id, whichever endpoint and however the body
// was sent.
func TestServeErrorsLikeTheAPI(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{})
	for _, tc := range []struct {
		name     string
		method   string
		path     string
		body     func() io.Reader
		chunked  bool
		status   int
		wantType string
	}{
		{name: "messages too large", method: "POST", path: "/v1/messages", body: bigBody, status: 413, wantType: "request_too_large"},
		{name: "messages too large chunked", method: "POST", path: "/v1/messages", body: bigBody, chunked: true, status: 413, wantType: "request_too_large"},
		{name: "count_tokens too large", method: "POST", path: "/v1/messages/count_tokens", body: bigBody, status: 413, wantType: "request_too_large"},
		{name: "count_tokens too large chunked", method: "POST", path: "/v1/messages/count_tokens", body: bigBody, chunked: true, status: 413, wantType: "request_too_large"},
		{name: "unknown v1 path", method: "GET", path: "/v1/nothing", status: 404, wantType: "not_found_error"},
		{name: "wrong method", method: "GET", path: "/v1/messages", status: 404, wantType: "not_found_error"},
		{name: "unknown path", method: "GET", path: "/nothing", status: 404, wantType: "not_found_error"},
		{name: "unknown path post", method: "POST", path: "/v2/messages", status: 404, wantType: "not_found_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			code, h, b := do(t, tc.method, gw.URL+tc.path, body, tc.chunked)
			var e envelope
			err := json.Unmarshal(b, &e)
			if code != tc.status || err != nil || e.Type != "error" || e.Error.Type != tc.wantType || e.Error.Message == "" ||
				e.RequestID == "" || h.Get("request-id") != e.RequestID || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Errorf("%s %s = %d %s %q, want %d with the API's %s envelope and request-id", tc.method, tc.path, code,
					h.Get("Content-Type"), b[:min(len(b), 300)], tc.status, tc.wantType)
			}
			if tc.status == 413 && !tc.chunked && !strings.HasPrefix(e.RequestID, "req_clade_") {
				t.Errorf("%s %s with a Content-Length over the limit was answered by upstream (%s), want the gateway to refuse it before sending",
					tc.method, tc.path, e.RequestID)
			}
		})
	}
}
