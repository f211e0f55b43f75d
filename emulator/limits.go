package emulator

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/wire"
)

// bucket is a continuously refilling token bucket. level may go below zero when actual
// usage exceeds what was admitted; the debt is paid back by refill.
type bucket struct {
	limit    float64 // per minute, as reported in the *-limit headers
	capacity float64 // most it holds (limit × burst fraction)
	level    float64
	last     time.Time
}

func newBucket(limit int64, burst float64, now time.Time) bucket {
	c := float64(limit) * burst
	return bucket{limit: float64(limit), capacity: c, level: c, last: now}
}

func (b *bucket) rate() float64 { return b.limit / 60 } // per second

func (b *bucket) refill(now time.Time) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.level = math.Min(b.capacity, b.level+dt*b.rate())
		b.last = now
	}
}

// wait is how long until the bucket holds need (need is capped at capacity, so a
// request larger than the bucket is admitted when the bucket is full).
func (b *bucket) wait(need float64) time.Duration {
	need = math.Min(need, b.capacity)
	if b.level >= need {
		return 0
	}
	return time.Duration((need - b.level) / b.rate() * float64(time.Second))
}

// resetAt is when the bucket will be full again.
func (b *bucket) resetAt(now time.Time) time.Time {
	if b.level >= b.capacity {
		return now
	}
	return now.Add(time.Duration((b.capacity - b.level) / b.rate() * float64(time.Second)))
}

// classBuckets are one model class's RPM, ITPM and OTPM buckets.
type classBuckets struct {
	mu           sync.Mutex
	req, in, out bucket
}

// limiter applies a tier's limits per organisation and model class.
type limiter struct {
	cat    *catalog.Catalog
	tier   *catalog.Tier
	burst  float64
	legacy bool

	mu      sync.Mutex
	classes map[string]*classBuckets
}

func newLimiter(cat *catalog.Catalog, tier *catalog.Tier, burst float64, legacy bool) *limiter {
	return &limiter{cat: cat, tier: tier, burst: burst, legacy: legacy, classes: make(map[string]*classBuckets)}
}

func (l *limiter) class(name string, now time.Time) *classBuckets {
	l.mu.Lock()
	defer l.mu.Unlock()
	cb, ok := l.classes[name]
	if !ok {
		lim := l.tier.ClassLimits(name)
		cb = &classBuckets{
			req: newBucket(lim.RPM, l.burst, now),
			in:  newBucket(lim.ITPM, l.burst, now),
			out: newBucket(lim.OTPM, l.burst, now),
		}
		l.classes[name] = cb
	}
	return cb
}

// admission is a granted request; finish must be called with the actual output.
type admission struct {
	cb       *classBuckets
	reserved float64 // output tokens reserved at admission (legacy mode)
}

// rateLimited is a refused admission.
type rateLimited struct {
	err        *wire.Error
	retryAfter time.Duration
	limit      string // "requests", "input_tokens" or "output_tokens"
}

// admit takes 1 request and inputCost input tokens from the class's buckets, or says
// which limit refuses and for how long. OTPM admits while the bucket is above zero
// (tokens are charged as generated); in legacy mode max_tokens is reserved instead.
func (l *limiter) admit(class string, inputCost, maxTokens int64, org string, now time.Time) (*admission, *rateLimited) {
	cb := l.class(class, now)
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.req.refill(now)
	cb.in.refill(now)
	cb.out.refill(now)
	outNeed := 1.0
	if l.legacy {
		outNeed = float64(maxTokens)
	}
	checks := []struct {
		b    *bucket
		need float64
		what string
		name string
	}{
		{&cb.req, 1, "requests per minute", "requests"},
		{&cb.in, float64(inputCost), "input tokens per minute", "input_tokens"},
		{&cb.out, outNeed, "output tokens per minute", "output_tokens"},
	}
	for _, c := range checks {
		if d := c.b.wait(c.need); d > 0 {
			e := wire.Errorf(wire.RateLimit,
				"This request would exceed the rate limit for your organization (%s) of %s %s. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.",
				org, commas(int64(c.b.limit)), c.what)
			return nil, &rateLimited{err: e, retryAfter: d, limit: c.name}
		}
	}
	cb.req.level--
	cb.in.level -= float64(inputCost)
	a := &admission{cb: cb}
	if l.legacy {
		cb.out.level -= outNeed
		a.reserved = outNeed
	}
	return a, nil
}

// charge takes generated output tokens (and, for a correction, input tokens) from the
// buckets as they are produced.
func (a *admission) charge(outputTokens int64, now time.Time) {
	a.cb.mu.Lock()
	defer a.cb.mu.Unlock()
	a.cb.out.refill(now)
	take := float64(outputTokens)
	if a.reserved > 0 {
		used := math.Min(a.reserved, take)
		a.reserved -= used
		take -= used
	}
	a.cb.out.level -= take
}

// finish refunds any unused legacy reservation.
func (a *admission) finish(now time.Time) {
	a.cb.mu.Lock()
	defer a.cb.mu.Unlock()
	a.cb.out.refill(now)
	a.cb.out.level = math.Min(a.cb.out.capacity, a.cb.out.level+a.reserved)
	a.reserved = 0
}

// snapshot is the buckets' state for headers and metrics.
type snapshot struct {
	req, in, out bucket
}

func (l *limiter) snapshot(class string, now time.Time) snapshot {
	cb := l.class(class, now)
	cb.mu.Lock()
	defer cb.mu.Unlock()
	cb.req.refill(now)
	cb.in.refill(now)
	cb.out.refill(now)
	return snapshot{req: cb.req, in: cb.in, out: cb.out}
}

// rateLimitHeaderKeys are the header map keys setHeaders writes, per limit: -limit,
// -remaining, -reset. They are set on the map directly, so they are written in the
// canonical form that Header.Get looks up.
var rateLimitHeaderKeys = [4][3]string{
	{"Anthropic-Ratelimit-Requests-Limit", "Anthropic-Ratelimit-Requests-Remaining", "Anthropic-Ratelimit-Requests-Reset"},
	{"Anthropic-Ratelimit-Input-Tokens-Limit", "Anthropic-Ratelimit-Input-Tokens-Remaining", "Anthropic-Ratelimit-Input-Tokens-Reset"},
	{"Anthropic-Ratelimit-Output-Tokens-Limit", "Anthropic-Ratelimit-Output-Tokens-Remaining", "Anthropic-Ratelimit-Output-Tokens-Reset"},
	{"Anthropic-Ratelimit-Tokens-Limit", "Anthropic-Ratelimit-Tokens-Remaining", "Anthropic-Ratelimit-Tokens-Reset"},
}

// setHeaders writes every anthropic-ratelimit-* header for a class. It runs on every
// response, so the twelve values are formatted into one string and share one slice.
func (l *limiter) setHeaders(h http.Header, class string, now time.Time) {
	s := l.snapshot(class, now)
	// tokens-*: the most restrictive token limit; with no workspace limit, input and
	// output combined.
	reset := s.in.resetAt(now)
	if r := s.out.resetAt(now); r.After(reset) {
		reset = r
	}
	rows := [4]struct {
		limit, remaining float64
		reset            time.Time
		round            bool
	}{
		{s.req.limit, s.req.level, s.req.resetAt(now), false},
		{s.in.limit, s.in.level, s.in.resetAt(now), true},
		{s.out.limit, s.out.level, s.out.resetAt(now), true},
		{s.in.limit + s.out.limit, math.Max(0, s.in.level) + math.Max(0, s.out.level), reset, true},
	}
	var arr [320]byte
	b := arr[:0]
	var ends [12]int
	for i, row := range rows {
		r := int64(math.Max(0, math.Floor(row.remaining)))
		if row.round {
			r = roundThousand(r)
		}
		b = strconv.AppendInt(b, int64(row.limit), 10)
		ends[3*i] = len(b)
		b = strconv.AppendInt(b, r, 10)
		ends[3*i+1] = len(b)
		b = row.reset.UTC().AppendFormat(b, time.RFC3339)
		ends[3*i+2] = len(b)
	}
	all := string(b)
	vals := make([]string, len(ends))
	start := 0
	for i, end := range ends {
		vals[i] = all[start:end]
		start = end
		h[rateLimitHeaderKeys[i/3][i%3]] = vals[i : i+1 : i+1]
	}
}

// roundThousand rounds to the nearest thousand, as the API does for token headers.
func roundThousand(n int64) int64 { return (n + 500) / 1000 * 1000 }

// retryAfterSeconds is the integer retry-after value for a wait: rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

// commas formats n as 50,000.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	if len(s) <= 3 {
		return s
	}
	var out []byte
	pre := len(s) % 3
	if pre > 0 {
		out = append(out, s[:pre]...)
	}
	for i := pre; i < len(s); i += 3 {
		if len(out) > 0 {
			out = append(out, ',')
		}
		out = append(out, s[i:i+3]...)
	}
	return string(out)
}
