package admit_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/clade-dev/clade/admit"
)

func TestAIMDLimit(t *testing.T) {
	t.Parallel()
	type step struct {
		hold    int // acquire until this many are in flight
		outcome admit.Outcome
		started time.Duration // the released call's start, after t0
		at      time.Duration // when it ends
	}
	tests := []struct {
		name  string
		cfg   admit.AIMDConfig
		steps []step
		want  float64
	}{
		{
			name:  "success in use grows by Increase",
			cfg:   admit.AIMDConfig{Min: 1, Max: 10, Initial: 4, Increase: 2},
			steps: []step{{hold: 2, outcome: admit.Success}},
			want:  6,
		},
		{
			name:  "each success in use adds Increase",
			cfg:   admit.AIMDConfig{Min: 1, Max: 10, Initial: 2},
			steps: []step{{hold: 2, outcome: admit.Success}, {hold: 2, outcome: admit.Success}, {hold: 2, outcome: admit.Success}},
			want:  5,
		},
		{
			name:  "success with under half in flight does not grow it",
			cfg:   admit.AIMDConfig{Min: 1, Max: 10, Initial: 8},
			steps: []step{{hold: 3, outcome: admit.Success}},
			want:  8,
		},
		{
			name: "success of a call started before the last decrease does not grow it",
			cfg:  admit.AIMDConfig{Min: 1, Max: 64, Initial: 8},
			steps: []step{
				{hold: 8, outcome: admit.Overload, at: time.Second},
				{outcome: admit.Success, at: 2 * time.Second},
				{outcome: admit.Success, started: time.Second, at: 2 * time.Second},
			},
			want: 5,
		},
		{
			name:  "ceiling",
			cfg:   admit.AIMDConfig{Min: 1, Max: 4, Initial: 4},
			steps: []step{{hold: 4, outcome: admit.Success}},
			want:  4,
		},
		{
			name:  "overload multiplies",
			cfg:   admit.AIMDConfig{Min: 1, Max: 64, Initial: 40, Decrease: 0.7},
			steps: []step{{hold: 1, outcome: admit.Overload, at: time.Second}},
			want:  28,
		},
		{
			name: "one decrease per round",
			cfg:  admit.AIMDConfig{Min: 1, Max: 64, Initial: 64},
			steps: []step{
				{hold: 3, outcome: admit.Overload, at: time.Second},
				{outcome: admit.Overload, at: 2 * time.Second},                                // started at t0: same round
				{hold: 1, outcome: admit.Overload, started: time.Second, at: 3 * time.Second}, // started at the decrease: next round
			},
			want: 16,
		},
		{
			name:  "floor",
			cfg:   admit.AIMDConfig{Min: 3, Max: 8, Initial: 4},
			steps: []step{{hold: 1, outcome: admit.Overload, at: time.Second}},
			want:  3,
		},
		{
			name:  "neutral changes nothing",
			cfg:   admit.AIMDConfig{Min: 1, Max: 8, Initial: 4},
			steps: []step{{hold: 4, outcome: admit.Neutral, at: time.Second}},
			want:  4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := admit.NewAIMD(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.steps {
				for a.State().InFlight < s.hold {
					if !a.TryAcquire() {
						t.Fatalf("TryAcquire with %d in flight at limit %v = false", a.State().InFlight, a.State().Limit)
					}
				}
				a.Release(s.outcome, t0.Add(s.started), t0.Add(s.at))
			}
			if got := a.State().Limit; got < tt.want-1e-9 || got > tt.want+1e-9 {
				t.Errorf("Limit = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewAIMDDefaults(t *testing.T) {
	t.Parallel()
	a, err := admit.NewAIMD(admit.AIMDConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if s := a.State(); s.Min != 1 || s.Max != 256 || s.Limit != 256 {
		t.Errorf("NewAIMD(zero) = %+v, want min 1, max 256, limit 256", s)
	}
	if _, err := admit.NewAIMD(admit.AIMDConfig{Min: 5, Max: 2}); err == nil {
		t.Errorf("NewAIMD(min 5, max 2) = nil error, want one")
	}
}

func TestAIMDAcquireWaitsInOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a, err := admit.NewAIMD(admit.AIMDConfig{Min: 1, Max: 4, Initial: 2})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for i := 0; i < 2; i++ {
			if err := a.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
		}
		got := make(chan int, 3)
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		// Caller 1 gives up after a second; callers 0 and 2 get slots in order.
		for i := 0; i < 3; i++ {
			c := ctx
			if i == 1 {
				c = short
			}
			go func() {
				if err := a.Acquire(c); err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Acquire = %v", err)
					}
					return
				}
				got <- i
			}()
			synctest.Wait()
		}
		if a.TryAcquire() {
			t.Errorf("TryAcquire with callers queued = true, want false")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if s := a.State(); s.Waiting != 2 {
			t.Errorf("after caller 1 gave up, Waiting = %d, want 2", s.Waiting)
		}
		a.Release(admit.Neutral, t0, t0)
		if first := <-got; first != 0 {
			t.Errorf("first slot went to caller %d, want 0", first)
		}
		a.Release(admit.Neutral, t0, t0)
		if second := <-got; second != 2 {
			t.Errorf("second slot went to caller %d, want 2", second)
		}
		if s := a.State(); s.InFlight != 2 || s.Waiting != 0 {
			t.Errorf("State = %+v, want 2 in flight and none waiting", s)
		}
	})
}

func TestAIMDOverloadHoldsBackWaiters(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a, err := admit.NewAIMD(admit.AIMDConfig{Min: 1, Max: 4, Initial: 4})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			a.TryAcquire()
		}
		admitted := make(chan struct{}, 1)
		go func() {
			if a.Acquire(context.Background()) == nil {
				admitted <- struct{}{}
			}
		}()
		synctest.Wait()
		a.Release(admit.Overload, t0, t0) // limit 2, 3 in flight: still no slot
		synctest.Wait()
		select {
		case <-admitted:
			t.Fatalf("waiter admitted with 3 in flight at a limit of 2")
		default:
		}
		a.Release(admit.Neutral, t0, t0)
		a.Release(admit.Neutral, t0, t0) // 1 in flight: a slot
		<-admitted
	})
}
