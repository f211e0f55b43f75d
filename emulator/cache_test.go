package emulator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/clade-dev/clade/emulator"
)

// TestCacheReadableOnlyOnceTheWriteBegins checks the concurrent-requests rule: a
// request that arrives before the response writing its prefix has begun writes (and
// pays for, and counts toward ITPM) the prefix again; one that arrives after reads it.
// The clock is held still while the first response runs, so "before" is exact.
func TestCacheReadableOnlyOnceTheWriteBegins(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	// Sonnet 5: 700 ms to first token; at scale 0.1 the write is readable 70 ms after
	// admission.
	em := start(t, emulator.Config{Catalog: tinyCatalog(t, 1000, 1e6, 1e6), Tier: "tiny", Now: clk.Now,
		LatencyScale: 0.1, Output: emulator.OutputModel{MedianTokens: 5}})
	c := clientV2(em.URL)
	system := strings.Repeat("wxyz", 5000) // 5,000 tokens, above Sonnet 5's minimum
	first := send(t, c, cachedParams("claude-sonnet-5", system, "first"))
	if first.err != nil || first.msg.Usage.CacheCreationInputTokens < 5000 {
		t.Fatalf("first: %v, usage %+v, want a cache write", first.err, first.msg)
	}
	before := headerInt(t, first.header, "anthropic-ratelimit-input-tokens-remaining")
	// Same instant as the first's admission: its response has not begun.
	second := send(t, c, cachedParams("claude-sonnet-5", system, "second"))
	if second.err != nil {
		t.Fatalf("second: %v", second.err)
	}
	if u := second.msg.Usage; u.CacheReadInputTokens != 0 || u.CacheCreationInputTokens != first.msg.Usage.CacheCreationInputTokens {
		t.Errorf("second, before the write began: usage %+v, want the same cache write again (%d), no read", u, first.msg.Usage.CacheCreationInputTokens)
	}
	if after := headerInt(t, second.header, "anthropic-ratelimit-input-tokens-remaining"); before-after < 4000 {
		t.Errorf("input-tokens-remaining %d -> %d: the second write did not count toward ITPM", before, after)
	}
	clk.Advance(69 * time.Millisecond)
	if u := send(t, c, cachedParams("claude-sonnet-5", system, "third")).msg.Usage; u.CacheReadInputTokens != 0 {
		t.Errorf("69 ms after admission (readable at 70 ms): usage %+v, want no read", u)
	}
	clk.Advance(2 * time.Millisecond)
	fourth := send(t, c, cachedParams("claude-sonnet-5", system, "fourth"))
	if u := fourth.msg.Usage; u.CacheReadInputTokens != first.msg.Usage.CacheCreationInputTokens || u.CacheCreationInputTokens != 0 {
		t.Errorf("once the write began: usage %+v, want a read of %d and no write", u, first.msg.Usage.CacheCreationInputTokens)
	}
	// A cache read costs no ITPM on current models: only the uncached question does.
	was := headerInt(t, send(t, c, userText("claude-sonnet-5", 5, "x")).header, "anthropic-ratelimit-input-tokens-remaining")
	if now := headerInt(t, send(t, c, cachedParams("claude-sonnet-5", system, "fifth")).header, "anthropic-ratelimit-input-tokens-remaining"); was-now > 1000 {
		t.Errorf("input-tokens-remaining %d -> %d across a cache read: the read counted toward ITPM", was, now)
	}
}

// TestCacheStreamReadableAtMessageStart checks a stream's message_start is the
// response's start: a request sent right after a streamed writer's message_start
// arrived reads the prefix (real clock).
func TestCacheStreamReadableAtMessageStart(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", LatencyScale: 0.2, Output: emulator.OutputModel{MedianTokens: 200}})
	c := clientV2(em.URL)
	system := strings.Repeat("wxyz", 5000)
	sent := time.Now()
	st := c.Messages.NewStreaming(context.Background(), cachedParams("claude-sonnet-5", system, "writer"))
	defer st.Close()
	if !st.Next() {
		t.Fatalf("stream: %v", st.Err())
	}
	ev := st.Current()
	if ev.Type != "message_start" || ev.Message.Usage.CacheCreationInputTokens < 5000 {
		t.Fatalf("first event %q usage %+v, want message_start with a cache write", ev.Type, ev.Message.Usage)
	}
	if d := time.Since(sent); d < 100*time.Millisecond {
		t.Errorf("message_start after %v, want the time to first token (140 ms) first", d)
	}
	r := send(t, c, cachedParams("claude-sonnet-5", system, "reader"))
	if r.err != nil || r.msg.Usage.CacheReadInputTokens < 5000 {
		t.Errorf("after the writer's message_start: %v, usage %+v, want a cache read", r.err, r.msg)
	}
	for st.Next() {
	}
}

// TestCacheLookback checks a breakpoint finds a prefix cached by an earlier
// breakpoint up to 20 blocks back, and not further.
func TestCacheLookback(t *testing.T) {
	t.Parallel()
	doc := strings.Repeat("wxyz", 5000)
	params := func(extra int, mark bool) anthropic.MessageNewParams {
		blocks := []anthropic.ContentBlockParamUnion{{OfText: &anthropic.TextBlockParam{Text: doc}}}
		if mark {
			blocks[0].OfText.CacheControl = anthropic.NewCacheControlEphemeralParam()
		}
		for i := range extra {
			blocks = append(blocks, anthropic.NewTextBlock("part "+strings.Repeat("q", i+1)))
		}
		if extra > 0 {
			blocks[len(blocks)-1].OfText.CacheControl = anthropic.NewCacheControlEphemeralParam()
		}
		return anthropic.MessageNewParams{Model: "claude-sonnet-5", MaxTokens: 5,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(blocks...)}}
	}
	tests := []struct {
		name     string
		extra    int
		wantRead bool
	}{
		{"20 blocks after", 20, true},
		{"21 blocks after", 21, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{Tier: "unlimited"})
			c := clientV2(em.URL)
			if w := send(t, c, params(0, true)); w.err != nil || w.msg.Usage.CacheCreationInputTokens < 5000 {
				t.Fatalf("writer: %v %+v, want a cache write", w.err, w.msg)
			}
			r := send(t, c, params(tt.extra, false))
			if r.err != nil {
				t.Fatalf("reader: %v", r.err)
			}
			if got := r.msg.Usage.CacheReadInputTokens >= 5000; got != tt.wantRead {
				t.Errorf("breakpoint %d blocks after the cached one: usage %+v, read = %v, want %v", tt.extra, r.msg.Usage, got, tt.wantRead)
			}
		})
	}
}
