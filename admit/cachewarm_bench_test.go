package admit_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/clade-dev/clade/admit"
)

// BenchmarkPrepare is Limiter.Prepare and Call.Need, the gateway's and the
// middleware's per-call estimate: bodies without cache_control (a short call, and a
// 24 KB prompt: what the "cache_control" check reads), and a 24 KB prompt with a
// breakpoint, its prefix cold and warm (its scan: parsing and hashing the prefix).
func BenchmarkPrepare(b *testing.B) {
	short, _ := json.Marshal(map[string]any{"model": mwModel, "max_tokens": 300,
		"messages": []any{map[string]any{"role": "user", "content": "In a few words, say something about the number 7."}}})
	for _, bc := range []struct {
		name string
		body []byte
		warm bool
	}{
		{"short", short, false},
		{"24KB", cachedBody(mwModel, "", "What is it about?"), false},
		{"24KB cache_control cold", cachedBody(mwModel, "5m", "What is it about?"), false},
		{"24KB cache_control warm", cachedBody(mwModel, "5m", "What is it about?"), true},
	} {
		b.Run(strings.ReplaceAll(bc.name, " ", "_"), func(b *testing.B) {
			lim, err := admit.New(admit.Config{Tier: "tier-4"})
			if err != nil {
				b.Fatal(err)
			}
			if bc.warm { // an answer that wrote the prefix
				c, _ := lim.Prepare(bc.body)
				a, err := c.Admit(b.Context())
				if err != nil {
					b.Fatal(err)
				}
				a.Settle(200, nil, &admit.Usage{InputTokens: 10, CacheCreationInputTokens: prefixTokens, OutputTokens: 10})
			}
			b.ReportAllocs()
			var in int64
			for b.Loop() {
				c, ok := lim.Prepare(bc.body)
				if !ok {
					b.Fatal("Prepare = false")
				}
				in = c.Need().InputTokens
			}
			b.ReportMetric(float64(in), "input/op")
		})
	}
}
