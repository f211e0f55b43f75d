package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
)

// fakeClock is a settable real-time clock for the rate-limit buckets.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// tinyCatalog is the default catalog with a tier "tiny" whose limits tests can cross.
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

type limitedCall struct {
	msg    *anthropic.Message
	err    *anthropic.Error
	header http.Header
}

func send(t *testing.T, c anthropic.Client, p anthropic.MessageNewParams) limitedCall {
	t.Helper()
	var resp *http.Response
	msg, err := c.Messages.New(context.Background(), p, option.WithResponseInto(&resp))
	out := limitedCall{msg: msg}
	if resp != nil {
		out.header = resp.Header
	}
	if err != nil {
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("Messages.New: %v (not an API error)", err)
		}
		out.err = apiErr
		out.header = apiErr.Response.Header
	}
	return out
}

func userText(model string, maxTokens int64, text string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model: model, MaxTokens: maxTokens,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
	}
}

func headerInt(t *testing.T, h http.Header, name string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(h.Get(name), 10, 64)
	if err != nil {
		t.Fatalf("header %s = %q, want an integer", name, h.Get(name))
	}
	return v
}

func TestRateLimitHeadersFallAndRefill(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	em := start(t, emulator.Config{Catalog: tinyCatalog(t, 100, 100000, 50000), Tier: "tiny", Now: clk.Now,
		Output: emulator.OutputModel{MedianTokens: 3000}})
	c := clientV2(em.URL)
	big := strings.Repeat("abcd", 20000) // 20,000 input tokens

	first := send(t, c, userText("claude-sonnet-5", 4000, big))
	if first.err != nil {
		t.Fatalf("first request: %v", first.err)
	}
	h := first.header
	for _, name := range []string{"requests", "input-tokens", "output-tokens", "tokens"} {
		for _, part := range []string{"limit", "remaining", "reset"} {
			if h.Get("anthropic-ratelimit-"+name+"-"+part) == "" {
				t.Errorf("missing header anthropic-ratelimit-%s-%s", name, part)
			}
		}
	}
	if got := headerInt(t, h, "anthropic-ratelimit-requests-limit"); got != 100 {
		t.Errorf("requests-limit = %d, want 100", got)
	}
	if got := headerInt(t, h, "anthropic-ratelimit-requests-remaining"); got != 99 {
		t.Errorf("requests-remaining = %d, want 99", got)
	}
	if got := headerInt(t, h, "anthropic-ratelimit-input-tokens-remaining"); got != 80000 {
		t.Errorf("input-tokens-remaining = %d, want 80000 (100000 - 20,000 input, rounded)", got)
	}
	if got := headerInt(t, h, "anthropic-ratelimit-output-tokens-remaining"); got != 47000 {
		t.Errorf("output-tokens-remaining = %d, want 47000 (50000 - 3,000 generated)", got)
	}
	if got := headerInt(t, h, "anthropic-ratelimit-tokens-limit"); got != 150000 {
		t.Errorf("tokens-limit = %d, want 150000 (input + output)", got)
	}
	reset, err := time.Parse(time.RFC3339, h.Get("anthropic-ratelimit-input-tokens-reset"))
	if err != nil {
		t.Fatalf("input-tokens-reset %q is not RFC 3339: %v", h.Get("anthropic-ratelimit-input-tokens-reset"), err)
	}
	// 20,000 of 100,000/min refill in 12 s.
	if d := reset.Sub(clk.Now()); d < 11*time.Second || d > 13*time.Second {
		t.Errorf("input-tokens-reset is %v ahead, want about 12s", d)
	}

	second := send(t, c, userText("claude-sonnet-5", 4000, big))
	if got := headerInt(t, second.header, "anthropic-ratelimit-requests-remaining"); got != 98 {
		t.Errorf("after two requests requests-remaining = %d, want 98", got)
	}
	if got := headerInt(t, second.header, "anthropic-ratelimit-input-tokens-remaining"); got != 60000 {
		t.Errorf("after two requests input-tokens-remaining = %d, want 60000", got)
	}

	clk.Advance(time.Minute)
	third := send(t, c, userText("claude-sonnet-5", 4000, "hi"))
	if got := headerInt(t, third.header, "anthropic-ratelimit-input-tokens-remaining"); got != 100000 {
		t.Errorf("after a minute input-tokens-remaining = %d, want refilled to 100000", got)
	}
	if got := headerInt(t, third.header, "anthropic-ratelimit-requests-remaining"); got != 99 {
		t.Errorf("after a minute requests-remaining = %d, want 99", got)
	}
}

func TestRateLimit429EachLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		rpm, itpm, otpm int64
		output          float64
		input           string
		okBefore        int
		wantMessage     string
	}{
		{name: "rpm", rpm: 3, itpm: 1e6, otpm: 1e6, output: 10, input: "hi", okBefore: 3, wantMessage: "of 3 requests per minute"},
		{name: "itpm", rpm: 1000, itpm: 25000, otpm: 1e6, output: 10, input: strings.Repeat("abcd", 10000), okBefore: 2, wantMessage: "of 25,000 input tokens per minute"},
		{name: "otpm", rpm: 1000, itpm: 1e6, otpm: 100, output: 80, input: "hi", okBefore: 2, wantMessage: "of 100 output tokens per minute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			em := start(t, emulator.Config{Catalog: tinyCatalog(t, tt.rpm, tt.itpm, tt.otpm), Tier: "tiny", Now: clk.Now,
				Output: emulator.OutputModel{MedianTokens: tt.output}})
			c := clientV2(em.URL)
			for i := 0; i < tt.okBefore; i++ {
				if r := send(t, c, userText("claude-haiku-4-5", 1000, tt.input)); r.err != nil {
					t.Fatalf("request %d: %v, want success", i+1, r.err)
				}
			}
			r := send(t, c, userText("claude-haiku-4-5", 1000, tt.input))
			if r.err == nil {
				t.Fatalf("request %d succeeded, want 429", tt.okBefore+1)
			}
			if r.err.StatusCode != 429 || r.err.Type() != "rate_limit_error" {
				t.Fatalf("error = %d %s, want 429 rate_limit_error", r.err.StatusCode, r.err.Type())
			}
			if !strings.Contains(r.err.RawJSON(), tt.wantMessage) {
				t.Errorf("429 body %s does not name the limit (%q)", r.err.RawJSON(), tt.wantMessage)
			}
			ra := headerInt(t, r.header, "retry-after")
			if ra < 1 {
				t.Fatalf("retry-after = %d, want ≥ 1", ra)
			}
			if r.header.Get("anthropic-ratelimit-requests-limit") == "" {
				t.Errorf("429 lacks the rate-limit headers")
			}
			// retry-after is the wait rounded up to whole seconds: retrying a second
			// earlier still fails; at retry-after it succeeds.
			clk.Advance(time.Duration(ra-1)*time.Second - time.Millisecond)
			if early := send(t, c, userText("claude-haiku-4-5", 1000, tt.input)); early.err == nil {
				t.Fatalf("a retry %ds after a retry-after of %ds succeeded", ra-1, ra)
			}
			clk.Advance(time.Second + time.Millisecond)
			if late := send(t, c, userText("claude-haiku-4-5", 1000, tt.input)); late.err != nil {
				t.Errorf("retry after retry-after (%ds): %v, want success", ra, late.err)
			}
		})
	}
}

func TestRateLimitClassesAreSeparatePools(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	em := start(t, emulator.Config{Catalog: tinyCatalog(t, 1, 1e6, 1e6), Tier: "tiny", Now: clk.Now})
	c := clientV2(em.URL)
	if r := send(t, c, userText("claude-opus-4-8", 100, "hi")); r.err != nil {
		t.Fatalf("opus 4.8: %v", r.err)
	}
	if r := send(t, c, userText("claude-opus-4-6", 100, "hi")); r.err == nil || r.err.StatusCode != 429 {
		t.Errorf("opus 4.6 after opus 4.8 in one pool at 1 RPM: want 429, got %v", r.err)
	}
	if r := send(t, c, userText("claude-haiku-4-5", 100, "hi")); r.err != nil {
		t.Errorf("haiku is its own pool: %v, want success", r.err)
	}
}

func cachedParams(model string, system string, user string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model: model, MaxTokens: 50,
		System:   []anthropic.TextBlockParam{{Text: system, CacheControl: anthropic.NewCacheControlEphemeralParam()}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(user))},
	}
}

func TestCacheReadsDoNotCountTowardITPM(t *testing.T) {
	t.Parallel()
	system := strings.Repeat("wxyz", 5000) // 5,000 tokens: above every class's minimum
	tests := []struct {
		model        string
		wantSecondOK bool
	}{
		{"claude-sonnet-5", true},          // cache reads excluded
		{"claude-3-haiku-20240307", false}, // † class: cache reads count
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			t.Parallel()
			clk := newFakeClock()
			em := start(t, emulator.Config{Catalog: tinyCatalog(t, 1000, 8000, 1e6), Tier: "tiny", Now: clk.Now,
				Output: emulator.OutputModel{MedianTokens: 5}})
			c := clientV2(em.URL)
			first := send(t, c, cachedParams(tt.model, system, "first question"))
			if first.err != nil {
				t.Fatalf("first: %v", first.err)
			}
			u := first.msg.Usage
			if u.CacheCreationInputTokens < 5000 || u.CacheReadInputTokens != 0 {
				t.Fatalf("first usage = %+v, want a cache write of the system prompt", u)
			}
			if u.CacheCreation.Ephemeral5mInputTokens != u.CacheCreationInputTokens {
				t.Errorf("cache_creation.ephemeral_5m = %d, want %d", u.CacheCreation.Ephemeral5mInputTokens, u.CacheCreationInputTokens)
			}
			second := send(t, c, cachedParams(tt.model, system, "second question"))
			if tt.wantSecondOK {
				if second.err != nil {
					t.Fatalf("second (cache read) refused: %v; cache reads must not count toward ITPM", second.err)
				}
				if second.msg.Usage.CacheReadInputTokens != u.CacheCreationInputTokens || second.msg.Usage.CacheCreationInputTokens != 0 {
					t.Errorf("second usage = %+v, want a cache read of %d", second.msg.Usage, u.CacheCreationInputTokens)
				}
			} else if second.err == nil || second.err.StatusCode != 429 {
				t.Errorf("second on a † model = %v, want 429 (cache reads count)", second.err)
			}
		})
	}
}

func TestCacheExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	em := start(t, emulator.Config{Tier: "unlimited", Now: clk.Now})
	c := clientV2(em.URL)
	system := strings.Repeat("wxyz", 5000)
	if r := send(t, c, cachedParams("claude-sonnet-5", system, "a")); r.err != nil || r.msg.Usage.CacheCreationInputTokens == 0 {
		t.Fatalf("first: %v, want a cache write", r.err)
	}
	clk.Advance(4 * time.Minute)
	if r := send(t, c, cachedParams("claude-sonnet-5", system, "b")); r.msg.Usage.CacheReadInputTokens == 0 {
		t.Errorf("within 5m TTL: usage %+v, want a cache read", r.msg.Usage)
	}
	// The read refreshed the entry: 4 more minutes is still a hit; 6 after that is not.
	clk.Advance(4 * time.Minute)
	if r := send(t, c, cachedParams("claude-sonnet-5", system, "c")); r.msg.Usage.CacheReadInputTokens == 0 {
		t.Errorf("after a refresh: usage %+v, want a cache read", r.msg.Usage)
	}
	clk.Advance(6 * time.Minute)
	if r := send(t, c, cachedParams("claude-sonnet-5", system, "d")); r.msg.Usage.CacheReadInputTokens != 0 || r.msg.Usage.CacheCreationInputTokens == 0 {
		t.Errorf("after the TTL: usage %+v, want a fresh cache write", r.msg.Usage)
	}
}

func TestLegacyOTPMReservesMaxTokens(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	em := start(t, emulator.Config{Catalog: tinyCatalog(t, 1000, 1e6, 1000), Tier: "tiny", Now: clk.Now, LegacyOTPM: true,
		Output: emulator.OutputModel{MedianTokens: 10}})
	c := clientV2(em.URL)
	// Each request reserves its max_tokens against OTPM at admission.
	if r := send(t, c, userText("claude-haiku-4-5", 600, "hi")); r.err != nil {
		t.Fatalf("first: %v", r.err)
	}
	// 600 reserved, 590 refunded: about 990 left, so 600 more fits; then 1,000 does not.
	if r := send(t, c, userText("claude-haiku-4-5", 600, "hi")); r.err != nil {
		t.Fatalf("second: %v (unused reservation must be refunded)", r.err)
	}
	if r := send(t, c, userText("claude-haiku-4-5", 999, "hi")); r.err == nil || r.err.StatusCode != 429 {
		t.Errorf("third with max_tokens 999 against ~980 left: err %v, want 429", r.err)
	}
}
