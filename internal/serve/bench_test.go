package serve_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkServeMessages measures a Messages call (JSON and SSE) straight to the
// emulator and through the gateway in front of it, in the same run, sequentially
// (latency) and from many goroutines (throughput). The emulator's tier is unlimited
// and its latency off, so the difference is the gateway's own cost: auth, parsing,
// admission, proxying, relaying and committing usage.
func BenchmarkServeMessages(b *testing.B) {
	gw := startGateway(b, setup{})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxIdleConns: 1024}}
	for _, mode := range []struct{ name, body string }{
		{"json", `{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"Summarise the benefits of token buckets for rate limiting."}]}`},
		{"stream", `{"model":"claude-haiku-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"Summarise the benefits of token buckets for rate limiting."}]}`},
	} {
		for _, target := range []struct{ name, url, key string }{
			{"direct", gw.em.URL, orgKey},
			{"gateway", gw.URL, clientKey},
		} {
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
