package serve_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/testkit"
)

// tinyTier is a catalog whose tier "tiny" allows rpm requests per minute and tokens
// enough never to bind, so a test's burst is paced by requests alone.
func tinyTier(t testing.TB, rpm int) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Overlay(catalog.Default(), fmt.Appendf(nil,
		"tiers:\n  tiny:\n    batch: {rpm: 100, queue: 1000, max_requests: 1000}\n    limits:\n      default: {rpm: %d, itpm: 100000000, otpm: 100000000}\n", rpm))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// The tests' buckets: the emulator's (the API's) hold 3 s of the limit, the
// gateway's 1 s. A bucket of seconds makes a test's burst queue within seconds; the
// gateway's being smaller keeps the test free of a race the real minute-long buckets
// do not have: under a loaded -race run a call can take half a second to reach the
// emulator, which, full meanwhile, loses refill the gateway counted on. A burst of
// six times the gateway's bucket is still twice the emulator's.
const (
	limiterBurst  = 1.0 / 60
	emulatorBurst = 3.0 / 60
)

// burst sends n calls at once through c and returns how many failed, with the first
// error.
func burst(ctx context.Context, c anthropic.Client, n int) (int, error) {
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first atomic.Value
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 32, fmt.Sprintf("call %d", i)))
			if err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	err, _ := first.Load().(error)
	return int(failed.Load()), err
}

// TestServeBurstQueued sends six times a tiny tier's bucket at once: the client sees
// no error (its SDK does not even retry), the API sees (nearly) no 429, and the
// gateway made the calls wait instead.
func TestServeBurstQueued(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{cat: tinyTier(t, 600), tier: "tiny", burst: limiterBurst, emBurst: emulatorBurst})
	const n = 60
	failed, err := burst(context.Background(), v2(gw.URL, clientKey), n)
	if failed > 0 {
		t.Fatalf("%d of %d calls failed through the gateway; first: %v", failed, n, err)
	}
	if got := gw.rec.count(200); got != n {
		t.Errorf("upstream answered %d calls with 200, want %d", got, n)
	}
	if got := gw.rec.count(429); got > 1 {
		t.Errorf("upstream answered %d calls with 429, want at most 1", got)
	}
	// 50 calls over the bucket, at 10 a second: about 5 s of waiting for the last, and
	// minutes summed over all.
	if got := testkit.MetricSum(t, gw.reg, "clade_serve_queue_wait_seconds", map[string]string{"team": serve.DefaultTeam}); got < 20 {
		t.Errorf("total queue wait = %.1fs, want the burst to have waited (≥ 20 s summed)", got)
	}
}

// TestServeFairShare floods the gateway from team A, then sends a few calls from team
// B: B's calls are served alongside A's, not behind the whole flood.
func TestServeFairShare(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{cat: tinyTier(t, 1200), tier: "tiny", burst: limiterBurst, emBurst: emulatorBurst,
		keys: "keys:\n  ck-team-a-0001: a\n  ck-team-b-0001: b\n"})
	ctx := context.Background()
	const nA, nB = 80, 5
	var wg sync.WaitGroup
	ca := v2(gw.URL, "ck-team-a-0001")
	for i := range nA {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ca.Messages.New(ctx, hello("claude-haiku-4-5", 32, fmt.Sprintf("a %d", i))); err != nil {
				t.Errorf("team a call %d: %v", i, err)
			}
		}()
	}
	// Wait until much of A's flood is queued behind the bucket's 20.
	deadline := time.Now().Add(20 * time.Second)
	for gw.G.Status(ctx).Queued["a"] < 30 {
		if time.Now().After(deadline) {
			t.Fatalf("team a never had 30 calls queued: %+v", gw.G.Status(ctx).Queued)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := len(gw.rec.sentSoFar())
	failed, err := burst(ctx, v2(gw.URL, "ck-team-b-0001"), nB)
	if failed > 0 {
		t.Errorf("%d team b calls failed: %v", failed, err)
	}
	// In the order calls went upstream after B's were sent: B's first went before
	// most of the 30 or more of A's that were waiting (the calls of A already on
	// their way, and those admitted while B's reach the gateway, which on a loaded
	// machine takes a while, go first), and all of B's before A's flood had gone.
	sent := gw.rec.sentSoFar()[before:]
	aBefore, aBetween, bSeen := 0, 0, 0
	for _, text := range sent {
		if bSeen == nB {
			break
		}
		switch {
		case strings.HasPrefix(text, "call "):
			bSeen++
		case bSeen == 0:
			aBefore++
		default:
			aBetween++
		}
	}
	if bSeen != nB || aBefore > 15 || aBefore+aBetween >= 30 {
		t.Errorf("upstream order after team b's calls were sent: %d of team a's went before team b's first and %d between its first and its last of %d; want well under the 30 queued before the first, and b's all before the flood had gone; order %q",
			aBefore, aBetween, nB, sent[:min(len(sent), 30)])
	}
	wg.Wait()
	// B's calls waited their fair turns (every other slot of the bucket: 0.3 s on
	// average for 5 calls at 20 a second), not their turn behind A's queue (1.5 s
	// and more): B's mean wait in the fair queue is under half of A's (about 1.3 s). (Counting A's
	// between B's first and last would not say it: on a loaded machine one of B's
	// calls can reach the gateway a second after the others, and the gateway serves
	// the A's it has meanwhile.)
	aWait := testkit.MetricSum(t, gw.reg, "clade_serve_queue_wait_seconds", map[string]string{"team": "a"}) / nA
	bWait := testkit.MetricSum(t, gw.reg, "clade_serve_queue_wait_seconds", map[string]string{"team": "b"}) / nB
	if aWait < 0.5 || bWait > aWait/2 {
		t.Errorf("mean queue wait: team a %.2fs, team b %.2fs; want a's flood to wait (≥ 0.5 s) and b's under half of it", aWait, bWait)
	}
	if got := gw.rec.count(429); got > 1 {
		t.Errorf("upstream 429s = %d, want at most 1", got)
	}
}

// TestServeSharedRedis runs two gateways of one organisation on one Redis: together
// they keep to the organisation's limit, so the API refuses (nearly) nothing;
// without leases and with a lease of a second (ten calls' worth at this tier's
// 600 RPM, taken when the bucket has them: the lease's own accounting is
// admit's TestRedisLease*).
func TestServeSharedRedis(t *testing.T) {
	t.Parallel()
	url := testkit.RedisURL(t)
	opts, err := admit.ParseRedisURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v", admit.RedactURL(url), err)
	}
	for _, lease := range []time.Duration{0, time.Second} {
		t.Run(fmt.Sprintf("lease=%v", lease), func(t *testing.T) {
			t.Parallel()
			ns := fmt.Sprintf("serve-test-%d", time.Now().UnixNano())
			backend := func() admit.Backend {
				be, err := admit.NewRedis(admit.RedisConfig{Client: client, Namespace: ns, Lease: lease})
				if err != nil {
					t.Fatal(err)
				}
				return be
			}
			cat := tinyTier(t, 600)
			first := startGateway(t, setup{cat: cat, tier: "tiny", burst: limiterBurst, emBurst: emulatorBurst, backend: backend()})
			second := startGateway(t, setup{cat: cat, tier: "tiny", burst: limiterBurst, emBurst: emulatorBurst, backend: backend(), em: first.em})
			const n = 30 // per gateway: 60 in all, six times the bucket
			var wg sync.WaitGroup
			for _, gw := range []*gateway{first, second} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if failed, err := burst(context.Background(), v2(gw.URL, clientKey), n); failed > 0 {
						t.Errorf("%d of %d calls failed through %s: %v", failed, n, gw.URL, err)
					}
				}()
			}
			wg.Wait()
			ok := first.rec.count(200) + second.rec.count(200)
			refused := first.rec.count(429) + second.rec.count(429)
			if ok != 2*n || refused > 1 {
				t.Errorf("upstream answered %d with 200 and %d with 429, want %d and at most 1", ok, refused, 2*n)
			}
		})
	}
}

// TestServeKeyNeverLeaks collects every byte a client, the logs, /metrics and the
// status page can see, over successes and failures, and looks for the organisation's
// key.
func TestServeKeyNeverLeaks(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{keys: "keys:\n  ck-search-0001: search\n"})
	var seen strings.Builder
	var mu sync.Mutex
	tap := option.WithMiddleware(func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		resp, err := next(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			for k, vs := range resp.Header {
				fmt.Fprintf(&seen, "%s: %s\n", k, strings.Join(vs, ","))
			}
			seen.Write(b)
			mu.Unlock()
			resp.Body = io.NopCloser(strings.NewReader(string(b)))
		}
		return resp, err
	})
	ctx := context.Background()
	good := v2(gw.URL, "ck-search-0001", tap)
	good.Messages.New(ctx, hello("claude-haiku-4-5", 20, "hi"))
	st := good.Messages.NewStreaming(ctx, hello("claude-haiku-4-5", 20, "hi"))
	for st.Next() {
	}
	st.Close()
	good.Messages.New(ctx, hello("claude-no-such-model", 20, "hi")) // 404 from upstream
	// A 400 from upstream: no max_tokens.
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/v1/messages",
		strings.NewReader(`{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("x-api-key", "ck-search-0001")
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "max_tokens") {
		t.Errorf("POST without max_tokens = %d %s, want the API's 400", resp.StatusCode, b)
	}
	for k, vs := range resp.Header {
		fmt.Fprintf(&seen, "%s: %s\n", k, strings.Join(vs, ","))
	}
	seen.Write(b)
	good.Models.Get(ctx, "nope", anthropic.ModelGetParams{})
	bad := v2(gw.URL, "ck-wrong-0001", tap)
	bad.Messages.New(ctx, hello("claude-haiku-4-5", 20, "hi"))
	for _, path := range []string{"/metrics", "/_clade/status", "/"} {
		resp, err := http.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen.Write(b)
	}
	if gw.rec.count(404) == 0 || gw.rec.count(400) == 0 || gw.rec.count(200) == 0 {
		t.Fatalf("upstream statuses %v: want successes and failures to have reached the API", gw.rec.byCode)
	}
	for name, text := range map[string]string{"client responses, metrics and status": seen.String(), "logs": gw.logs.String()} {
		if strings.Contains(text, orgKey) || strings.Contains(text, orgKey[:20]) {
			t.Errorf("the organisation's key appears in the %s", name)
		}
	}
	// Client keys, good or bad, are not in the logs, /metrics or the status either.
	var views strings.Builder
	views.WriteString(gw.logs.String())
	for _, path := range []string{"/metrics", "/_clade/status"} {
		resp, err := http.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		views.Write(b)
	}
	for _, key := range []string{"ck-search-0001", "ck-wrong-0001"} {
		if strings.Contains(views.String(), key) {
			t.Errorf("the client key %s appears in the logs, /metrics or /_clade/status", key)
		}
	}
	if !strings.Contains(gw.logs.String(), "upstream call") {
		t.Errorf("logs have no upstream call line; the test would not see a key logged:\n%s", gw.logs.String())
	}
}
