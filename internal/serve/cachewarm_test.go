package serve_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/upstream"
)

// inFlight is the gateway's upstream transport in a test: while a call is sent it
// reads what the gateway's limiter holds in flight.
type inFlight struct {
	lim  *admit.Limiter
	mu   sync.Mutex
	seen []admit.Cost
}

func (p *inFlight) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path == "/v1/messages" {
		s, _ := p.lim.Snapshot(req.Context())
		var c admit.Cost
		for _, cs := range s.Classes {
			c.Requests += cs.InFlight.Requests
			c.InputTokens += cs.InFlight.InputTokens
		}
		p.mu.Lock()
		p.seen = append(p.seen, c)
		p.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// warmGateway starts a tier-4 emulator (latency scaled by latency), a gateway in
// front of it with a limiter of its own, and the probe that records what each call
// held in flight as it went upstream.
func warmGateway(t *testing.T, latency float64) (*serve.Gateway, *httptest.Server, *inFlight) {
	t.Helper()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{orgKey}, LatencyScale: latency})
	lim, err := admit.New(admit.Config{Tier: "tier-4"})
	if err != nil {
		t.Fatal(err)
	}
	probe := &inFlight{lim: lim}
	log := slog.New(slog.DiscardHandler)
	up, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(orgKey),
		HTTPClient: &http.Client{Transport: probe}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	g, err := serve.New(serve.Config{Upstream: up, Limiter: lim, Registry: prometheus.NewRegistry(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv, probe
}

// TestGatewayWarmPrefixReservesUncachedInput: calls through clade serve that share a
// cached 6,000-token system prompt reserve the whole prompt until an answer with it
// has started, then only their uncached input (admit remembers the prefix; the
// gateway passes it the body), JSON and streaming, while the emulator reads them from
// its cache.
func TestGatewayWarmPrefixReservesUncachedInput(t *testing.T) {
	t.Parallel()
	const prefixTokens = 6000
	system := strings.Repeat("The shared context of every call. ", prefixTokens*4/34)
	g, srv, probe := warmGateway(t, 0)
	cl := v2(srv.URL, clientKey)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	params := hello("claude-haiku-4-5", 64, "What is it about?")
	params.System = []anthropic.TextBlockParam{{Text: system, CacheControl: anthropic.NewCacheControlEphemeralParam()}}
	var reads int
	for i := range 4 {
		var u anthropic.Usage
		if i%2 == 0 {
			m, err := cl.Messages.New(ctx, params)
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			u = m.Usage
		} else {
			s := cl.Messages.NewStreaming(ctx, params)
			var acc anthropic.Message
			for s.Next() {
				if err := acc.Accumulate(s.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Err(); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			s.Close()
			u = acc.Usage
		}
		if u.CacheReadInputTokens > 0 {
			reads++
		}
		g.WaitSettled() // the gateway settles a call just after its answer has gone
	}
	probe.mu.Lock()
	seen := append([]admit.Cost(nil), probe.seen...)
	probe.mu.Unlock()
	if len(seen) != 4 || reads != 3 {
		t.Fatalf("%d calls sent upstream, %d read the cache; want 4 and 3", len(seen), reads)
	}
	if s := seen[0]; s.Requests != 1 || s.InputTokens < prefixTokens {
		t.Errorf("the first call held %+v in flight, want its whole prompt (≥ %d input tokens)", s, prefixTokens)
	}
	for i, s := range seen[1:] {
		if s.Requests != 1 || s.InputTokens >= prefixTokens/10 {
			t.Errorf("call %d held %+v in flight, want only its uncached input (< %d tokens)", i+1, s, prefixTokens/10)
		}
	}
}

// TestGatewayStreamWarmsPrefixAtMessageStart: a streamed answer makes its prefix
// warm as its message_start passes through the gateway, not when the stream ends:
// a call with the same prefix sent while the first stream is still generating
// reserves only its uncached input.
func TestGatewayStreamWarmsPrefixAtMessageStart(t *testing.T) {
	t.Parallel()
	const prefixTokens = 6000
	system := strings.Repeat("The context every call of this test shares. ", prefixTokens*4/44)
	// Latency on: the stream's 256 output tokens take seconds after message_start.
	_, srv, probe := warmGateway(t, 1)
	cl := v2(srv.URL, clientKey)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	params := hello("claude-haiku-4-5", 256, "Tell me about it at length.")
	params.System = []anthropic.TextBlockParam{{Text: system, CacheControl: anthropic.NewCacheControlEphemeralParam()}}
	s := cl.Messages.NewStreaming(ctx, params)
	defer s.Close()
	if !s.Next() {
		t.Fatalf("no first event: %v", s.Err())
	}
	if ev := s.Current(); ev.Type != "message_start" {
		t.Fatalf("first event %q, want message_start", ev.Type)
	}
	short := hello("claude-haiku-4-5", 16, "In one word?")
	short.System = params.System
	if _, err := cl.Messages.New(ctx, short); err != nil {
		t.Fatal(err)
	}
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	probe.mu.Lock()
	seen := append([]admit.Cost(nil), probe.seen...)
	probe.mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("%d calls sent upstream, want 2", len(seen))
	}
	if seen[1].Requests != 2 {
		t.Fatalf("the second call went upstream with %d calls in flight, want 2: the stream had ended, nothing was tested", seen[1].Requests)
	}
	if own := seen[1].InputTokens - seen[0].InputTokens; own >= prefixTokens/10 {
		t.Errorf("the call sent during the stream reserved %d input tokens, want only its uncached input (< %d): the prefix was not warm at message_start", own, prefixTokens/10)
	}
}
