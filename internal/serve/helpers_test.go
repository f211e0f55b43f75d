package serve_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	option1 "github.com/anthropics/anthropic-sdk-go/option"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/upstream"
)

// orgKey is the organisation's key: only the gateway holds it, and the emulator
// accepts nothing else.
const orgKey = "sk-ant-org-SECRET-4f9c2a7e1b3d5f60"

// clientKey is what clients send when the gateway has no client-keys file.
const clientKey = "ck-anything-12345"

// recorder counts the upstream responses by status, between gateway and emulator.
type recorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	byCode map[int]int
	// sent is the first text block of each Messages request, in the order they were
	// sent upstream.
	sent []string
	// headers are the credential and version headers of every request sent upstream.
	headers []http.Header
	// urls are the path and query of every request sent upstream.
	urls []string
}

var firstText = regexp.MustCompile(`"text":"([^"]*)"`)

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path == "/v1/messages" && req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			b, _ := io.ReadAll(body)
			if m := firstText.FindSubmatch(b); m != nil {
				r.mu.Lock()
				r.sent = append(r.sent, string(m[1]))
				r.mu.Unlock()
			}
		}
	}
	h := http.Header{}
	for _, k := range []string{"x-api-key", "Authorization", "anthropic-version", "anthropic-beta"} {
		if v := req.Header.Values(k); len(v) > 0 {
			h[http.CanonicalHeaderKey(k)] = v
		}
	}
	r.mu.Lock()
	r.headers = append(r.headers, h)
	r.urls = append(r.urls, req.URL.RequestURI())
	r.mu.Unlock()
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.byCode[resp.StatusCode]++
		r.mu.Unlock()
	}
	return resp, err
}

// headersSoFar returns the headers recorded so far.
func (r *recorder) headersSoFar() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

// urlsSoFar returns the path and query of the requests sent upstream so far.
func (r *recorder) urlsSoFar() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.urls...)
}

// sentSoFar returns a copy of sent.
func (r *recorder) sentSoFar() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}

func (r *recorder) count(code int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byCode[code]
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// setup describes a gateway in front of an emulator.
type setup struct {
	cat           *catalog.Catalog // default catalog.Default()
	tier          string           // the emulator's and the limiter's; default "unlimited"
	burst         float64          // the limiter's bucket capacity as a fraction of a minute; default 1
	emBurst       float64          // the emulator's; default burst
	keys          string           // client-keys YAML; "" accepts any key
	maxWait       time.Duration
	maxQueueBytes int64
	backoff       upstream.Backoff
	upKey         string            // the key the gateway sends; default orgKey
	backend       admit.Backend     // default: in memory
	em            *emulator.Running // an emulator to share; default: a new one
	upURL         string            // an upstream to send to instead of an emulator
	emCfg         emulator.Config   // for a new emulator (Catalog, Tier, BurstFraction, APIKeys are set)
	spend         *jobs.Store       // the spend store, for keys with budgets
}

// gateway is a running gateway and what a test looks at.
type gateway struct {
	URL  string
	G    *serve.Gateway
	em   *emulator.Running
	rec  *recorder
	reg  *prometheus.Registry
	logs *syncBuffer
}

func startGateway(t testing.TB, s setup) *gateway {
	t.Helper()
	if s.cat == nil {
		s.cat = catalog.Default()
	}
	if s.tier == "" {
		s.tier = "unlimited"
	}
	if s.burst == 0 {
		s.burst = 1
	}
	if s.emBurst == 0 {
		s.emBurst = s.burst
	}
	em, upURL := s.em, s.upURL
	if em == nil && upURL == "" {
		cfg := s.emCfg
		cfg.Catalog, cfg.Tier, cfg.BurstFraction, cfg.APIKeys = s.cat, s.tier, s.emBurst, []string{orgKey}
		em = emulator.StartTB(t, cfg)
	}
	if upURL == "" {
		upURL = em.URL
	}
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone(), byCode: map[int]int{}}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, bench := t.(*testing.B); bench {
		log = slog.New(slog.DiscardHandler) // a benchmark measures the gateway, not a test's log buffer
	}
	if s.upKey == "" {
		s.upKey = orgKey
	}
	up, err := upstream.New(upstream.Config{BaseURL: upURL, APIKey: upstream.NewSecret(s.upKey),
		HTTPClient: &http.Client{Transport: rec}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := admit.New(admit.Config{Catalog: s.cat, Tier: s.tier, Burst: s.burst, Backend: s.backend})
	if err != nil {
		t.Fatal(err)
	}
	var keys *serve.Keys
	if s.keys != "" {
		if keys, err = serve.ParseKeys([]byte(s.keys)); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	g, err := serve.New(serve.Config{Upstream: up, Limiter: lim, Keys: keys, MaxWait: s.maxWait, MaxQueueBytes: s.maxQueueBytes, Backoff: s.backoff, Registry: reg, Logger: log,
		Spend: s.spend, Catalog: s.cat})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return &gateway{URL: srv.URL, G: g, em: em, rec: rec, reg: reg, logs: logs}
}

// v2 is the current SDK (Bearer, 2026-10-21) pointed at url with key, retries off so
// the test sees what the gateway answers.
func v2(url, key string, opts ...option.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]option.RequestOption{option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(url), option.WithAPIKey(key), option.WithMaxRetries(0)}, opts...)...)
}

// v1 is the previous SDK (x-api-key, 2023-06-01).
func v1(url, key string, opts ...option1.RequestOption) anthropic1.Client {
	return anthropic1.NewClient(append([]option1.RequestOption{option1.WithBaseURL(url),
		option1.WithAPIKey(key), option1.WithMaxRetries(0)}, opts...)...)
}

func hello(model string, maxTokens int64, text string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: maxTokens,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))}}
}
