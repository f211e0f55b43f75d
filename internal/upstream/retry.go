package upstream

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Jitter spreads backoff delays so that clients that failed together do not return
// together.
type Jitter int

const (
	// JitterEqual waits d/2 plus a uniform [0, d/2): never less than half the step
	// (default).
	JitterEqual Jitter = iota
	// JitterFull waits a uniform [0, d): the best spread, sometimes almost no wait.
	JitterFull
	// JitterNone waits exactly d (tests, or a single client).
	JitterNone
)

// Backoff computes the wait before a retry: Base doubling per attempt up to Max,
// jittered, and never shorter than the retry-after the API sent. The zero value is
// usable: 0.5 s doubling to 30 s with equal jitter, 5 attempts.
type Backoff struct {
	// Base is the first step. Default 500 ms (the SDKs' value).
	Base time.Duration
	// Max caps the step before jitter (not a retry-after). Default 30 s; the SDKs use
	// 8 s, but a bulk run has no user waiting and a failing API needs the room.
	Max time.Duration
	// Jitter is how the step is spread. Default JitterEqual.
	Jitter Jitter
	// RetryAfterSpread adds up to this fraction of a retry-after on top of it, so that
	// the workers of a paused model class do not all come back at the same instant.
	// Default 0.1; negative for none.
	RetryAfterSpread float64
	// MaxAttempts is the most attempts a request gets, the first included. Default 5;
	// a negative value means no cap.
	MaxAttempts int
	// Rand returns a uniform float in [0, 1). Default math/rand/v2's Float64.
	Rand func() float64
}

// Backoff defaults.
const (
	DefaultBackoffBase      = 500 * time.Millisecond
	DefaultBackoffMax       = 30 * time.Second
	DefaultRetryAfterSpread = 0.1
	DefaultMaxAttempts      = 5
)

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	if b.RetryAfterSpread == 0 {
		b.RetryAfterSpread = DefaultRetryAfterSpread
	}
	if b.RetryAfterSpread < 0 {
		b.RetryAfterSpread = 0
	}
	if b.MaxAttempts == 0 {
		b.MaxAttempts = DefaultMaxAttempts
	}
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
	return b
}

// Step is the un-jittered step after attempt failed attempts (attempt ≥ 1):
// min(Base·2^(attempt-1), Max).
func (b Backoff) Step(attempt int) time.Duration {
	b = b.withDefaults()
	if attempt < 1 {
		attempt = 1
	}
	// Doubling past 2^40 of any positive base exceeds every sane Max; stop early
	// rather than overflow.
	if attempt > 40 {
		return b.Max
	}
	d := b.Base << (attempt - 1)
	if d <= 0 || d > b.Max {
		return b.Max
	}
	return d
}

// Delay is the wait before the next attempt, after attempt attempts have failed, the
// last with err. With a retry-after on err (an *APIError), the wait is at least that
// long plus up to RetryAfterSpread of it; otherwise it is the jittered Step.
func (b Backoff) Delay(attempt int, err error) time.Duration {
	b = b.withDefaults()
	d := b.Step(attempt)
	switch b.Jitter {
	case JitterFull:
		d = time.Duration(b.rand() * float64(d))
	case JitterNone:
	default:
		d = d/2 + time.Duration(b.rand()*float64(d/2))
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.HasRetryAfter && ae.RetryAfter > 0 {
		ra := ae.RetryAfter + time.Duration(b.rand()*b.RetryAfterSpread*float64(ae.RetryAfter))
		d = max(d, ra)
	}
	return d
}

// rand is Rand clamped to [0, 1), so an injected source cannot produce a negative or
// oversized wait.
func (b Backoff) rand() float64 {
	f := b.Rand()
	if !(f >= 0) { // also NaN
		return 0
	}
	return math.Min(f, math.Nextafter(1, 0))
}

// Exhausted reports whether a request that has made attempt attempts may not retry.
func (b Backoff) Exhausted(attempt int) bool {
	b = b.withDefaults()
	return b.MaxAttempts > 0 && attempt >= b.MaxAttempts
}

// RetryBudget caps retries at a fraction of recent requests, so a failing API sees
// at most (1 + Ratio)× the normal load instead of MaxAttempts×. Over a sliding
// Window, retries may be at most Ratio × first attempts + MinPerSecond × Window
// (the reserve that lets a quiet client still retry). Call Request for every first
// attempt and Allow before every retry; a denied retry should be recorded as failed
// (or requeued for later), not sent. It counts calls, not money: USD budgets are
// package spend's.
//
// Methods ending in At take the time, for tests; the others use Now. A RetryBudget
// is safe for concurrent use. The zero value is not usable: use NewRetryBudget.
type RetryBudget struct {
	ratio   float64
	reserve float64
	slot    time.Duration
	now     func() time.Time

	mu       sync.Mutex
	requests []float64 // per slot, a ring
	retries  []float64
	head     int   // index of the newest slot
	headSlot int64 // slot number of head
	started  bool
}

// RetryBudgetConfig configures NewRetryBudget.
type RetryBudgetConfig struct {
	// Ratio is the allowed retries per first attempt. Default 0.1 (10 %).
	Ratio float64
	// MinPerSecond is the retry rate always allowed. Default 1.
	MinPerSecond float64
	// Window is how far back requests count. Default 10 s.
	Window time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// retryBudgetSlots is the window's resolution.
const retryBudgetSlots = 10

// NewRetryBudget returns a RetryBudget for cfg; zero fields take their defaults.
func NewRetryBudget(cfg RetryBudgetConfig) *RetryBudget {
	if cfg.Ratio <= 0 {
		cfg.Ratio = 0.1
	}
	if cfg.MinPerSecond < 0 {
		cfg.MinPerSecond = 0
	} else if cfg.MinPerSecond == 0 {
		cfg.MinPerSecond = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	slot := cfg.Window / retryBudgetSlots
	if slot <= 0 {
		slot = 1
	}
	return &RetryBudget{
		ratio:    cfg.Ratio,
		reserve:  cfg.MinPerSecond * cfg.Window.Seconds(),
		slot:     slot,
		now:      cfg.Now,
		requests: make([]float64, retryBudgetSlots),
		retries:  make([]float64, retryBudgetSlots),
	}
}

// Request records a first attempt.
func (b *RetryBudget) Request() { b.RequestAt(b.now()) }

// RequestAt records a first attempt at t.
func (b *RetryBudget) RequestAt(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(t)
	b.requests[b.head]++
}

// Allow reports whether a retry may be sent now, and if so counts it.
func (b *RetryBudget) Allow() bool { return b.AllowAt(b.now()) }

// AllowAt is Allow at t.
func (b *RetryBudget) AllowAt(t time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(t)
	var req, ret float64
	for i := range b.requests {
		req += b.requests[i]
		ret += b.retries[i]
	}
	if ret+1 > b.ratio*req+b.reserve {
		return false
	}
	b.retries[b.head]++
	return true
}

// advance moves the ring to t's slot, clearing the slots it passes. A clock that goes
// backwards is treated as standing still.
func (b *RetryBudget) advance(t time.Time) {
	n := t.UnixNano() / int64(b.slot)
	if !b.started {
		b.started, b.headSlot = true, n
		return
	}
	steps := n - b.headSlot
	if steps <= 0 {
		return
	}
	if steps > retryBudgetSlots {
		steps = retryBudgetSlots
	}
	for range steps {
		b.head = (b.head + 1) % retryBudgetSlots
		b.requests[b.head], b.retries[b.head] = 0, 0
	}
	b.headSlot = n
}

// Decision is what to do after a failed attempt.
type Decision struct {
	Class Class
	// Retry says to send the request again after Delay.
	Retry bool
	Delay time.Duration
	// Reason says why not, when Retry is false and Class is retryable: "attempts"
	// (MaxAttempts reached) or "retry budget" (the retry budget is spent).
	Reason string
}

// Retrier composes the pieces for a caller that does not need them apart:
// Classify, Backoff and an optional RetryBudget. It does no rate limiting: a runner
// pauses a model class on RateLimited and shrinks concurrency on Overloaded itself.
type Retrier struct {
	Backoff Backoff
	// RetryBudget, when set, must allow every Retry and Overloaded retry. RateLimited
	// retries bypass it: the API said when to come back, and admission paces them.
	RetryBudget *RetryBudget
	// Sleep waits d or until ctx ends (Do only). Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Decide classifies err after attempt attempts (≥ 1) and says whether and when to
// retry.
func (r *Retrier) Decide(attempt int, err error) Decision {
	c := Classify(err)
	d := Decision{Class: c}
	if !c.Retryable() {
		return d
	}
	if r.Backoff.Exhausted(attempt) {
		d.Reason = "attempts"
		return d
	}
	if r.RetryBudget != nil && c != RateLimited && !r.RetryBudget.Allow() {
		d.Reason = "retry budget"
		return d
	}
	d.Retry, d.Delay = true, r.Backoff.Delay(attempt, err)
	return d
}

// Do calls fn until it succeeds, fails for good, or ctx ends, sleeping between
// attempts as Decide says. It is meant for control calls (batch get, list, results),
// not for Messages, whose retries go through admission. It returns fn's last error.
func (r *Retrier) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	sleep := r.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	if r.RetryBudget != nil {
		r.RetryBudget.Request()
	}
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		d := r.Decide(attempt, err)
		if !d.Retry {
			return err
		}
		if serr := sleep(ctx, d.Delay); serr != nil {
			// Classify must see Canceled, not the retryable error before it.
			return fmt.Errorf("upstream: retry abandoned after %v: %w", err, serr)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
