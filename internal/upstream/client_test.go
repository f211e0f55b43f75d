package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/upstream"
)

const testKey = "sk-ant-api03-upstream-test-key-0123456789abcdef"

// params is a valid Messages body with the odd spacing and field order a user's file
// may have, to check it reaches the API byte for byte.
const params = `{ "messages":[{"role":"user","content":"Say hi"}],  "max_tokens": 64, "model":"claude-haiku-4-5"}`

func newClient(t *testing.T, baseURL string, mod ...func(*upstream.Config)) *upstream.Client {
	t.Helper()
	cfg := upstream.Config{BaseURL: baseURL, APIKey: upstream.NewSecret(testKey)}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := upstream.New(cfg)
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	return c
}

func startEmulator(t *testing.T, cfg emulator.Config) *emulator.Running {
	t.Helper()
	if cfg.APIKeys == nil {
		cfg.APIKeys = []string{testKey}
	}
	return emulator.StartTB(t, cfg)
}

// recorder is a reverse proxy in front of the real emulator that keeps what the
// client sent: the emulator stays the server, the proxy only watches the wire.
type recorder struct {
	mu   sync.Mutex
	seen []seenRequest
}

// seenRequest is one request as it reached the recorder.
type seenRequest struct {
	uri    string // path and query, as sent
	header http.Header
	body   []byte
	length int64 // Content-Length; -1 when sent chunked
}

// requests returns the requests seen so far.
func (rec *recorder) requests() []seenRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.seen)
}

// last returns the last request seen, failing the test if there is none.
func (rec *recorder) last(t *testing.T) seenRequest {
	t.Helper()
	seen := rec.requests()
	if len(seen) == 0 {
		t.Fatal("no request reached the recorder")
	}
	return seen[len(seen)-1]
}

func (rec *recorder) start(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, seenRequest{uri: r.URL.RequestURI(), header: r.Header.Clone(), body: body, length: r.ContentLength})
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestMessagesSuccess(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{Seed: 7})
	var rec recorder
	c := newClient(t, rec.start(t, em.URL))
	before := time.Now()
	resp, err := c.Messages(context.Background(), []byte(params))
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if resp.Status != 200 || !bytes.HasPrefix(resp.Body, []byte("{")) || !bytes.Contains(resp.Body, []byte(`"type":"message"`)) {
		t.Errorf("Messages = status %d body %.80s, want 200 and the message JSON", resp.Status, resp.Body)
	}
	if !strings.HasPrefix(resp.ID, "msg_") || resp.Model != "claude-haiku-4-5" {
		t.Errorf("ID, Model = %q, %q, want msg_..., claude-haiku-4-5", resp.ID, resp.Model)
	}
	if resp.StopReason != "end_turn" && resp.StopReason != "max_tokens" {
		t.Errorf("StopReason = %q, want end_turn or max_tokens", resp.StopReason)
	}
	if resp.Usage.InputTokens <= 0 || resp.Usage.OutputTokens <= 0 || resp.Usage.ServiceTier != "standard" {
		t.Errorf("Usage = %+v, want input and output tokens, service tier standard", resp.Usage)
	}
	if !strings.HasPrefix(resp.RequestID, "req_") || resp.RateLimit.RequestID != resp.RequestID {
		t.Errorf("RequestID = %q (rate-limit %q), want req_...", resp.RequestID, resp.RateLimit.RequestID)
	}
	rl := resp.RateLimit
	for name, s := range map[string]struct {
		valid        bool
		limit, remai int64
		reset        time.Time
	}{
		"requests":      {rl.Requests.Valid, rl.Requests.Limit, rl.Requests.Remaining, rl.Requests.Reset},
		"input-tokens":  {rl.InputTokens.Valid, rl.InputTokens.Limit, rl.InputTokens.Remaining, rl.InputTokens.Reset},
		"output-tokens": {rl.OutputTokens.Valid, rl.OutputTokens.Limit, rl.OutputTokens.Remaining, rl.OutputTokens.Reset},
		"tokens":        {rl.Tokens.Valid, rl.Tokens.Limit, rl.Tokens.Remaining, rl.Tokens.Reset},
	} {
		if !s.valid || s.limit <= 0 || s.remai < 0 || s.remai > s.limit || s.reset.Before(before.Add(-time.Second)) {
			t.Errorf("rate limit %s = %+v, want valid with a reset from now on", name, s)
		}
	}
	if rl.Requests.Limit != 1000 || rl.Requests.Remaining != 999 {
		t.Errorf("requests limit/remaining = %d/%d, want 1000/999 (start tier, one request)", rl.Requests.Limit, rl.Requests.Remaining)
	}

	seen := rec.requests()
	if len(seen) != 1 || string(seen[0].body) != params {
		t.Fatalf("%d requests on the wire (last %q), want one with the params byte for byte", len(seen), rec.last(t).body)
	}
	h := seen[0].header
	for k, want := range map[string]string{
		"X-Api-Key": testKey, "Anthropic-Version": "2023-06-01", "Content-Type": "application/json",
		"Accept": "application/json", "Authorization": "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func TestMessagesBearer2026(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{})
	var rec recorder
	c := newClient(t, rec.start(t, em.URL), func(c *upstream.Config) { c.Auth = upstream.AuthBearer; c.Beta = "a,b" })
	if _, err := c.Messages(context.Background(), []byte(params)); err != nil {
		t.Fatalf("Messages with Bearer: %v", err)
	}
	h := rec.last(t).header
	for k, want := range map[string]string{
		"Authorization": "Bearer " + testKey, "Anthropic-Version": "2026-10-21", "X-Api-Key": "", "Anthropic-Beta": "a,b",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func TestMessagesBaseURLPath(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{})
	// A base URL with a path prefix: a proxy strips it before the emulator.
	srv := httptest.NewServer(http.StripPrefix("/prefix", em.Server))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL+"/prefix/")
	if _, err := c.Messages(context.Background(), []byte(params)); err != nil {
		t.Fatalf("Messages via /prefix/: %v", err)
	}
}

func TestMessagesCacheUsage(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{})
	c := newClient(t, em.URL)
	system := strings.Repeat("wxyz", 5000)
	body := func(q string) []byte {
		return []byte(`{"model":"claude-sonnet-5","max_tokens":20,"system":[{"type":"text","text":"` + system +
			`","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"` + q + `"}]}`)
	}
	first, err := c.Messages(context.Background(), body("first"))
	if err != nil {
		t.Fatalf("first: %v", err)
	}
	if first.Usage.CacheCreationInputTokens < 5000 || first.Usage.CacheReadInputTokens != 0 ||
		first.Usage.CacheCreation.Ephemeral5m != first.Usage.CacheCreationInputTokens {
		t.Errorf("first Usage = %+v, want a 5m cache write of the system prompt", first.Usage)
	}
	second, err := c.Messages(context.Background(), body("second"))
	if err != nil {
		t.Fatalf("second: %v", err)
	}
	if second.Usage.CacheReadInputTokens != first.Usage.CacheCreationInputTokens || second.Usage.CacheCreationInputTokens != 0 {
		t.Errorf("second Usage = %+v, want a cache read of %d", second.Usage, first.Usage.CacheCreationInputTokens)
	}
}

func TestCountTokens(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{})
	c := newClient(t, em.URL)
	got, err := c.CountTokens(context.Background(), []byte(`{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"`+strings.Repeat("abcd", 100)+`"}]}`))
	if err != nil {
		t.Fatalf("CountTokens: %v", err)
	}
	if got.InputTokens < 100 || !strings.HasPrefix(got.RequestID, "req_") {
		t.Errorf("CountTokens = %+v, want about 100+ tokens and a request id", got)
	}
	_, err = c.CountTokens(context.Background(), []byte(`{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`))
	var ae *upstream.APIError
	if !errors.As(err, &ae) || ae.Status != 400 || upstream.Classify(err) != upstream.Final {
		t.Errorf("CountTokens with max_tokens: %v, want a Final 400", err)
	}
}

// tinyCatalog is the default catalog with a tier "tiny" whose limits a test can cross
// (as in emulator/ratelimit_test.go).
func tinyCatalog(t *testing.T, rpm, itpm, otpm int64) *catalog.Catalog {
	t.Helper()
	yaml := "tiers:\n  tiny:\n    batch: {rpm: 1000, queue: 1000, max_requests: 100000}\n    limits:\n      default: {rpm: " +
		strconv.FormatInt(rpm, 10) + ", itpm: " + strconv.FormatInt(itpm, 10) + ", otpm: " + strconv.FormatInt(otpm, 10) + "}\n"
	c, err := catalog.Overlay(catalog.Default(), []byte(yaml))
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	return c
}

// TestErrorClasses sends requests the real emulator answers with each kind of error
// and checks the APIError fields and the class.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      emulator.Config
		key      string // default testKey
		warmup   int    // successful requests first
		body     string
		want     upstream.Class
		status   int    // 0: a TransportError
		typ      string // error.type
		code     string // details.error_code
		retryAft bool
		should   int
	}{
		{name: "404 unknown model", body: `{"model":"claude-nonesuch","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`,
			want: upstream.Final, status: 404, typ: "not_found_error"},
		{name: "400 missing max_tokens", body: `{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"x"}]}`,
			want: upstream.Final, status: 400, typ: "invalid_request_error"},
		{name: "400 not json", body: `{"model":`, want: upstream.Final, status: 400, typ: "invalid_request_error"},
		{name: "401 bad key", key: "sk-ant-wrong-key-000000000000", body: params,
			want: upstream.Stop, status: 401, typ: "authentication_error"},
		{name: "429 rpm", cfg: emulator.Config{Catalog: tinyCatalog(t, 1, 1e6, 1e6), Tier: "tiny"}, warmup: 1, body: params,
			want: upstream.RateLimited, status: 429, typ: "rate_limit_error", retryAft: true},
		{name: "529 overloaded", cfg: emulator.Config{Faults: emulator.Faults{Overloaded: 1}}, body: params,
			want: upstream.Overloaded, status: 529, typ: "overloaded_error", should: 1},
		{name: "500 api_error", cfg: emulator.Config{Faults: emulator.Faults{ServerError: 1}}, body: params,
			want: upstream.Retry, status: 500, typ: "api_error"},
		{name: "504 timeout_error", cfg: emulator.Config{Faults: emulator.Faults{Timeout: 1}}, body: params,
			want: upstream.Retry, status: 504, typ: "timeout_error"},
		{name: "drop", cfg: emulator.Config{Faults: emulator.Faults{Drop: 1}}, body: params, want: upstream.Retry},
		{name: "spend cap", cfg: emulator.Config{Faults: emulator.Faults{SpendCap: true, SpendCapAfter: 1}}, warmup: 1, body: params,
			want: upstream.Stop, status: 429, typ: "rate_limit_error", code: upstream.CodeSpendLimit},
		{name: "ramp", cfg: emulator.Config{Faults: emulator.Faults{Ramp: 1, RampRetryAfter: 3 * time.Second}}, body: params,
			want: upstream.RateLimited, status: 429, typ: "rate_limit_error", code: upstream.CodeRampLimit, retryAft: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			em := startEmulator(t, tt.cfg)
			key := testKey
			if tt.key != "" {
				key = tt.key
			}
			c, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(key)})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tt.warmup; i++ {
				if _, err := c.Messages(context.Background(), []byte(params)); err != nil {
					t.Fatalf("warm-up %d: %v", i+1, err)
				}
			}
			resp, err := c.Messages(context.Background(), []byte(tt.body))
			if err == nil {
				t.Fatalf("Messages = %+v, want an error", resp)
			}
			if got := upstream.Classify(err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", err, got, tt.want)
			}
			if tt.status == 0 {
				var te *upstream.TransportError
				if !errors.As(err, &te) {
					t.Fatalf("error %T %v, want *TransportError", err, err)
				}
				if !te.Retryable() {
					t.Errorf("TransportError.Retryable() = false")
				}
				return
			}
			var ae *upstream.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v, want *APIError", err, err)
			}
			if ae.Status != tt.status || ae.Type != tt.typ || ae.ErrorCode != tt.code {
				t.Errorf("APIError = %d %s %q, want %d %s %q", ae.Status, ae.Type, ae.ErrorCode, tt.status, tt.typ, tt.code)
			}
			if ae.HasRetryAfter != tt.retryAft || (tt.retryAft && ae.RetryAfter < time.Second) {
				t.Errorf("retry-after = %v (sent %v), want sent %v and ≥ 1s", ae.RetryAfter, ae.HasRetryAfter, tt.retryAft)
			}
			if ae.ShouldRetry != tt.should {
				t.Errorf("ShouldRetry = %d, want %d", ae.ShouldRetry, tt.should)
			}
			if !strings.HasPrefix(ae.RequestID, "req_") || ae.Message == "" {
				t.Errorf("RequestID, Message = %q, %q, want both", ae.RequestID, ae.Message)
			}
			if !bytes.HasPrefix(ae.Body, []byte(`{"type":"error","error":{"type":"`+tt.typ)) || !bytes.Contains(ae.Body, []byte(ae.RequestID)) {
				t.Errorf("Body = %s, want the full envelope", ae.Body)
			}
			if ae.Retryable() != tt.want.Retryable() {
				t.Errorf("Retryable() = %v, want %v", ae.Retryable(), tt.want.Retryable())
			}
			if tt.status == 429 && tt.code != upstream.CodeSpendLimit && !ae.RateLimit.Requests.Valid {
				t.Errorf("429 rate-limit headers not parsed: %+v", ae.RateLimit)
			}
		})
	}
}

func TestRequestTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{Faults: emulator.Faults{Slow: 1, SlowDelay: 30 * time.Second}})

	c := newClient(t, em.URL, func(c *upstream.Config) { c.RequestTimeout = 100 * time.Millisecond })
	_, err := c.Messages(context.Background(), []byte(params))
	var te *upstream.TransportError
	if !errors.As(err, &te) || !te.Timeout || upstream.Classify(err) != upstream.Retry {
		t.Errorf("Messages past RequestTimeout: %v, want a Retry TransportError with Timeout", err)
	}

	c = newClient(t, em.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Messages(ctx, []byte(params))
	if got := upstream.Classify(err); got != upstream.Canceled || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Messages past the caller's deadline: %v (%v), want Canceled wrapping DeadlineExceeded", err, got)
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	c := newClient(t, u)
	_, err := c.Messages(context.Background(), []byte(params))
	var te *upstream.TransportError
	if !errors.As(err, &te) || upstream.Classify(err) != upstream.Retry {
		t.Errorf("Messages to a closed port: %v, want a Retry TransportError", err)
	}
}

// TestNonEnvelopeErrors covers what only a proxy in front of the API sends: an HTML
// error page, a 200 that is not a message, x-should-retry: false. The emulator cannot
// produce these, so a tiny handler does.
func TestNonEnvelopeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    upstream.Class
		status  int
		typ     string
	}{
		{name: "502 html", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			io.WriteString(w, "<html><body>Bad gateway</body></html>")
		}, want: upstream.Retry, status: 502, typ: "api_error"},
		{name: "413 cloudflare", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(413)
			io.WriteString(w, "<html>413 Request Entity Too Large</html>")
		}, want: upstream.Final, status: 413, typ: "request_too_large"},
		{name: "500 should-retry false", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("x-should-retry", "false")
			w.WriteHeader(500)
			io.WriteString(w, `{"type":"error","error":{"type":"api_error","message":"boom"},"request_id":"req_x"}`)
		}, want: upstream.Final, status: 500, typ: "api_error"},
		{name: "429 no retry-after no code", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(429)
			io.WriteString(w, `{"type":"error","error":{"type":"rate_limit_error","message":"You have reached your API usage limits"}}`)
		}, want: upstream.Stop, status: 429, typ: "rate_limit_error"},
		{name: "200 not a message", handler: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "<html>captive portal</html>")
		}, want: upstream.Retry},
		{name: "200 cut short", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `{"type":"message","usage":{`)
		}, want: upstream.Retry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			_, err := newClient(t, srv.URL).Messages(context.Background(), []byte(params))
			if got := upstream.Classify(err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", err, got, tt.want)
			}
			if tt.status == 0 {
				var te *upstream.TransportError
				if !errors.As(err, &te) {
					t.Errorf("error %T, want *TransportError", err)
				}
				return
			}
			var ae *upstream.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v, want *APIError", err, err)
			}
			if ae.Status != tt.status || ae.Type != tt.typ {
				t.Errorf("APIError = %d %s, want %d %s", ae.Status, ae.Type, tt.status, tt.typ)
			}
			if !bytes.HasPrefix(ae.Body, []byte(`{"type":"error","error":{"type":"`+tt.typ+`"`)) {
				t.Errorf("Body = %s, want an envelope of type %s", ae.Body, tt.typ)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  upstream.Config
	}{
		{"no key", upstream.Config{}},
		{"blank key", upstream.Config{APIKey: upstream.NewSecret("  \n")}},
		{"bad scheme", upstream.Config{APIKey: upstream.NewSecret(testKey), BaseURL: "ftp://x"}},
		{"no host", upstream.Config{APIKey: upstream.NewSecret(testKey), BaseURL: "http://"}},
		{"user info", upstream.Config{APIKey: upstream.NewSecret(testKey), BaseURL: "https://u:p@x"}},
		{"query", upstream.Config{APIKey: upstream.NewSecret(testKey), BaseURL: "https://x/?a=b"}},
		{"auth", upstream.Config{APIKey: upstream.NewSecret(testKey), Auth: 7}},
		{"header injection", upstream.Config{APIKey: upstream.NewSecret(testKey), Beta: "a\r\nX-Evil: 1"}},
	}
	for _, tt := range tests {
		if _, err := upstream.New(tt.cfg); err == nil {
			t.Errorf("New(%s) = nil error, want one", tt.name)
		} else if strings.Contains(err.Error(), testKey) {
			t.Errorf("New(%s) error %q leaks the key", tt.name, err)
		}
	}
}

func TestMessagesStreamRefused(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{})
	_, err := newClient(t, em.URL).Messages(context.Background(),
		[]byte(`{"model":"claude-haiku-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if !errors.Is(err, upstream.ErrStreaming) || upstream.Classify(err) != upstream.Final {
		t.Errorf("Messages with stream: true = %v, want ErrStreaming (Final)", err)
	}
}

// TestMessagesConcurrent runs many calls at once through one Client (under -race in
// CI) and checks that connections are reused rather than opened per request.
func TestMessagesConcurrent(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{Tier: "unlimited"})
	var conns atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	dial := tr.DialContext
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return dial(ctx, network, addr)
	}
	c := newClient(t, em.URL, func(c *upstream.Config) { c.HTTPClient = &http.Client{Transport: tr} })
	const workers, each = 32, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := c.Messages(context.Background(), []byte(params)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Messages: %v", err)
	}
	if n := conns.Load(); n > 2*workers {
		t.Errorf("%d connections for %d requests from %d workers, want about %d (reuse)", n, workers*each, workers, workers)
	}
}

// BenchmarkMessages is the client's round trip against the emulator on loopback, with
// the emulator's own handler cost included; compare with BenchmarkMessagesRaw, a bare
// http.Client doing the same POST, for the client's overhead.
func BenchmarkMessages(b *testing.B) {
	em := emulator.StartTB(b, emulator.Config{Tier: "unlimited", APIKeys: []string{testKey}})
	c, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(testKey)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Messages(context.Background(), []byte(params)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkMessagesRaw(b *testing.B) {
	em := emulator.StartTB(b, emulator.Config{Tier: "unlimited", APIKeys: []string{testKey}})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", em.URL+"/v1/messages", strings.NewReader(params))
			req.Header.Set("x-api-key", testKey)
			req.Header.Set("anthropic-version", "2023-06-01")
			req.Header.Set("content-type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
