package upstream_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/upstream"
)

// TestProxyHeadersAndScrub: Proxy sends the Client's key in place of the caller's
// credentials, forwards only the version, beta and body headers, and an error body
// that echoes the key (a misbehaving proxy upstream) comes back scrubbed.
func TestProxyHeadersAndScrub(t *testing.T) {
	t.Parallel()
	const key = "sk-ant-proxy-test-key-123456"
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("request-id", "req_echo_"+r.Header.Get("x-api-key"))
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"bad key `+r.Header.Get("x-api-key")+`"}}`)
	}))
	defer srv.Close()
	c, err := upstream.New(upstream.Config{BaseURL: srv.URL, APIKey: upstream.NewSecret(key)})
	if err != nil {
		t.Fatal(err)
	}
	in := http.Header{}
	in.Set("x-api-key", "client-key")
	in.Set("Authorization", "Bearer client-key")
	in.Set("Cookie", "session=1")
	in.Set("anthropic-version", "2026-10-21")
	in.Add("anthropic-beta", "a-1")
	in.Add("anthropic-beta", "b-2")
	in.Set("Content-Type", "application/json")
	resp, err := c.Proxy(context.Background(), upstream.ProxyRequest{Method: http.MethodPost, Path: "/v1/messages",
		Body: strings.NewReader(`{}`), ContentLength: 2, Header: in})
	if err != nil {
		t.Fatal(err)
	}
	if got.Get("x-api-key") != key || got.Get("Authorization") != "" || got.Get("Cookie") != "" {
		t.Errorf("upstream got x-api-key %q, Authorization %q, Cookie %q; want the Client's key only",
			got.Get("x-api-key"), got.Get("Authorization"), got.Get("Cookie"))
	}
	if got.Get("anthropic-version") != "2026-10-21" || strings.Join(got.Values("anthropic-beta"), ",") != "a-1,b-2" {
		t.Errorf("upstream got anthropic-version %q, anthropic-beta %q; want the caller's", got.Get("anthropic-version"), got.Values("anthropic-beta"))
	}
	ae := c.ReadAPIError(resp)
	if ae.Status != 400 || ae.Type != "invalid_request_error" {
		t.Errorf("ReadAPIError = %d %s, want 400 invalid_request_error", ae.Status, ae.Type)
	}
	if strings.Contains(string(ae.Body), key) || strings.Contains(ae.RequestID, key) || strings.Contains(ae.Error(), key) {
		t.Errorf("the key survived in the error: body %s, request id %s", ae.Body, ae.RequestID)
	}
}
