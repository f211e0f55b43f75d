package spend_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/clade-dev/clade/internal/spend"
)

func TestBudgetHold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		limit       spend.Micros
		spent, held spend.Micros // before the hold
		worst       spend.Micros
		ok          bool
		wantHeld    spend.Micros // after it
	}{
		{name: "fits", limit: 1000, worst: 400, ok: true, wantHeld: 400},
		{name: "fits exactly", limit: 1000, spent: 300, held: 200, worst: 500, ok: true, wantHeld: 700},
		{name: "one over", limit: 1000, spent: 300, held: 200, worst: 501, wantHeld: 200},
		{name: "spent counts", limit: 1000, spent: 900, worst: 101, wantHeld: 0},
		{name: "held counts", limit: 1000, held: 900, worst: 101, wantHeld: 900},
		{name: "zero limit takes a zero hold", limit: 0, worst: 0, ok: true, wantHeld: 0},
		{name: "zero limit refuses the least", limit: 0, worst: 1, wantHeld: 0},
		{name: "negative worst holds zero", limit: 10, worst: -5, ok: true, wantHeld: 0},
		{name: "overspent refuses a zero hold", limit: 10, spent: 11, worst: 0, wantHeld: 0},
		{name: "no limit", limit: spend.NoLimit, spent: spend.NoLimit / 2, held: spend.NoLimit / 4, worst: spend.NoLimit / 8, ok: true,
			wantHeld: spend.NoLimit/4 + spend.NoLimit/8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := spend.NewBudget(tt.limit)
			b.Spend(tt.spent)
			b.Force(tt.held)
			h, err := b.Hold(tt.worst)
			if tt.ok != (err == nil) {
				t.Fatalf("Hold(%d) with limit %d, spent %d, held %d: err = %v, want ok %v", tt.worst, tt.limit, tt.spent, tt.held, err, tt.ok)
			}
			if err != nil {
				var ee *spend.ExceededError
				if !errors.Is(err, spend.ErrExceeded) || !errors.As(err, &ee) {
					t.Fatalf("Hold(%d) = %v, want an *ExceededError matching ErrExceeded", tt.worst, err)
				}
				if want := (spend.ExceededError{Limit: tt.limit, Spent: tt.spent, Held: tt.held, Need: tt.worst}); *ee != want {
					t.Errorf("Hold(%d) = %+v, want %+v", tt.worst, *ee, want)
				}
				if h != nil {
					t.Errorf("Hold(%d) = %v and a hold, want no hold", tt.worst, err)
				}
			}
			if got := b.Held(); got != tt.wantHeld {
				t.Errorf("Held() = %d, want %d", got, tt.wantHeld)
			}
			if got := b.Spent(); got != tt.spent {
				t.Errorf("Spent() = %d, want %d (a hold spends nothing)", got, tt.spent)
			}
		})
	}
}

func TestHoldEndsOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		end         func(h *spend.Hold)
		wantSpent   spend.Micros
		wantRemains spend.Micros
	}{
		{name: "settle below the hold", end: func(h *spend.Hold) { h.Settle(30) }, wantSpent: 30, wantRemains: 70},
		{name: "settle above the hold", end: func(h *spend.Hold) { h.Settle(120) }, wantSpent: 120, wantRemains: -20},
		{name: "release", end: func(h *spend.Hold) { h.Release() }, wantSpent: 0, wantRemains: 100},
		{name: "settle then release", end: func(h *spend.Hold) { h.Settle(30); h.Release() }, wantSpent: 30, wantRemains: 70},
		{name: "release then settle", end: func(h *spend.Hold) { h.Release(); h.Settle(30) }, wantSpent: 0, wantRemains: 100},
		{name: "settle twice", end: func(h *spend.Hold) { h.Settle(30); h.Settle(30) }, wantSpent: 30, wantRemains: 70},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := spend.NewBudget(100)
			h, err := b.Hold(50)
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Remaining(); got != 50 {
				t.Fatalf("Remaining() with 50 held = %d, want 50", got)
			}
			tt.end(h)
			if got := b.Spent(); got != tt.wantSpent {
				t.Errorf("Spent() = %d, want %d", got, tt.wantSpent)
			}
			if got := b.Held(); got != 0 {
				t.Errorf("Held() = %d, want 0", got)
			}
			if got := b.Remaining(); got != tt.wantRemains {
				t.Errorf("Remaining() = %d, want %d", got, tt.wantRemains)
			}
		})
	}
}

func TestBudgetNoLimitRemaining(t *testing.T) {
	t.Parallel()
	b := spend.NewBudget(spend.NoLimit)
	b.Spend(5)
	b.Force(7)
	if got := b.Remaining(); got != spend.NoLimit {
		t.Errorf("Remaining() = %d, want NoLimit", got)
	}
	if b.Spent() != 5 || b.Held() != 7 {
		t.Errorf("Spent, Held = %d, %d; want 5, 7 (a budget of NoLimit still counts)", b.Spent(), b.Held())
	}
}

// TestBudgetBurstNeverOvershoots: n goroutines all hold a request's worst case at
// once against a budget for k of them; exactly k holds are taken, and what is held
// is within the limit.
func TestBudgetBurstNeverOvershoots(t *testing.T) {
	t.Parallel()
	const n, k, worst = 200, 37, 1_234
	b := spend.NewBudget(k*worst + worst - 1) // room for k, not k+1
	start := make(chan struct{})
	var wg sync.WaitGroup
	var taken, refused atomic.Int64
	for range n {
		wg.Go(func() {
			<-start
			if _, err := b.Hold(worst); err == nil {
				taken.Add(1)
			} else if errors.Is(err, spend.ErrExceeded) {
				refused.Add(1)
			} else {
				t.Errorf("Hold(%d) = %v, want nil or ErrExceeded", worst, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if taken.Load() != k || refused.Load() != n-k {
		t.Errorf("%d holds taken, %d refused; want %d and %d", taken.Load(), refused.Load(), k, n-k)
	}
	if got := b.Held(); got != k*worst || got > b.Limit() {
		t.Errorf("Held() = %d, want %d, within the limit %d", got, k*worst, b.Limit())
	}
}

// TestBudgetConcurrentNeverOvershoots: goroutines hold at the worst case, then
// settle at a cost up to it or release, many times over, against a budget that
// refuses some of them; spent and held together never exceed the limit, and at
// the end nothing is held and every settled cost is spent.
func TestBudgetConcurrentNeverOvershoots(t *testing.T) {
	t.Parallel()
	const goroutines, rounds, limit = 32, 500, 500_000
	b := spend.NewBudget(limit)
	var wg sync.WaitGroup
	var settled, refused atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				worst := spend.Micros(100 + (g*31+i*17)%400)
				h, err := b.Hold(worst)
				if err != nil {
					refused.Add(1)
					continue
				}
				if r := b.Remaining(); r < 0 {
					t.Errorf("Remaining() = %d after a hold: spent and held exceed the limit", r)
				}
				if i%5 == 0 {
					h.Release()
					continue
				}
				cost := worst * spend.Micros(i%4) / 4 // at most the worst case
				h.Settle(cost)
				settled.Add(int64(cost))
			}
		})
	}
	wg.Wait()
	if refused.Load() == 0 || settled.Load() == 0 {
		t.Fatalf("%d holds refused, %d micro-dollars settled: want both, or the limit was never reached", refused.Load(), settled.Load())
	}
	if got := b.Held(); got != 0 {
		t.Errorf("Held() = %d after every hold ended, want 0", got)
	}
	if got := b.Spent(); int64(got) != settled.Load() || got > limit {
		t.Errorf("Spent() = %d, want the %d settled, within the limit %d", got, settled.Load(), limit)
	}
}
