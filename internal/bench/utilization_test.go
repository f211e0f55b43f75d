package bench

import (
	"context"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
)

func TestMeasureUtilizationSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 8 s")
	}
	t.Parallel()
	// A tier whose limits bind within seconds: 120 RPM, so the buckets' one-minute
	// burst is 120 requests. Warm-up spends it; the window measures the sustained rate.
	cat, err := catalog.Overlay(catalog.Default(), []byte("tiers:\n  quick:\n    batch: {rpm: 100, queue: 1000, max_requests: 1000}\n    limits:\n      default: {rpm: 120, itpm: 100000000, otpm: 100000000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	shape := Shape{Name: "tiny", InputTokens: 10, OutputMedian: 5, MaxTokens: 16}
	u, err := MeasureUtilization(context.Background(), UtilizationConfig{
		Catalog: cat, Tier: "quick", Shape: shape, Warmup: 3 * time.Second, Window: 5 * time.Second,
		Client: "clade", LatencyScale: 0.01,
	})
	if err != nil {
		t.Fatalf("MeasureUtilization: %v", err)
	}
	if u.Binding != "rpm" {
		t.Errorf("binding = %s, want rpm", u.Binding)
	}
	// The burst (120) exceeds what 3 s of warm-up can send only if the client is
	// slow; either way the sustained rate must not exceed the limit by much, and a
	// working limiter keeps 429s away.
	if u.RPM < 0.7 || u.RPM > 1.3 {
		t.Errorf("RPM utilization = %.3f, want within [0.7, 1.3]: about one request per 0.5 s", u.RPM)
	}
	if u.RateLimited != 0 {
		t.Errorf("%d of %d calls got 429, want none", u.RateLimited, u.Sent)
	}
}
