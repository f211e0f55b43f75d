package admit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
)

// prefixTokens is the shared prefix of the prompt-cache tests: about 6,000 tokens
// (the emulator counts a text as ceil(bytes/4)), above every class's
// min_cache_tokens.
const prefixTokens = 6000

// sharedPrefix is a system prompt of about prefixTokens tokens.
var sharedPrefix = strings.Repeat("The shared context of every call. ", prefixTokens*4/34)

// cachedBody is a Messages body whose system prompt is sharedPrefix with a
// cache_control breakpoint of ttl ("" for none: the same prompt, not cached).
func cachedBody(model, ttl, question string) []byte {
	sys := map[string]any{"type": "text", "text": sharedPrefix}
	if ttl != "" {
		sys["cache_control"] = map[string]any{"type": "ephemeral", "ttl": ttl}
	}
	b, _ := json.Marshal(map[string]any{
		"model": model, "max_tokens": 64, "system": []any{sys},
		"messages": []any{map[string]any{"role": "user", "content": question}},
	})
	return b
}

// inFlightProbe is an SDK middleware placed after the limiter's: while a call is
// sent it reads what the limiter holds in flight for class.
type inFlightProbe struct {
	lim   *admit.Limiter
	class string
	mu    sync.Mutex
	seen  []admit.Cost // per call, in the order sent
}

func (p *inFlightProbe) middleware(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	p.record()
	return next(req)
}

func (p *inFlightProbe) RoundTrip(req *http.Request) (*http.Response, error) {
	p.record()
	return http.DefaultTransport.RoundTrip(req)
}

func (p *inFlightProbe) record() {
	s, _ := p.lim.Snapshot(context.Background())
	var c admit.Cost
	for _, cs := range s.Classes {
		if cs.Class == p.class {
			c = cs.InFlight
		}
	}
	p.mu.Lock()
	p.seen = append(p.seen, c)
	p.mu.Unlock()
}

func (p *inFlightProbe) costs() []admit.Cost {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]admit.Cost(nil), p.seen...)
}

// TestWarmPrefixReservesOnlyTheUncachedInput: at tier-1 (Haiku 4.5: 50,000 ITPM),
// 24 calls sharing a 6,000-token cached prefix would reserve 146,000 input tokens if
// each reserved its whole prompt. Through the SDK middleware, JSON and streaming, once
// the first answer has started the others reserve only their uncached input: while
// each is sent, the calls in flight (up to four) hold less than one prefix, the
// emulator reads each from its cache, and answers none with a 429.
func TestWarmPrefixReservesOnlyTheUncachedInput(t *testing.T) {
	t.Parallel()
	const (
		n       = 24
		workers = 4
		itpm    = 50_000 // tier-1, Haiku 4.5
	)
	if n*prefixTokens <= itpm {
		t.Fatalf("%d calls of %d tokens fit in %d ITPM: the test would not bind", n, prefixTokens, itpm)
	}
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			t.Parallel()
			em := emulator.StartTB(t, emulator.Config{Tier: "tier-1"})
			c := &counting{h: em.Server}
			url := httptestServer(t, c)
			lim, err := admit.New(admit.Config{Tier: "tier-1"})
			if err != nil {
				t.Fatal(err)
			}
			class, _ := lim.ClassOf(mwModel)
			probe := &inFlightProbe{lim: lim, class: class}
			cl := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(url), option.WithAPIKey("sk-ant-test"),
				option.WithMiddleware(lim.Middleware, probe.middleware), option.WithMaxRetries(0))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var (
				mu    sync.Mutex
				reads int
			)
			call := func(i int) error {
				params := anthropic.MessageNewParams{Model: mwModel, MaxTokens: 64,
					System:   []anthropic.TextBlockParam{{Text: sharedPrefix, CacheControl: anthropic.NewCacheControlEphemeralParam()}},
					Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt(i)))}}
				var u anthropic.Usage
				if stream {
					s := cl.Messages.NewStreaming(ctx, params)
					var acc anthropic.Message
					for s.Next() {
						if err := acc.Accumulate(s.Current()); err != nil {
							return err
						}
					}
					if err := s.Close(); err != nil || s.Err() != nil {
						return fmt.Errorf("stream: %v, %v", s.Err(), err)
					}
					u = acc.Usage
				} else {
					m, err := cl.Messages.New(ctx, params)
					if err != nil {
						return err
					}
					u = m.Usage
				}
				if u.CacheReadInputTokens > 0 {
					mu.Lock()
					reads++
					mu.Unlock()
				}
				return nil
			}
			if err := call(0); err != nil {
				t.Fatalf("the first call: %v", err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, n)
			next := make(chan int, n)
			for i := 1; i < n; i++ {
				next <- i
			}
			close(next)
			for range workers {
				wg.Go(func() {
					for i := range next {
						if err := call(i); err != nil {
							errs <- fmt.Errorf("call %d: %w", i, err)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			seen := probe.costs()
			if len(seen) != n {
				t.Fatalf("the probe saw %d calls, want %d", len(seen), n)
			}
			if first := seen[0]; first.Requests != 1 || first.InputTokens < prefixTokens {
				t.Errorf("the first call held %+v in flight, want 1 request and its whole prompt (≥ %d input tokens)", first, prefixTokens)
			}
			for i, s := range seen[1:] {
				if s.Requests < 1 || s.InputTokens >= prefixTokens {
					t.Errorf("call %d sent with %+v in flight, want ≥ 1 request and < %d input tokens (uncached parts only)", i+1, s, prefixTokens)
				}
			}
			if reads != n-1 {
				t.Errorf("%d calls read the prefix from the emulator's cache, want %d", reads, n-1)
			}
			if l := c.limited.Load(); l != 0 {
				t.Errorf("the emulator answered %d calls 429, want none", l)
			}
		})
	}
}

// send posts body through hc (a limiter's Transport) to url and returns the usage.
func send(t *testing.T, hc *http.Client, url string, body []byte) admit.Usage {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-api-key", "sk-ant-test")
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/messages = %d %s, %v", resp.StatusCode, b, err)
	}
	u, ok := admit.MessageUsage(b)
	if !ok {
		t.Fatalf("no usage in %s", b)
	}
	return u
}

// newTransportClient is an emulator at tier-4 and a limiter whose Transport a plain
// HTTP client sends through, both on clock now.
func newTransportClient(t *testing.T, now func() time.Time) (*admit.Limiter, *http.Client, string) {
	t.Helper()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", Now: now})
	lim, err := admit.New(admit.Config{Tier: "tier-4", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return lim, &http.Client{Transport: lim.Transport(nil)}, em.URL
}

// whole is what a call of body reserves for input when nothing of it is cached.
func whole(t *testing.T, lim *admit.Limiter, body []byte) int64 {
	t.Helper()
	var p struct {
		Model     string `json:"model"`
		MaxTokens int64  `json:"max_tokens"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	c, ok := lim.PrepareFor(p.Model, p.MaxTokens, admit.EstimateInput(body))
	if !ok {
		t.Fatalf("PrepareFor(%s) = false", p.Model)
	}
	return c.Need().InputTokens
}

// need is what Prepare says a call of body reserves now.
func need(t *testing.T, lim *admit.Limiter, body []byte) admit.Need {
	t.Helper()
	c, ok := lim.Prepare(body)
	if !ok {
		t.Fatalf("Prepare(%.60s…) = false", body)
	}
	return c.Need()
}

// TestCacheReadsCountingClassReservesWholePrompt: on a class whose cache reads count
// toward ITPM (Haiku 3, cache_reads_count_itpm), a warm prefix changes nothing: every
// call reserves its whole prompt, though the emulator reads it from its cache.
func TestCacheReadsCountingClassReservesWholePrompt(t *testing.T) {
	t.Parallel()
	const model = "claude-3-haiku-20240307"
	lim, hc, url := newTransportClient(t, nil)
	if m, err := catalog.Default().Resolve(model); err != nil || !catalog.Default().Class(m).CacheReadsCountITPM {
		t.Fatalf("%s: cache_reads_count_itpm is false in the catalog; the test needs a † class", model)
	}
	body := cachedBody(model, "5m", "What is it about?")
	if u := send(t, hc, url, body); u.CacheCreationInputTokens == 0 {
		t.Fatalf("the first call's usage %+v: want a cache write", u)
	}
	if u := send(t, hc, url, body); u.CacheReadInputTokens == 0 {
		t.Fatalf("the second call's usage %+v: want a cache read", u)
	}
	if got, want := need(t, lim, body).InputTokens, whole(t, lim, body); got != want || want < prefixTokens {
		t.Errorf("Prepare(cached body of %s).Need().InputTokens = %d, want the whole prompt %d", model, got, want)
	}
}

// TestNoCacheControlReservesAsBefore: a body without cache_control reserves exactly
// what PrepareFor (no body, no prefix) does, the whole prompt, even while the same
// prompt with a breakpoint is warm; the body with it reserves less then.
func TestNoCacheControlReservesAsBefore(t *testing.T) {
	t.Parallel()
	lim, hc, url := newTransportClient(t, nil)
	cached := cachedBody(mwModel, "5m", "What is it about?")
	send(t, hc, url, cached)
	if u := send(t, hc, url, cached); u.CacheReadInputTokens == 0 {
		t.Fatalf("the second call's usage %+v: want a cache read", u)
	}
	if got, w := need(t, lim, cached).InputTokens, whole(t, lim, cached); got >= w-prefixTokens/2 {
		t.Fatalf("Prepare(cached body).Need().InputTokens = %d, want less than the whole %d by about %d: the prefix is warm", got, w, prefixTokens)
	}
	plain := cachedBody(mwModel, "", "What is it about?")
	c, _ := lim.PrepareFor(mwModel, 64, admit.EstimateInput(plain))
	if got, want := need(t, lim, plain), c.Need(); got != want || got.InputTokens < prefixTokens {
		t.Errorf("Prepare(body without cache_control).Need() = %+v, want PrepareFor's %+v", got, want)
	}
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestWarmPrefixExpiresAfterTTL: a prefix is warm for its TTL (5 minutes, or 1 hour)
// from the last call on it, a read refreshing it, and the next call after that
// reserves the whole prompt again (it will write the prefix: the emulator, on the
// same clock, has expired it too).
func TestWarmPrefixExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		ttl string
		d   time.Duration
	}{{"5m", 5 * time.Minute}, {"1h", time.Hour}} {
		t.Run(tt.ttl, func(t *testing.T) {
			t.Parallel()
			clk := &fakeClock{now: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
			lim, hc, url := newTransportClient(t, clk.Now)
			body := cachedBody(mwModel, tt.ttl, "What is it about?")
			w := whole(t, lim, body)
			warm := func(when string, want bool) {
				t.Helper()
				got := need(t, lim, body).InputTokens
				if isWarm := got < w-prefixTokens/2; isWarm != want {
					t.Errorf("%s: Need().InputTokens = %d of the whole %d; warm = %v, want %v", when, got, w, isWarm, want)
				}
			}
			warm("before any call", false)
			if u := send(t, hc, url, body); u.CacheCreationInputTokens == 0 {
				t.Fatalf("the first call's usage %+v: want a cache write", u)
			}
			warm("after the first answer", true)
			clk.advance(tt.d / 2)
			if u := send(t, hc, url, body); u.CacheReadInputTokens == 0 {
				t.Fatalf("the read at TTL/2: usage %+v, want a cache read", u)
			}
			clk.advance(tt.d/2 + time.Second)
			warm("TTL+1s after the write, TTL/2 after the read", true)
			clk.advance(tt.d/2 - 2*time.Second)
			warm("1s before the read's TTL", true)
			clk.advance(time.Second)
			warm("at the read's TTL", false)
			if u := send(t, hc, url, body); u.CacheCreationInputTokens == 0 || u.CacheReadInputTokens != 0 {
				t.Errorf("the call after the TTL: usage %+v, want a write (the emulator expired it too)", u)
			}
			warm("after the rewrite", true)
		})
	}
}
