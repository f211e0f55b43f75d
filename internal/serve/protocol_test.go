package serve_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

// TestServeClientBodyBroken: a client whose body cannot be read (its chunked
// encoding breaks off midway) gets the API's 400, not a 502 that blames the upstream,
// and the operator's log does not say the upstream failed.
func TestServeClientBodyBroken(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{})
	host := strings.TrimPrefix(gw.URL, "http://")
	for _, path := range []string{"/v1/messages", "/v1/messages/count_tokens"} {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		part := `{"model":"claude-haiku-4-5","max_tokens":10,"messages":[`
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nx-api-key: %s\r\nanthropic-version: 2023-06-01\r\n"+
			"content-type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\nzz\r\n",
			path, host, clientKey, len(part), part)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("POST %s with a broken body: no response: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		var e envelope
		if resp.StatusCode != 400 || json.Unmarshal(b, &e) != nil || e.Error.Type != "invalid_request_error" {
			t.Errorf("POST %s with a broken body = %d %s, want 400 invalid_request_error", path, resp.StatusCode, b)
		}
	}
	if logs := gw.logs.String(); strings.Contains(logs, `level=WARN msg="upstream call failed"`) {
		t.Errorf("logs blame the upstream for a client's broken body:\n%s", logs)
	}
}
