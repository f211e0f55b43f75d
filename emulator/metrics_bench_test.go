package emulator

import (
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkMetricsHotPath is what every Messages request costs in metrics: one
// response with its duration and one usage record. It should not allocate.
func BenchmarkMetricsHotPath(b *testing.B) {
	reg := prometheus.NewRegistry()
	cat := catalog.Default()
	tier, err := cat.Tier("start")
	if err != nil {
		b.Fatal(err)
	}
	m := newMetrics(reg)
	m.watch(reg, cat, newLimiter(cat, tier, 1, false), time.Now)
	b.ReportAllocs()
	for b.Loop() {
		m.observeResponse("messages", "haiku-4-5", 200, 3*time.Millisecond)
		m.observeTokens("haiku-4-5", 120, 80, 0, 0)
	}
}
