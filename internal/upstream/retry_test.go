package upstream_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/upstream"
)

func constRand(f float64) func() float64 { return func() float64 { return f } }

func TestBackoffStep(t *testing.T) {
	t.Parallel()
	var b upstream.Backoff // defaults: 0.5 s doubling to 30 s
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := b.Step(i + 1); got != w {
			t.Errorf("Step(%d) = %v, want %v", i+1, got, w)
		}
	}
	for _, attempt := range []int{0, -5} {
		if got := b.Step(attempt); got != 500*time.Millisecond {
			t.Errorf("Step(%d) = %v, want the base", attempt, got)
		}
	}
	for _, attempt := range []int{40, 63, 64, 1000, math.MaxInt} {
		if got := b.Step(attempt); got != 30*time.Second {
			t.Errorf("Step(%d) = %v, want the cap (no overflow)", attempt, got)
		}
	}
	sdk := upstream.Backoff{Max: 8 * time.Second}
	if got := sdk.Step(10); got != 8*time.Second {
		t.Errorf("Step(10) with Max 8s = %v", got)
	}
}

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	retryAfter := func(d time.Duration) error {
		return &upstream.APIError{Status: 429, HasRetryAfter: true, RetryAfter: d}
	}
	tests := []struct {
		name    string
		b       upstream.Backoff
		attempt int
		err     error
		want    time.Duration
	}{
		{name: "equal low", b: upstream.Backoff{Rand: constRand(0)}, attempt: 1, want: 250 * time.Millisecond},
		{name: "equal high", b: upstream.Backoff{Rand: constRand(0.5)}, attempt: 3, want: 1500 * time.Millisecond},
		{name: "full low", b: upstream.Backoff{Jitter: upstream.JitterFull, Rand: constRand(0)}, attempt: 3, want: 0},
		{name: "full mid", b: upstream.Backoff{Jitter: upstream.JitterFull, Rand: constRand(0.25)}, attempt: 3, want: 500 * time.Millisecond},
		{name: "none", b: upstream.Backoff{Jitter: upstream.JitterNone}, attempt: 4, want: 4 * time.Second},
		{name: "capped", b: upstream.Backoff{Jitter: upstream.JitterNone, Max: 3 * time.Second}, attempt: 9, want: 3 * time.Second},
		{name: "retry-after floor", b: upstream.Backoff{Rand: constRand(0), RetryAfterSpread: -1}, attempt: 1, err: retryAfter(7 * time.Second), want: 7 * time.Second},
		{name: "retry-after spread", b: upstream.Backoff{Rand: constRand(0.5)}, attempt: 1, err: retryAfter(10 * time.Second), want: 10*time.Second + 500*time.Millisecond},
		{name: "retry-after beyond Max", b: upstream.Backoff{Jitter: upstream.JitterNone, RetryAfterSpread: -1, Max: time.Second}, attempt: 1, err: retryAfter(time.Minute), want: time.Minute},
		{name: "backoff above retry-after", b: upstream.Backoff{Jitter: upstream.JitterNone, RetryAfterSpread: -1}, attempt: 5, err: retryAfter(time.Second), want: 8 * time.Second},
		{name: "retry-after 0", b: upstream.Backoff{Jitter: upstream.JitterNone}, attempt: 1, err: retryAfter(0), want: 500 * time.Millisecond},
		{name: "bad rand", b: upstream.Backoff{Rand: constRand(math.NaN())}, attempt: 1, want: 250 * time.Millisecond},
		{name: "rand above 1", b: upstream.Backoff{Jitter: upstream.JitterFull, Rand: constRand(7)}, attempt: 1, want: 500*time.Millisecond - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.b.Delay(tt.attempt, tt.err); got != tt.want {
				t.Errorf("Delay(%d, %v) = %v, want %v", tt.attempt, tt.err, got, tt.want)
			}
		})
	}
}

func TestBackoffDelayRange(t *testing.T) {
	t.Parallel()
	var b upstream.Backoff // real randomness
	for attempt := 1; attempt <= 10; attempt++ {
		step := b.Step(attempt)
		for range 200 {
			if d := b.Delay(attempt, nil); d < step/2 || d >= step {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v)", attempt, d, step/2, step)
			}
		}
	}
}

func TestBackoffExhausted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		max     int
		attempt int
		want    bool
	}{{0, 4, false}, {0, 5, true}, {3, 2, false}, {3, 3, true}, {1, 1, true}, {-1, 1000, false}}
	for _, tt := range tests {
		if got := (upstream.Backoff{MaxAttempts: tt.max}).Exhausted(tt.attempt); got != tt.want {
			t.Errorf("Backoff{MaxAttempts: %d}.Exhausted(%d) = %v, want %v", tt.max, tt.attempt, got, tt.want)
		}
	}
}

func TestRetryBudget(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	type step struct {
		at       time.Duration // after t0
		requests int           // first attempts recorded at this time
		retries  int           // retries asked for
		want     int           // retries allowed
	}
	tests := []struct {
		name  string
		cfg   upstream.RetryBudgetConfig
		steps []step
	}{
		{name: "reserve only", cfg: upstream.RetryBudgetConfig{Ratio: 0.1, MinPerSecond: 1, Window: 10 * time.Second},
			steps: []step{{at: 0, retries: 15, want: 10}}},
		{name: "ratio of requests", cfg: upstream.RetryBudgetConfig{Ratio: 0.1, MinPerSecond: 0.1, Window: 10 * time.Second},
			steps: []step{{at: 0, requests: 1000, retries: 500, want: 101}}},
		{name: "window slides", cfg: upstream.RetryBudgetConfig{Ratio: 0.2, MinPerSecond: 0.1, Window: 10 * time.Second},
			steps: []step{
				{at: 0, requests: 100, retries: 100, want: 21},
				{at: 5 * time.Second, retries: 10, want: 0},                 // still spent
				{at: 11 * time.Second, retries: 10, want: 1},                // old requests and retries gone: reserve of 1
				{at: 12 * time.Second, requests: 50, retries: 20, want: 10}, // 0.2·50 + 1 - 1 used
			}},
		{name: "clock backwards", cfg: upstream.RetryBudgetConfig{Ratio: 0.5, MinPerSecond: 0.1, Window: 10 * time.Second},
			steps: []step{
				{at: 5 * time.Second, requests: 10, retries: 3, want: 3},
				{at: 0, retries: 10, want: 3},
			}},
		{name: "no reserve", cfg: upstream.RetryBudgetConfig{Ratio: 0.1, MinPerSecond: -1, Window: time.Second},
			steps: []step{{at: 0, retries: 1, want: 0}, {at: 0, requests: 10, retries: 2, want: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := upstream.NewRetryBudget(tt.cfg)
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				for range s.requests {
					b.RequestAt(now)
				}
				got := 0
				for range s.retries {
					if b.AllowAt(now) {
						got++
					}
				}
				if got != s.want {
					t.Errorf("step %d at +%v: %d of %d retries allowed, want %d", i, s.at, got, s.retries, s.want)
				}
			}
		})
	}
}

func TestRetryBudgetDefaultsAndClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	b := upstream.NewRetryBudget(upstream.RetryBudgetConfig{Now: func() time.Time { return now }})
	allowed := 0
	for range 100 {
		b.Request()
	}
	for range 100 {
		if b.Allow() {
			allowed++
		}
	}
	// 10 % of 100 requests + 1/s over 10 s.
	if allowed != 20 {
		t.Errorf("default budget allowed %d retries, want 20", allowed)
	}
}

func TestRetryBudgetConcurrent(t *testing.T) {
	t.Parallel()
	b := upstream.NewRetryBudget(upstream.RetryBudgetConfig{Ratio: 0.5, MinPerSecond: -1})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				b.Request()
				if b.Allow() {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed > 4000 || allowed < 3900 {
		t.Errorf("allowed %d of 8000 retries with ratio 0.5, want about 4000 and never more", allowed)
	}
}

func TestRetrierDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	overloaded := &upstream.APIError{Status: 529}
	limited := &upstream.APIError{Status: 429, HasRetryAfter: true, RetryAfter: 3 * time.Second}
	tests := []struct {
		name       string
		budget     bool
		attempt    int
		err        error
		wantRetry  bool
		wantReason string
		wantDelay  time.Duration
	}{
		{name: "final", attempt: 1, err: &upstream.APIError{Status: 400}},
		{name: "stop", attempt: 1, err: &upstream.APIError{Status: 429}},
		{name: "retry", attempt: 2, err: &upstream.APIError{Status: 500}, wantRetry: true, wantDelay: time.Second},
		{name: "rate limited", attempt: 1, err: limited, wantRetry: true, wantDelay: 3 * time.Second},
		{name: "attempts", attempt: 3, err: overloaded, wantReason: "attempts"},
		{name: "retry budget", budget: true, attempt: 1, err: overloaded, wantReason: "retry budget"},
		{name: "budget skips 429", budget: true, attempt: 1, err: limited, wantRetry: true, wantDelay: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := upstream.Retrier{Backoff: upstream.Backoff{Jitter: upstream.JitterNone, RetryAfterSpread: -1, MaxAttempts: 3}}
			if tt.budget {
				r.RetryBudget = upstream.NewRetryBudget(upstream.RetryBudgetConfig{MinPerSecond: -1, Now: func() time.Time { return now }})
			}
			d := r.Decide(tt.attempt, tt.err)
			if d.Class != upstream.Classify(tt.err) || d.Retry != tt.wantRetry || d.Reason != tt.wantReason || d.Delay != tt.wantDelay {
				t.Errorf("Decide(%d, %v) = %+v, want retry %v reason %q delay %v", tt.attempt, tt.err, d, tt.wantRetry, tt.wantReason, tt.wantDelay)
			}
		})
	}
}

func TestRetrierDo(t *testing.T) {
	t.Parallel()
	var slept []time.Duration
	r := upstream.Retrier{
		Backoff: upstream.Backoff{Jitter: upstream.JitterNone, MaxAttempts: 4},
		Sleep:   func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil },
	}
	calls := 0
	err := r.Do(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return &upstream.APIError{Status: 503}
		}
		return nil
	})
	if err != nil || calls != 3 || len(slept) != 2 || slept[0] != 500*time.Millisecond || slept[1] != time.Second {
		t.Errorf("Do = %v after %d calls, slept %v; want success after 3 calls, slept [500ms 1s]", err, calls, slept)
	}

	calls = 0
	err = r.Do(context.Background(), func(context.Context) error { calls++; return &upstream.APIError{Status: 500} })
	if calls != 4 || upstream.Classify(err) != upstream.Retry {
		t.Errorf("Do always failing: %d calls, err %v; want 4 calls (MaxAttempts) and the last error", calls, err)
	}

	calls = 0
	err = r.Do(context.Background(), func(context.Context) error { calls++; return &upstream.APIError{Status: 404} })
	if calls != 1 || upstream.Classify(err) != upstream.Final {
		t.Errorf("Do on a 404: %d calls, err %v; want 1 call", calls, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r.Sleep = func(ctx context.Context, d time.Duration) error { cancel(); return ctx.Err() }
	err = r.Do(ctx, func(context.Context) error { return &upstream.APIError{Status: 500} })
	if upstream.Classify(err) != upstream.Canceled || !errors.Is(err, context.Canceled) {
		t.Errorf("Do canceled while sleeping: %v (%v), want Canceled", err, upstream.Classify(err))
	}
}
