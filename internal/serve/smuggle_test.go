package serve_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/clade-dev/clade/internal/testkit"
)

// received is one request as the fake upstream read it off the wire.
type received struct{ method, uri string }

// wireUpstream is a fake API that records every request it receives and answers
// each with a 200, so that anything the gateway lets through shows as a success.
type wireUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

func startWireUpstream(t *testing.T) *wireUpstream {
	t.Helper()
	u := &wireUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, received{r.Method, r.RequestURI})
		u.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/results") {
			w.Header().Set("Content-Type", "application/x-jsonl")
			io.WriteString(w, `{"custom_id":"a","result":{"type":"canceled"}}`+"\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d","type":"message_batch"}`)
	}))
	t.Cleanup(u.Close)
	return u
}

// since returns the requests received after the first n.
func (u *wireUpstream) since(n int) []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.reqs[n:]...)
}

func (u *wireUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// rawCall writes "method target HTTP/1.1" with a client key and body on a new TCP
// connection to the gateway at base, byte for byte as given (no client in between
// to clean or re-escape the target), and returns the response's status and body.
func rawCall(t *testing.T, base, method, target, body string) (int, []byte) {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nx-api-key: %s\r\nanthropic-version: 2023-06-01\r\n"+
		"content-type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		method, target, host, clientKey, len(body), body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: no response: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

const (
	testBatchID = "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"
	testModelID = "claude-sonnet-4-5-20250929"
)

// TestServeRefusesSmuggledPaths: a client with a valid key cannot reach an API path
// the gateway does not route (files, organisations, other batches' siblings) by
// encoding, dot segments, doubled slashes, backslashes or parameters in a batch or
// model id, nor send a method the API does not have there: each gets the API's 404
// not_found_error from the gateway itself, not a redirect, and the upstream receives
// nothing. The same sender's legitimate calls reach the upstream with exactly the
// target sent, so the attempts did go on the wire as written.
func TestServeRefusesSmuggledPaths(t *testing.T) {
	t.Parallel()
	up := startWireUpstream(t)
	gw := startGateway(t, setup{upURL: up.URL})
	host := strings.TrimPrefix(gw.URL, "http://")

	attempts := []struct {
		name   string
		method string
		target string
	}{
		{name: "encoded slashes in batch id to models", method: "GET", target: "/v1/messages/batches/..%2f..%2fmodels"},
		{name: "encoded slashes in batch id to files", method: "GET", target: "/v1/messages/batches/..%2f..%2ffiles"},
		{name: "encoded slashes in batch id to organizations", method: "GET", target: "/v1/messages/batches/..%2f..%2forganizations%2fapi_keys"},
		{name: "upper-case encoded slashes", method: "GET", target: "/v1/messages/batches/..%2F..%2Fmodels"},
		{name: "encoded slashes in batch id before results", method: "GET", target: "/v1/messages/batches/..%2f..%2ffiles/results"},
		{name: "encoded slashes in model id", method: "GET", target: "/v1/models/..%2ffiles"},
		{name: "encoded slashes inside model id", method: "GET", target: "/v1/models/" + testModelID + "%2f..%2f..%2ffiles"},
		{name: "dot-dot segments", method: "GET", target: "/v1/messages/batches/../../models"},
		{name: "dot-dot in model id position", method: "GET", target: "/v1/models/../files"},
		{name: "encoded dot-dot", method: "GET", target: "/v1/messages/batches/%2e%2e/%2e%2e/models"},
		{name: "half-encoded dot-dot", method: "GET", target: "/v1/models/.%2e"},
		{name: "upper-case encoded dot-dot", method: "GET", target: "/v1/messages/batches/%2E%2E/%2E%2E/files"},
		{name: "dot segment", method: "GET", target: "/v1/messages/batches/./" + testBatchID},
		{name: "encoded dot in id", method: "GET", target: "/v1/models/" + testModelID + "%2e"},
		{name: "double slash", method: "GET", target: "/v1/messages/batches//" + testBatchID},
		{name: "leading double slash", method: "GET", target: "//v1/models"},
		{name: "backslashes", method: "GET", target: `/v1/messages/batches/..\..\models`},
		{name: "encoded backslashes", method: "GET", target: "/v1/messages/batches/..%5c..%5cmodels"},
		{name: "encoded question mark", method: "GET", target: "/v1/messages/batches/" + testBatchID + "%3Fx=1"},
		{name: "encoded hash", method: "GET", target: "/v1/models/" + testModelID + "%23x"},
		{name: "encoded letter", method: "GET", target: "/v1/m%6fdels"},
		{name: "encoded NUL", method: "GET", target: "/v1/models/" + testModelID + "%00"},
		{name: "semicolon parameter on model id", method: "GET", target: "/v1/models/" + testModelID + ";x=1"},
		{name: "semicolon parameter on batch id", method: "GET", target: "/v1/messages/batches/" + testBatchID + ";jsessionid=1/results"},
		{name: "overlong batch id", method: "GET", target: "/v1/messages/batches/msgbatch_" + strings.Repeat("a", 200)},
		{name: "overlong model id", method: "GET", target: "/v1/models/claude-" + strings.Repeat("9", 200)},
		{name: "unknown batch sub-path", method: "GET", target: "/v1/messages/batches/" + testBatchID + "/foo"},
		{name: "deeper batch sub-path", method: "GET", target: "/v1/messages/batches/" + testBatchID + "/results/x"},
		{name: "files", method: "GET", target: "/v1/files"},
		{name: "organizations", method: "GET", target: "/v1/organizations/api_keys"},
		{name: "put on a batch", method: "PUT", target: "/v1/messages/batches/" + testBatchID},
		{name: "patch on batches", method: "PATCH", target: "/v1/messages/batches"},
		{name: "delete on batches", method: "DELETE", target: "/v1/messages/batches"},
		{name: "post on results", method: "POST", target: "/v1/messages/batches/" + testBatchID + "/results"},
		{name: "get on cancel", method: "GET", target: "/v1/messages/batches/" + testBatchID + "/cancel"},
		{name: "delete on a model", method: "DELETE", target: "/v1/models/" + testModelID},
		{name: "get on count_tokens", method: "GET", target: "/v1/messages/count_tokens"},
		{name: "head on models", method: "HEAD", target: "/v1/models"},
		{name: "trailing slash on batches", method: "GET", target: "/v1/messages/batches/"},
		{name: "trailing slash on a batch", method: "GET", target: "/v1/messages/batches/" + testBatchID + "/"},
		{name: "trailing slash on results", method: "GET", target: "/v1/messages/batches/" + testBatchID + "/results/"},
		{name: "trailing slash on models", method: "GET", target: "/v1/models/"},
		{name: "trailing slash on messages", method: "POST", target: "/v1/messages/"},
		{name: "absolute-form with encoded slashes", method: "GET", target: "http://" + host + "/v1/messages/batches/..%2f..%2fmodels"},
	}
	for _, tc := range attempts {
		t.Run(tc.name, func(t *testing.T) {
			before := up.count()
			code, b := rawCall(t, gw.URL, tc.method, tc.target, "")
			if got := up.since(before); len(got) > 0 {
				t.Errorf("%s %s reached the upstream as %v, want nothing sent upstream", tc.method, tc.target, got)
			}
			if code != http.StatusNotFound {
				t.Fatalf("%s %s = %d %q, want 404 not_found_error", tc.method, tc.target, code, b[:min(len(b), 200)])
			}
			if tc.method == "HEAD" {
				return // no body to hold the envelope
			}
			var e envelope
			if err := json.Unmarshal(b, &e); err != nil || e.Type != "error" || e.Error.Type != "not_found_error" ||
				!strings.HasPrefix(e.RequestID, "req_clade_") {
				t.Fatalf("%s %s = 404 %q, want the API's not_found_error envelope written by the gateway", tc.method, tc.target, b)
			}
			// The gateway names the path as it read it: the bytes went on the wire as
			// written, no client cleaned them on the way.
			path, _, _ := strings.Cut(strings.TrimPrefix(tc.target, "http://"+host), "?")
			if want := "Not found: " + tc.method + " " + path; e.Error.Message != want {
				t.Errorf("%s %s: message %q, want %q", tc.method, tc.target, e.Error.Message, want)
			}
		})
	}
	if got := up.count(); got != 0 {
		t.Errorf("the upstream received %d requests from the smuggling attempts, want 0: %v", got, up.since(0))
	}
	refused := testkit.MetricSum(t, gw.reg, "clade_serve_requests_total", map[string]string{"team": "none", "endpoint": "other", "code": "404"})
	if refused != float64(len(attempts)) {
		t.Errorf(`clade_serve_requests_total{team="none",endpoint="other",code="404"} = %v, want %d (every attempt)`, refused, len(attempts))
	}

	// The legitimate calls, through the same sender, arrive upstream exactly as sent.
	for _, tc := range []struct {
		method string
		target string
		body   string
	}{
		{method: "GET", target: "/v1/messages/batches"},
		{method: "GET", target: "/v1/messages/batches?limit=2&after_id=" + testBatchID},
		{method: "POST", target: "/v1/messages/batches", body: `{"requests":[]}`},
		{method: "GET", target: "/v1/messages/batches/" + testBatchID},
		{method: "POST", target: "/v1/messages/batches/" + testBatchID + "/cancel"},
		{method: "DELETE", target: "/v1/messages/batches/" + testBatchID},
		{method: "GET", target: "/v1/messages/batches/" + testBatchID + "/results"},
		{method: "GET", target: "/v1/models"},
		{method: "GET", target: "/v1/models?limit=5&beta=true"},
		{method: "GET", target: "/v1/models/" + testModelID},
		{method: "POST", target: "/v1/messages/count_tokens?beta=true", body: `{"model":"` + testModelID + `","messages":[]}`},
	} {
		before := up.count()
		code, b := rawCall(t, gw.URL, tc.method, tc.target, tc.body)
		got := up.since(before)
		if code != http.StatusOK || len(got) != 1 || got[0] != (received{tc.method, tc.target}) {
			t.Errorf("%s %s = %d %q, upstream received %v; want 200 and exactly [{%s %s}]",
				tc.method, tc.target, code, b[:min(len(b), 200)], got, tc.method, tc.target)
		}
	}
}
