package serve_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

// TestServeMaxWait: a call that cannot be admitted within --max-wait gets the API's
// 429 rate_limit_error with a retry-after, and leaves the queue.
func TestServeMaxWait(t *testing.T) {
	t.Parallel()
	// 6 RPM with a one-request bucket: after the first call, the next fits in 10 s.
	gw := startGateway(t, setup{cat: tinyTier(t, 6), tier: "tiny", burst: 1.0 / 6, maxWait: 300 * time.Millisecond})
	c := v2(gw.URL, clientKey)
	ctx := context.Background()
	if _, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 16, "first")); err != nil {
		t.Fatalf("first call: %v", err)
	}
	_, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 16, "second"))
	var e *anthropic.Error
	if !errors.As(err, &e) || e.StatusCode != 429 || e.Type() != "rate_limit_error" || e.Response.Header.Get("retry-after") == "" {
		t.Fatalf("second call = %v, want a 429 rate_limit_error with retry-after", err)
	}
	if got := gw.rec.count(200) + gw.rec.count(429); got != 1 {
		t.Errorf("upstream saw %d calls, want 1: the refused call never left the gateway", got)
	}
	if q := gw.G.Status(ctx).Queued[serve.DefaultTeam]; q != 0 {
		t.Errorf("queued after the timeout = %d, want 0", q)
	}
}

// TestServeClientLeavesQueue: a client that gives up while its call waits takes the
// call out of the queue, and it is never sent.
func TestServeClientLeavesQueue(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{cat: tinyTier(t, 6), tier: "tiny", burst: 1.0 / 6})
	c := v2(gw.URL, clientKey)
	if _, err := c.Messages.New(context.Background(), hello("claude-haiku-4-5", 16, "first")); err != nil {
		t.Fatalf("first call: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 16, "waiting")); err == nil {
				t.Errorf("waiting call %d succeeded, want it cancelled", i)
			}
		}()
	}
	waitFor(t, func() bool { return gw.G.Status(context.Background()).Queued[serve.DefaultTeam] >= 2 }, "two calls queued")
	cancel()
	wg.Wait()
	waitFor(t, func() bool { return gw.G.Status(context.Background()).Queued[serve.DefaultTeam] == 0 }, "the queue empty")
	if got := gw.rec.count(200); got != 1 {
		t.Errorf("upstream answered %d calls, want only the first", got)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestServeRetriesOverload: with a third of the API's answers 529, clients that do not
// retry at all still see (nearly) every call succeed, as the gateway retries for them.
func TestServeRetriesOverload(t *testing.T) {
	t.Parallel()
	faults, err := emulator.ParseFaults("overloaded=0.3")
	if err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, setup{emCfg: emulator.Config{Faults: faults, Seed: 5},
		backoff: upstream.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	const n = 40
	failed, ferr := burst(context.Background(), v2(gw.URL, clientKey), n)
	// Each call fails only if all 4 attempts are overloaded: 0.3⁴ ≈ 1 %.
	if failed > 2 {
		t.Errorf("%d of %d calls failed (first: %v), want at most 2", failed, n, ferr)
	}
	if gw.rec.count(529) == 0 {
		t.Fatalf("the emulator sent no 529; the test proves nothing")
	}
	if got := testkit.MetricSum(t, gw.reg, "clade_serve_upstream_throttled_total", map[string]string{"code": "529"}); got != float64(gw.rec.count(529)) {
		t.Errorf("clade_serve_upstream_throttled_total{code=529} = %v, want %d", got, gw.rec.count(529))
	}
}

// TestServeRetriesRateLimited: the API's 429s (here its acceleration limit, with a
// retry-after) pause the class and are retried by the gateway after the pause, so
// clients that do not retry see none of them.
func TestServeRetriesRateLimited(t *testing.T) {
	t.Parallel()
	faults, err := emulator.ParseFaults("ramp=0.15:1s")
	if err != nil {
		t.Fatal(err)
	}
	gw := startGateway(t, setup{emCfg: emulator.Config{Faults: faults, Seed: 3}})
	const n = 30
	failed, ferr := burst(context.Background(), v2(gw.URL, clientKey), n)
	// A call fails only if all 4 attempts are refused: 0.15⁴ ≈ 0.05 %.
	if failed > 0 {
		t.Errorf("%d of %d calls failed (first: %v), want none", failed, n, ferr)
	}
	if gw.rec.count(429) == 0 {
		t.Fatalf("the emulator sent no 429; the test proves nothing")
	}
	if got := testkit.MetricSum(t, gw.reg, "clade_serve_upstream_retries_total", map[string]string{"reason": "rate_limited"}); got != float64(gw.rec.count(429)) {
		t.Errorf("retries after a 429 = %v, want one per upstream 429 (%d)", got, gw.rec.count(429))
	}
}

var volatileID = regexp.MustCompile(`(msg|req|toolu)_[A-Za-z0-9]+`)

// TestServeStreamRelay: an SSE answer reaches the client byte for byte as the API sent
// it, and event by event as it is generated, not at the end.
func TestServeStreamRelay(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{emCfg: emulator.Config{Seed: 9, LatencyScale: 1}})
	body := `{"model":"claude-haiku-4-5","max_tokens":150,"stream":true,"messages":[{"role":"user","content":"Tell me about rivers"}]}`
	post := func(url, key string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/messages", strings.NewReader(body))
		req.Header.Set("x-api-key", key)
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("content-type", "application/json")
		return http.DefaultClient.Do(req)
	}
	// Through the gateway: note when the first delta and the end arrive.
	resp, err := post(gw.URL, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("stream through the gateway: %d %s", resp.StatusCode, ct)
	}
	var via strings.Builder
	var firstDelta, end time.Time
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		via.WriteString(line)
		if firstDelta.IsZero() && strings.HasPrefix(line, "event: content_block_delta") {
			firstDelta = time.Now()
		}
		if err != nil {
			break
		}
	}
	end = time.Now()
	resp.Body.Close()
	// Straight from the emulator, same seed and body.
	resp, err = post(gw.em.URL, orgKey)
	if err != nil {
		t.Fatal(err)
	}
	direct, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got, want := volatileID.ReplaceAllString(via.String(), "ID"), volatileID.ReplaceAllString(string(direct), "ID")
	if got != want {
		t.Errorf("stream through the gateway differs from the API's:\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(got, "event: message_stop") {
		t.Fatalf("stream has no message_stop:\n%s", got)
	}
	// 150 tokens at the emulator's modelled speed take well over a second; relayed
	// event by event, the first delta arrives long before the end.
	if gap := end.Sub(firstDelta); gap < 300*time.Millisecond {
		t.Errorf("first delta came %v before the end of the stream, want it relayed as generated (≥ 300ms)", gap)
	}
}

// TestServeMaxQueueBytes: the bodies of waiting calls are bounded in bytes, not only
// in number: once they hold MaxQueueBytes, a further call gets a 429 at once, in the
// API's envelope, and is never sent.
func TestServeMaxQueueBytes(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{cat: tinyTier(t, 6), tier: "tiny", burst: 1.0 / 6, maxQueueBytes: 1 << 20})
	c := v2(gw.URL, clientKey)
	if _, err := c.Messages.New(context.Background(), hello("claude-haiku-4-5", 16, "first")); err != nil {
		t.Fatalf("first call: %v", err)
	}
	big := strings.Repeat("x", 400<<10)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 { // one waits in the limiter, two in the queue: 800 KiB queued
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Messages.New(ctx, hello("claude-haiku-4-5", 16, big))
		}()
	}
	waitFor(t, func() bool { return gw.G.Status(context.Background()).Queued[serve.DefaultTeam] == 2 }, "two large calls queued")
	_, err := c.Messages.New(context.Background(), hello("claude-haiku-4-5", 16, big))
	var e *anthropic.Error
	if !errors.As(err, &e) || e.StatusCode != 429 || e.Type() != "rate_limit_error" || !strings.Contains(e.RawJSON(), "MiB") {
		t.Errorf("a call over MaxQueueBytes = %v, want an immediate 429 rate_limit_error naming the bytes", err)
	}
	// A small call still fits.
	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = c.Messages.New(sctx, hello("claude-haiku-4-5", 16, "small"))
	scancel()
	if errors.As(err, &e) && e.StatusCode == 429 {
		t.Errorf("a small call was refused with %v, want it queued", err)
	}
	cancel()
	wg.Wait()
	if got := gw.rec.count(200); got != 1 {
		t.Errorf("upstream answered %d calls, want only the first", got)
	}
}
