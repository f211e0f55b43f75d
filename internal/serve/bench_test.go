package serve_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/testkit"
)

// BenchmarkServeMessages measures a Messages call (JSON and SSE) straight to the
// emulator and through the gateway in front of it, in the same run, sequentially
// (latency) and from many goroutines (throughput). The emulator's tier is unlimited
// and its latency off, so the difference is the gateway's own cost: auth, parsing,
// admission, proxying, relaying and committing usage. "budgets" is the gateway as
// clade bench gateway runs it: a team budget and a key budget on a SQLite spend
// store, and the limits in Redis (CLADE_TEST_REDIS_URL; skipped without it).
func BenchmarkServeMessages(b *testing.B) {
	gw := startGateway(b, setup{})
	var budgeted *gateway
	if os.Getenv(testkit.RedisEnv) != "" {
		opts, err := admit.ParseRedisURL(testkit.RedisURL(b))
		if err != nil {
			b.Fatal(err)
		}
		rc := redis.NewClient(opts)
		b.Cleanup(func() { rc.Close() })
		be, err := admit.NewRedis(admit.RedisConfig{Client: rc, Namespace: fmt.Sprintf("serve-bench-%d", time.Now().UnixNano()), Lease: admit.DefaultRedisLease})
		if err != nil {
			b.Fatal(err)
		}
		budgeted = startGateway(b, setup{keys: budgetKeys("100000"), spend: jobstest.Open(b, context.Background(), jobstest.SQLite().NewDSN(b)), backend: be, em: gw.em})
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxIdleConns: 1024}}
	for _, mode := range []struct{ name, body string }{
		{"json", `{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"Summarise the benefits of token buckets for rate limiting."}]}`},
		{"stream", `{"model":"claude-haiku-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Summarise the benefits of token buckets for rate limiting."}]}`},
	} {
		targets := []struct{ name, url, key string }{
			{"direct", gw.em.URL, orgKey},
			{"gateway", gw.URL, clientKey},
		}
		if budgeted != nil {
			targets = append(targets, struct{ name, url, key string }{"budgets", budgeted.URL, researchKey})
		}
		for _, target := range targets {
			call := func(b *testing.B) {
				req, _ := http.NewRequest(http.MethodPost, target.url+"/v1/messages", strings.NewReader(mode.body))
				req.Header.Set("x-api-key", target.key)
				req.Header.Set("anthropic-version", "2023-06-01")
				req.Header.Set("content-type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.Run(mode.name+"/"+target.name+"/serial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					call(b)
				}
			})
			b.Run(mode.name+"/"+target.name+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						call(b)
					}
				})
			})
		}
	}
}
