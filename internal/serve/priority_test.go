package serve_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/serve"
)

// TestPriorityHighFirstLowAged: one team floods a tight tier with high-priority calls
// (the header), and one of its keys, of priority low, sends a call. High goes first:
// high calls sent after the low one are served before it. Aging (2 s a level here)
// lets the low call through while the flood goes on: without it the low call would
// wait until the flood ended, as some high call always waits. At 1 s a level the
// 15-20 high calls queued before the low one took most of its 2 s to serve, leaving
// about 5 sent after it to go first: on a loaded machine 4 (CI).
func TestPriorityHighFirstLowAged(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{cat: tinyTier(t, 600), tier: "tiny", burst: limiterBurst, emBurst: emulatorBurst,
		keys: "priority_aging: 2s\nkeys:\n  ck-team-a-0001: a\n  ck-team-a-bulk: {team: a, priority: low}\n"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sent atomic.Int64
	wait := flood(t, ctx, v2(gw.URL, "ck-team-a-0001"), "h", 20, &sent, option.WithHeader(serve.PriorityHeader, "high"))
	waitFor(t, func() bool { return gw.G.Status(context.Background()).Queued["a"] >= 15 }, "the high flood queued")
	// Every high call numbered from here on was sent after the low call (2 calls of
	// margin for the time between numbering a call and sending it).
	after := sent.Load() + 2
	bulk := v2(gw.URL, "ck-team-a-bulk")
	if _, err := bulk.Messages.New(context.Background(), hello("claude-haiku-4-5", 16, "low call")); err != nil {
		t.Fatalf("low call: %v", err)
	}
	lowAt := -1
	for i, s := range gw.rec.sentSoFar() {
		if s == "low call" {
			lowAt = i
		}
	}
	// The flood goes on for 20 more calls: the low call was not left for its end.
	got := waitSent(t, gw.rec, lowAt+21, "the flood after the low call")
	cancel()
	wait()
	if q := gw.G.Status(context.Background()).Queued["a"]; lowAt < 0 {
		t.Fatalf("the low call was never sent upstream (queued %d)", q)
	}
	ahead := 0
	for _, s := range got[:lowAt] {
		if n, err := strconv.ParseInt(strings.TrimPrefix(s, "h "), 10, 64); err == nil && n >= after {
			ahead++
		}
	}
	after20 := countPrefix(got[lowAt+1:], "h")
	t.Logf("low call served %dth; %d high calls sent after it went before it; %d high calls after it", lowAt+1, ahead, after20)
	if ahead < 5 {
		t.Errorf("%d high calls sent after the low call were served before it, want at least 5: high goes first", ahead)
	}
	// The aging bound: high calls that reached the queue more than 2 levels × 2 s after
	// the low call (about 40 at 10 calls a second) do not go before it; 60 allows for
	// a loaded machine's scheduling.
	if ahead > 60 {
		t.Errorf("%d high calls sent after the low call were served before it, want at most about 40 (its aging bound)", ahead)
	}
	if after20 < 20 {
		t.Errorf("%d high calls were served after the low call, want the flood still going (20)", after20)
	}
}

// TestPriorityHeaderStripped: the priority header is for the gateway: the emulator
// never receives it, and a value that is not a priority is the client's 400, not
// forwarded.
func TestPriorityHeaderStripped(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "unlimited", BurstFraction: 1, APIKeys: []string{orgKey}})
	var mu sync.Mutex
	var seen []http.Header
	// What the emulator received: every request's headers, as its handler saw them.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		em.Server.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	gw := startGateway(t, setup{cat: cat, upURL: up.URL, keys: "keys:\n  ck-team-a-0001: {team: a, priority: high}\n"})
	c := v2(gw.URL, "ck-team-a-0001")
	for _, p := range []string{"low", "high", "7"} {
		if _, err := c.Messages.New(context.Background(), hello("claude-haiku-4-5", 16, "hi"), option.WithHeader(serve.PriorityHeader, p)); err != nil {
			t.Fatalf("call with %s: %s: %v", serve.PriorityHeader, p, err)
		}
	}
	_, err := c.Messages.New(context.Background(), hello("claude-haiku-4-5", 16, "hi"), option.WithHeader(serve.PriorityHeader, "urgent"))
	var e *anthropic.Error
	if !errors.As(err, &e) || e.StatusCode != 400 || e.Type() != "invalid_request_error" || !strings.Contains(e.RawJSON(), serve.PriorityHeader) {
		t.Errorf("call with %s: urgent = %v, want a 400 invalid_request_error naming the header", serve.PriorityHeader, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("the emulator received %d requests, want the 3 valid calls", len(seen))
	}
	for i, h := range seen {
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "x-clade") {
				t.Errorf("request %d reached the emulator with %s: %q", i, k, h.Values(k))
			}
		}
		if h.Get("x-api-key") != orgKey {
			t.Errorf("request %d: the emulator did not get the organisation's key: the recording proves nothing", i)
		}
	}
}
