package admit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/emulator"
)

// The prompt-cache burst measurement (docs/benchmarks.md, "admit: reservations for
// warm prefixes"): 256 closed-loop workers send a burst of calls that share one cached
// prefix, from idle (full buckets), through the Call loop Middleware runs (Prepare,
// Admit, Response), against the emulator (its buckets, prompt cache and latency model)
// in a testing/synctest bubble, as the simulation does (sim_test.go). Each case runs
// twice in the same test: with the whole prompt reserved for every call (PrepareFor: no
// body, no prefix: what admission did before) and with warm prefixes remembered
// (Prepare). The figure is the burst's wall time (simulated), and calls per minute
// over it.
//
//	go test ./admit -run TestWarmPrefixBurst -v
//
// Why a burst: a reservation held in flight is refunded when the call settles, and the
// bucket keeps refilling meanwhile, so in a long steady stream the calls in flight can
// hold more than a bucket's capacity; what the whole-prompt reservation limits is how
// many calls a full bucket lets go at once (capacity ÷ prompt), and the ramp from
// there, which every burst after an idle spell starts with.

type warmCase struct {
	name     string
	tier     string
	model    string
	text     int // tokens of text the prefix starts with
	images   int // images in the prefix after its text, 1,500 tokens each: small bodies, many tokens
	calls    int
	workers  int
	minRatio float64 // before's wall time ÷ after's at least
}

type warmResult struct {
	wall            time.Duration
	ok, limited     int
	reads, writes   int
	prefix, promptN int64
}

func (r warmResult) perMin() float64 { return float64(r.ok) / r.wall.Minutes() }

const (
	warmModel = "claude-sonnet-4-6" // Sonnet 4.x: tier-2 1,000 RPM, 450,000 ITPM, 90,000 OTPM
	warmITPM  = 450_000
)

func TestWarmPrefixBurst(t *testing.T) {
	t.Parallel()
	cases := []warmCase{
		// 6,000 tokens: a full ITPM bucket (450,000) holds 73 whole prompts in flight.
		{name: "6,000-token prefix", tier: "tier-2", model: warmModel, text: 1500, images: 3, calls: burstCalls, workers: 256, minRatio: 4},
		// 48,000 tokens: it holds 9.
		{name: "48,000-token prefix", tier: "tier-2", model: warmModel, text: 1500, images: 31, calls: burstCalls, workers: 256, minRatio: 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var before, after warmResult
			synctest.Test(t, func(t *testing.T) { before = runWarm(t, tc, false) })
			synctest.Test(t, func(t *testing.T) { after = runWarm(t, tc, true) })
			for _, r := range []struct {
				name string
				warmResult
			}{{"whole prompt reserved", before}, {"warm prefixes", after}} {
				t.Logf("%s, %s: %d calls in %v, %.0f calls/min (%d 429; %d cache reads, %d writes; prompt %d tokens, prefix %d)",
					tc.name, r.name, r.ok, r.wall.Round(10*time.Millisecond), r.perMin(), r.limited, r.reads, r.writes, r.promptN, r.prefix)
				if r.limited != 0 || r.ok != tc.calls {
					t.Errorf("%s: %d calls answered 200 and %d 429, want %d and none", r.name, r.ok, r.limited, tc.calls)
				}
			}
			if ratio := before.wall.Seconds() / after.wall.Seconds(); ratio < tc.minRatio {
				t.Errorf("warm prefixes: the burst took %v against %v with the whole prompt reserved (%.2f×), want at least %.1f× shorter",
					after.wall, before.wall, ratio, tc.minRatio)
			}
			// Only the calls a full bucket lets go before the first answer write.
			if most := int(warmITPM/after.promptN) + 1; after.writes > most || after.reads+after.writes != tc.calls {
				t.Errorf("warm prefixes: %d of %d calls read the cache and %d wrote it, want at most %d writes",
					after.reads, tc.calls, after.writes, most)
			}
		})
	}
}

// warmBody is call i's body: the shared prefix (the case's text, then its images;
// cache_control on the last block of it) and a question of its own.
func warmBody(tc warmCase, i int) []byte {
	blocks := []any{map[string]any{"type": "text", "text": sharedPrefix[:tc.text*4]}}
	for j := range tc.images {
		img := map[string]any{"type": "image", "source": map[string]any{"type": "base64", "media_type": "image/png", "data": fmt.Sprintf("iVBORw0KGgo%04d", j)}}
		blocks = append(blocks, img)
	}
	blocks[len(blocks)-1].(map[string]any)["cache_control"] = map[string]any{"type": "ephemeral"}
	blocks = append(blocks, map[string]any{"type": "text", "text": prompt(i)})
	b, _ := json.Marshal(map[string]any{"model": tc.model, "max_tokens": 64,
		"messages": []any{map[string]any{"role": "user", "content": blocks}}})
	return b
}

func runWarm(t *testing.T, tc warmCase, remember bool) warmResult {
	srv, err := emulator.New(emulator.Config{Tier: tc.tier, Seed: 1, LatencyScale: 1,
		Output: emulator.OutputModel{MedianTokens: 20, Sigma: 0.3}})
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	lim, err := admit.New(admit.Config{Tier: tc.tier, MaxConcurrency: tc.workers, Rand: rand.New(rand.NewPCG(1, 1))})
	if err != nil {
		t.Fatalf("admit.New: %v", err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var (
		mu   sync.Mutex
		res  warmResult
		wg   sync.WaitGroup
		next int
	)
	for range tc.workers {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= tc.calls {
					return
				}
				body := warmBody(tc, i)
				var c *admit.Call
				if remember {
					c, _ = lim.Prepare(body)
				} else {
					c, _ = lim.PrepareFor(tc.model, 64, admit.EstimateInput(body))
				}
				a, err := c.Admit(ctx)
				if err != nil {
					t.Errorf("admit: %v", err)
					return
				}
				req := httptest.NewRequest(http.MethodPost, "/v1/messages", bytes.NewReader(body))
				req.Header.Set("content-type", "application/json")
				req.Header.Set("x-api-key", "sk-test")
				req.Header.Set("anthropic-version", "2023-06-01")
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, req)
				resp := rec.Result()
				resp.Header = parseRateLimitHeaders(resp.Header)
				resp = a.Response(resp)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				u, _ := admit.MessageUsage(b)
				mu.Lock()
				res.wall = max(res.wall, time.Since(start))
				if i == 0 {
					res.promptN = u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
					res.prefix = res.promptN - u.InputTokens
				}
				switch resp.StatusCode {
				case http.StatusOK:
					res.ok++
					if u.CacheReadInputTokens > 0 {
						res.reads++
					} else {
						res.writes++
					}
				case http.StatusTooManyRequests:
					res.limited++
				default:
					t.Errorf("status %d: %s", resp.StatusCode, b)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res
}
