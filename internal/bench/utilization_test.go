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
	// A tier whose limits bind within seconds: 300 RPM with buckets of one second's
	// worth (5 requests), so a one-second warm-up spends the burst and the window
	// measures the sustained 5 requests a second.
	cat, err := catalog.Overlay(catalog.Default(), []byte("tiers:\n  quick:\n    batch: {rpm: 100, queue: 1000, max_requests: 1000}\n    limits:\n      default: {rpm: 300, itpm: 100000000, otpm: 100000000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	shape := Shape{Name: "tiny", InputTokens: 10, OutputMedian: 5, MaxTokens: 16}
	u, err := MeasureUtilization(context.Background(), UtilizationConfig{
		Catalog: cat, Tier: "quick", Shape: shape, Warmup: time.Second, Window: 6 * time.Second,
		Client: "clade", LatencyScale: 0.01, Burst: 1.0 / 60,
	})
	if err != nil {
		t.Fatalf("MeasureUtilization: %v", err)
	}
	if u.Binding != "rpm" {
		t.Errorf("binding = %s, want rpm", u.Binding)
	}
	// About 30 requests in the window: the sustained rate must reach a good part of
	// the limit even under -race on a busy machine, and must not exceed what the
	// limit allows in the window: its 30 plus the bucket's 5 of burst, which a
	// stall of a second (a loaded machine) lets refill, and one at the window's
	// edge (36/30 = 1.2).
	if u.RPM < 0.5 || u.RPM > 1.2 {
		t.Errorf("RPM utilization = %.3f, want within [0.5, 1.2]", u.RPM)
	}
	// With one-second buckets, a request delayed on its way (a loaded machine) can
	// arrive after the server's bucket filled up and stopped refilling, so a few 429s
	// are possible here that one-minute buckets would absorb; many would mean the
	// limiter is not pacing.
	if u.Sent == 0 || float64(u.RateLimited) > 0.2*float64(u.Sent) {
		t.Errorf("%d of %d calls got 429, want at most 20 %%", u.RateLimited, u.Sent)
	}
}
