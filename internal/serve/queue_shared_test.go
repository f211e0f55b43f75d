package serve_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

// orderedGateway starts a gateway in front of em, its limits on be, with order
// (nil: each gateway its own order).
func orderedGateway(t *testing.T, cat *catalog.Catalog, em *emulator.Running, be admit.Backend, keys string, order *serve.SharedOrder) *gateway {
	t.Helper()
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone(), byCode: map[int]int{}}
	up, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(orgKey), HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := admit.New(admit.Config{Catalog: cat, Tier: "tiny", Burst: limiterBurst, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	k, err := serve.ParseKeys([]byte(keys))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	g, err := serve.New(serve.Config{Upstream: up, Limiter: lim, Keys: k, Registry: reg, Catalog: cat, Order: order})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return &gateway{URL: srv.URL, G: g, em: em, rec: rec, reg: reg}
}

// TestServeSharedFairOrder: two gateways on one Redis, sharing the limits of one
// emulator's tight tier; team a (weight 1) floods the first, team b (weight 4) the
// second. With the shared order b gets 4/5 of the calls admitted (0.65 to 0.95
// asserted, over 100 calls); with each gateway in its own order (the control run),
// the two gateways' baton holders contend for the buckets and b gets about half
// (below 0.65 asserted), which shows the measure tells the two apart.
func TestServeSharedFairOrder(t *testing.T) {
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
	const keys = "teams:\n  b: {weight: 4}\nkeys:\n  ck-team-a-0001: a\n  ck-team-b-0001: b\n"
	run := func(t *testing.T, shared bool) float64 {
		ns := fmt.Sprintf("serve-order-test-%d", time.Now().UnixNano())
		cat := tinyTier(t, 600)
		em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "tiny", BurstFraction: emulatorBurst, APIKeys: []string{orgKey}})
		var gws [2]*gateway
		for i := range gws {
			be, err := admit.NewRedis(admit.RedisConfig{Client: client, Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			var order *serve.SharedOrder
			if shared {
				if order, err = serve.NewSharedOrder(serve.SharedOrderConfig{Client: client, Namespace: ns}); err != nil {
					t.Fatal(err)
				}
			}
			gws[i] = orderedGateway(t, cat, em, be, keys, order)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var sa, sb atomic.Int64
		waitA := flood(t, ctx, v2(gws[0].URL, "ck-team-a-0001"), "a", 12, &sa)
		waitB := flood(t, ctx, v2(gws[1].URL, "ck-team-b-0001"), "b", 12, &sb)
		defer waitB()
		defer waitA()
		defer cancel()
		waitFor(t, func() bool {
			return gws[0].G.Status(context.Background()).Queued["a"] >= 5 && gws[1].G.Status(context.Background()).Queued["b"] >= 5
		}, "both gateways queued")
		fromA, fromB := len(gws[0].rec.sentSoFar()), len(gws[1].rec.sentSoFar())
		const window = 100
		deadline := time.Now().Add(60 * time.Second)
		var na, nb int
		for {
			na, nb = len(gws[0].rec.sentSoFar())-fromA, len(gws[1].rec.sentSoFar())-fromB
			if na+nb >= window {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d calls sent upstream in 60 s, want %d", na+nb, window)
			}
			time.Sleep(2 * time.Millisecond)
		}
		qa, qb := gws[0].G.Status(context.Background()).Queued["a"], gws[1].G.Status(context.Background()).Queued["b"]
		if qa == 0 || qb == 0 {
			t.Fatalf("queued at the end = a %d, b %d: want both gateways still waiting, or the order was not exercised", qa, qb)
		}
		share := float64(nb) / float64(na+nb)
		t.Logf("shared order %v: team a (gateway 1) %d, team b (gateway 2, weight 4) %d: b's share %.2f", shared, na, nb, share)
		return share
	}
	if share := run(t, true); share < 0.65 || share > 0.95 {
		t.Errorf("with the shared order, team b (weight 4) had %.2f of the calls admitted, want 0.80 ± 0.15", share)
	}
	if share := run(t, false); share >= 0.65 {
		t.Errorf("control: with each gateway in its own order, team b had %.2f of the calls, want about half (< 0.65): the test cannot tell the orders apart", share)
	}
}

// TestServeSharedOrderRedisDown: with the shared order's Redis unreachable, a gateway
// goes on in its own order: a burst that queues is served in full.
func TestServeSharedOrderRedisDown(t *testing.T) {
	t.Parallel()
	ln := httptest.NewServer(http.NotFoundHandler()) // a port that is then closed: nothing listens
	addr := ln.Listener.Addr().String()
	ln.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	order, err := serve.NewSharedOrder(serve.SharedOrderConfig{Client: client, Namespace: "down"})
	if err != nil {
		t.Fatal(err)
	}
	cat := tinyTier(t, 600)
	em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "tiny", BurstFraction: emulatorBurst, APIKeys: []string{orgKey}})
	gw := orderedGateway(t, cat, em, nil, "keys:\n  ck-team-a-0001: a\n", order)
	const n = 25 // over twice the bucket: most of them queue
	if failed, err := burst(context.Background(), v2(gw.URL, "ck-team-a-0001"), n); failed > 0 {
		t.Fatalf("%d of %d calls failed with the order's Redis down: %v", failed, n, err)
	}
	if got := testkit.MetricSum(t, gw.reg, "clade_serve_queue_wait_seconds", map[string]string{"team": "a"}); got < 1 {
		t.Errorf("total queue wait = %.2fs, want the burst to have queued (so the order was consulted)", got)
	}
}

// countingRedis counts the scripts run through it.
type countingRedis struct {
	*redis.Client
	n atomic.Int64
}

func (c *countingRedis) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	c.n.Add(1)
	return c.Client.EvalSha(ctx, sha, keys, args...)
}

func (c *countingRedis) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	c.n.Add(1)
	return c.Client.Eval(ctx, script, keys, args...)
}

// TestServeSharedOrderIdleCostsNothing: calls that find their gateway's queue empty
// make no round trip to the shared order's Redis; calls that queue do.
func TestServeSharedOrderIdleCostsNothing(t *testing.T) {
	t.Parallel()
	url := testkit.RedisURL(t)
	opts, err := admit.ParseRedisURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := &countingRedis{Client: redis.NewClient(opts)}
	t.Cleanup(func() { client.Close() })
	ns := fmt.Sprintf("serve-order-idle-%d", time.Now().UnixNano())
	order, err := serve.NewSharedOrder(serve.SharedOrderConfig{Client: client, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	cat := tinyTier(t, 600)
	em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "tiny", BurstFraction: emulatorBurst, APIKeys: []string{orgKey}})
	gw := orderedGateway(t, cat, em, nil, "keys:\n  ck-team-a-0001: a\n", order)
	c := v2(gw.URL, "ck-team-a-0001")
	for i := range 5 { // one at a time, within the bucket: nobody queues
		if _, err := c.Messages.New(context.Background(), hello("claude-haiku-4-5", 16, fmt.Sprintf("one %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := client.n.Load(); got != 0 {
		t.Errorf("5 calls one at a time ran %d scripts on the shared order's Redis, want 0", got)
	}
	if failed, err := burst(context.Background(), c, 20); failed > 0 {
		t.Fatalf("%d of 20 calls failed: %v", failed, err)
	}
	if got := client.n.Load(); got < 10 {
		t.Errorf("a burst that queued ran %d scripts, want the queued calls to bid (≥ 10): the count proves nothing", got)
	}
}
