package admit_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/admit"
)

// benchLimiter has limits that never bind, so every iteration is the admitted path.
func benchLimiter(b *testing.B, now func() time.Time) *admit.Limiter {
	b.Helper()
	l, err := admit.New(admit.Config{Tier: "unlimited", MaxConcurrency: 1 << 20, Now: now})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

var (
	benchNeed  = admit.Need{InputTokens: 1000, OutputTokens: 200}
	benchUsage = admit.Usage{InputTokens: 900, CacheReadInputTokens: 300, OutputTokens: 250}
)

// BenchmarkReserveCommit is the hot path of every call: ReserveAt, then CommitAt with
// the usage, no headers.
func BenchmarkReserveCommit(b *testing.B) {
	l := benchLimiter(b, nil)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		r, wait, err := l.ReserveAt("sonnet-5", benchNeed, now)
		if err != nil || wait != 0 {
			b.Fatalf("ReserveAt = %v, %v", wait, err)
		}
		if err := r.CommitAt(benchUsage, nil, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReserveCommitResync adds the resync with the response's headers.
func BenchmarkReserveCommitResync(b *testing.B) {
	l := benchLimiter(b, nil)
	h := http.Header{
		"Anthropic-Ratelimit-Requests-Limit":          {"1000000000"},
		"Anthropic-Ratelimit-Requests-Remaining":      {"999999000"},
		"Anthropic-Ratelimit-Input-Tokens-Limit":      {"1000000000000"},
		"Anthropic-Ratelimit-Input-Tokens-Remaining":  {"999999000000"},
		"Anthropic-Ratelimit-Output-Tokens-Limit":     {"1000000000000"},
		"Anthropic-Ratelimit-Output-Tokens-Remaining": {"999999000000"},
	}
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		r, wait, err := l.ReserveAt("sonnet-5", benchNeed, now)
		if err != nil || wait != 0 {
			b.Fatalf("ReserveAt = %v, %v", wait, err)
		}
		if err := r.CommitAt(benchUsage, h, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWaitCommit is the blocking form on its fast path (it fits at once), with
// the real clock.
func BenchmarkWaitCommit(b *testing.B) {
	l := benchLimiter(b, time.Now)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := l.Wait(ctx, "sonnet-5", benchNeed)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Commit(benchUsage, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReserveCommitParallel runs the hot path from GOMAXPROCS goroutines on one
// class: they contend on the class's bucket lock, AIMD lock and counters.
func BenchmarkReserveCommitParallel(b *testing.B) {
	l := benchLimiter(b, nil)
	var clock atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := t0.Add(time.Duration(clock.Add(1)) * time.Microsecond)
			r, wait, err := l.ReserveAt("sonnet-5", benchNeed, now)
			if err != nil || wait != 0 {
				b.Errorf("ReserveAt = %v, %v", wait, err)
				return
			}
			if err := r.CommitAt(benchUsage, nil, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkReserveCommitParallelClasses spreads the goroutines over four classes.
func BenchmarkReserveCommitParallelClasses(b *testing.B) {
	l := benchLimiter(b, nil)
	classes := []string{"sonnet-5", "haiku-4-5", "opus-4", "fable-5"}
	var clock, worker atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		class := classes[int(worker.Add(1))%len(classes)]
		for pb.Next() {
			now := t0.Add(time.Duration(clock.Add(1)) * time.Microsecond)
			r, wait, err := l.ReserveAt(class, benchNeed, now)
			if err != nil || wait != 0 {
				b.Errorf("ReserveAt = %v, %v", wait, err)
				return
			}
			if err := r.CommitAt(benchUsage, nil, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchRedisLimiter is benchLimiter on a Redis backend (CLADE_TEST_REDIS_URL) with
// its default clock, Redis TIME.
func benchRedisLimiter(b *testing.B) *admit.Limiter {
	b.Helper()
	opts := redisOptions(b)
	be, err := admit.NewRedis(admit.RedisConfig{Client: redisClient(b, opts), Prefix: testPrefix(b, opts)})
	if err != nil {
		b.Fatal(err)
	}
	l, err := admit.New(admit.Config{Tier: "unlimited", MaxConcurrency: 1 << 20, Backend: be})
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkRedisReserve is BenchmarkReserveCommit on a Redis backend: two scripts
// (reserve, settle), so two round trips, per call.
func BenchmarkRedisReserve(b *testing.B) {
	l := benchRedisLimiter(b)
	b.ReportAllocs()
	for b.Loop() {
		r, wait, err := l.Reserve("sonnet-5", benchNeed)
		if err != nil || wait != 0 {
			b.Fatalf("Reserve = %v, %v", wait, err)
		}
		if err := r.Commit(benchUsage, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisReserveParallel is BenchmarkReserveCommitParallel on a Redis backend:
// GOMAXPROCS goroutines on one class, so one hash.
func BenchmarkRedisReserveParallel(b *testing.B) {
	l := benchRedisLimiter(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, wait, err := l.Reserve("sonnet-5", benchNeed)
			if err != nil || wait != 0 {
				b.Errorf("Reserve = %v, %v", wait, err)
				return
			}
			if err := r.Commit(benchUsage, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRedisPing is the baseline for BenchmarkRedisReserve: one round trip to
// the same Redis (a call takes two).
func BenchmarkRedisPing(b *testing.B) {
	c := redisClient(b, redisOptions(b))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Ping(ctx).Err(); err != nil {
			b.Fatal(err)
		}
	}
}
