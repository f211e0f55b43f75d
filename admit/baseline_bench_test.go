package admit_test

import (
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// BenchmarkBaselineXTimeRate is the baseline for BenchmarkReserveCommit: three
// golang.org/x/time/rate limiters (requests, input and output tokens) taking one
// call's tokens with AllowN, the least any three-bucket limiter must do per call.
func BenchmarkBaselineXTimeRate(b *testing.B) {
	now := time.Now()
	req := rate.NewLimiter(rate.Limit(1e12), 1<<40)
	in := rate.NewLimiter(rate.Limit(1e12), 1<<40)
	out := rate.NewLimiter(rate.Limit(1e12), 1<<40)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if !req.AllowN(now, 1) || !in.AllowN(now, 1000) || !out.AllowN(now, 200) {
			b.Fatal("baseline limiter refused")
		}
	}
}
