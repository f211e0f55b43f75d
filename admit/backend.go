package admit

import (
	"context"
	"errors"
	"math"
	"time"
)

// ErrUnknownClass is returned for a model class the catalog lacks (Limiter) or that was
// never initialised (Backend).
var ErrUnknownClass = errors.New("unknown model class")

// Backend holds the bucket state of every model class: three continuously refilling
// token buckets (requests, input tokens, output tokens per minute) and a pause. Each
// method is one atomic step on one class, so several limiters — in one process or, with a
// shared backend such as Redis, in many — can share an organisation's budget exactly.
//
// now is the caller's clock. A shared backend may use its own clock instead (Redis TIME)
// so that processes agree; it must then still honour the now of the conformance suite
// (package admittest), which every backend passes.
//
// Backends keep no per-reservation state: a reservation is the Cost the caller took,
// and Settle replaces it by what the call used. Calls in flight are the caller's to
// count; the backend keeps only their total held output (see Settle).
type Backend interface {
	// Init creates class with full buckets shaped by spec. If class exists it is left
	// as it is (another limiter sharing the backend may have created it).
	Init(ctx context.Context, class string, spec Spec, now time.Time) error
	// Reserve takes c from class's buckets if every bucket holds c plus its headroom
	// and the class is not paused, and returns 0; c's output tokens are then held
	// until Settle. Otherwise it takes nothing and returns how long until it would fit
	// (the pause included), never 0.
	Reserve(ctx context.Context, class string, c Cost, now time.Time) (time.Duration, error)
	// Settle replaces a reservation by what the call used: each bucket is charged
	// actual − reserved (a level may go below zero, paid back by refill) and the
	// reservation's held output is released. Settle(reserved, Cost{}) refunds a call
	// that was never charged; Settle(reserved, reserved) keeps the charge.
	//
	// Held output: the server charges output tokens as they are generated, after
	// admission, so while calls are in flight its level is the local level plus the
	// held output, and it cannot store refill above capacity. The output bucket
	// therefore refills (and takes refunds) only up to capacity − held; otherwise a
	// burst of calls reserved against a full bucket would be credited refill that the
	// full server bucket never got.
	Settle(ctx context.Context, class string, reserved, actual Cost, now time.Time) error
	// Sync applies what a response reported at now (see Report).
	Sync(ctx context.Context, class string, r Report, now time.Time) error
	// Pause refuses class until until; an earlier until than the current pause's
	// end leaves it unchanged.
	Pause(ctx context.Context, class string, until time.Time) error
	// State returns class's buckets as of now, without changing them.
	State(ctx context.Context, class string, now time.Time) (State, error)
}

// Cost is an amount taken from (or, negative, given back to) a class's buckets.
type Cost struct {
	Requests     int64
	InputTokens  int64 // tokens counting toward ITPM
	OutputTokens int64
}

func (c Cost) dims() [numDims]float64 {
	return [numDims]float64{float64(c.Requests), float64(c.InputTokens), float64(c.OutputTokens)}
}

// Limits are one class's limits per minute.
type Limits struct {
	RPM  int64 // requests per minute
	ITPM int64 // input tokens per minute
	OTPM int64 // output tokens per minute
}

func (l Limits) dims() [numDims]int64 { return [numDims]int64{l.RPM, l.ITPM, l.OTPM} }

func (l Limits) valid() bool { return l.RPM > 0 && l.ITPM > 0 && l.OTPM > 0 }

// Spec shapes a class's buckets.
type Spec struct {
	Limits Limits
	// Burst is each bucket's capacity as a fraction of one minute's limit, in (0, 1].
	Burst float64
	// Headroom is the fraction of capacity Reserve leaves in every bucket, in [0, 0.5).
	Headroom float64
}

func (s Spec) valid() bool {
	return s.Limits.valid() && s.Burst > 0 && s.Burst <= 1 && s.Headroom >= 0 && s.Headroom < 0.5
}

// Report is what one response's rate-limit headers say about a class, converted for a
// backend: per bucket the limit and the remaining amount, with the rounding the API
// applies.
type Report struct {
	Requests, InputTokens, OutputTokens Reading
}

func (r Report) dims() [numDims]Reading {
	return [numDims]Reading{r.Requests, r.InputTokens, r.OutputTokens}
}

// Reading is one bucket's reported state. Sync applies it in two steps:
//
//   - Limit, when positive and different from the bucket's, is adopted: capacity
//     becomes Limit × burst and the level moves by the change in capacity, so amounts
//     reserved for calls in flight stay taken.
//   - Remaining lowers the level to Remaining + Slack when that is lower, unless an
//     earlier Sync had a later now (an out-of-order, stale report). The level is never
//     raised: the server's count lags calls in transit and output not yet generated,
//     which the local level already holds, so taking the minimum cannot count a call
//     twice. Slack is the reporting error: 500 for token counts (rounded to the
//     nearest 1,000), 1 for requests (rounded down).
type Reading struct {
	Valid     bool
	Limit     int64
	Remaining int64
	Slack     int64
}

// State is a class's buckets at one time.
type State struct {
	Requests, InputTokens, OutputTokens BucketState
	// PausedUntil is when a 429 pause ends; zero or past when not paused.
	PausedUntil time.Time
	// SyncedAt is the now of the last Sync whose Remaining values were applied.
	SyncedAt time.Time
}

// BucketState is one token bucket.
type BucketState struct {
	Limit    int64   // per minute
	Capacity float64 // Limit × burst
	Level    float64 // tokens available; negative while paying back over-use
	// Held is output reserved by calls in flight (output bucket only; see Settle).
	Held float64
}

// Indexes of a class's three buckets.
const (
	dimRequests = iota
	dimInput
	dimOutput
	numDims
)

// bucket is one continuously refilling token bucket: it gains limit/60 per second up
// to capacity − held. Reserve needs level ≥ need + floor (capped at capacity, so a call
// larger than the bucket is admitted when the bucket is full).
type bucket struct {
	limit    int64
	capacity float64
	floor    float64 // headroom × capacity
	level    float64
	held     float64 // reserved output of calls in flight (output bucket only)
	last     time.Time
}

func newBucket(limit int64, burst, headroom float64, now time.Time) bucket {
	c := float64(limit) * burst
	return bucket{limit: limit, capacity: c, floor: headroom * c, level: c, last: now}
}

func (b *bucket) perSecond() float64 { return float64(b.limit) / 60 }

// refill adds what flowed in since last. A now before last (callers' clocks read in a
// different order than they took the lock) adds nothing.
func (b *bucket) refill(now time.Time) {
	if now.After(b.last) {
		if top := b.top(); b.level < top {
			b.level = math.Min(top, b.level+now.Sub(b.last).Seconds()*b.perSecond())
		}
		b.last = now
	}
}

// top is the most the level may reach: capacity less the held output.
func (b *bucket) top() float64 { return b.capacity - b.held }

// levelAt is the level refill would give at now, without changing b.
func (b *bucket) levelAt(now time.Time) float64 {
	c := *b
	c.refill(now)
	return c.level
}

// wait is how long until the bucket admits need; 0 if it does now.
func (b *bucket) wait(need float64) time.Duration {
	target := math.Min(need+b.floor, b.capacity)
	if b.level >= target {
		return 0
	}
	return secondsCeil((target - b.level) / b.perSecond())
}

// setLimit adopts a new limit, shifting the level by the change in capacity.
func (b *bucket) setLimit(limit int64, burst, headroom float64) {
	c := float64(limit) * burst
	b.level += c - b.capacity
	b.limit, b.capacity, b.floor = limit, c, headroom*c
}

func (b *bucket) state() BucketState {
	return BucketState{Limit: b.limit, Capacity: b.capacity, Level: b.level, Held: b.held}
}

// secondsCeil converts seconds to a Duration rounded up to the microsecond, and at least
// a microsecond, so that sleeping it always reaches the point where the call fits.
func secondsCeil(s float64) time.Duration {
	if s > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	d := time.Duration(math.Ceil(s * 1e6))
	return max(d, 1) * time.Microsecond
}
