package admit_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/clade-dev/clade/admit"
)

// TestAttemptSettle: the one table from an answer to what the buckets keep.
func TestAttemptSettle(t *testing.T) {
	t.Parallel()
	body := []byte(`{"model":"claude-haiku-4-5","max_tokens":100,"messages":[{"role":"user","content":"Hello there, how are you today?"}]}`)
	est := admit.EstimateInput(body)
	used := &admit.Usage{InputTokens: 10, OutputTokens: 40}
	retry := http.Header{"Retry-After": {"3"}}
	for _, tt := range []struct {
		name       string
		status     int
		h          http.Header
		u          *admit.Usage
		wantLevels [3]float64 // requests, input, output after the settle
		wantPause  time.Duration
	}{
		{"2xx commits the usage", 200, nil, used, [3]float64{59, 6000 - 10, 600 - 40}, 0},
		{"2xx unread keeps the charge", 200, nil, nil, [3]float64{59, 6000 - float64(est), 600 - 100}, 0},
		{"429 refunds and pauses", 429, retry, nil, [3]float64{60, 6000, 600}, 3 * time.Second},
		{"429 without retry-after refunds, no pause", 429, nil, nil, [3]float64{60, 6000, 600}, 0},
		{"529 refunds", 529, nil, nil, [3]float64{60, 6000, 600}, 0},
		{"4xx takes one request", 400, nil, nil, [3]float64{59, 6000, 600}, 0},
		{"5xx keeps the charge", 500, nil, nil, [3]float64{59, 6000 - float64(est), 600 - 100}, 0},
		{"no answer keeps the charge", 0, nil, nil, [3]float64{59, 6000 - float64(est), 600 - 100}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter(t, admit.Config{PauseJitter: -1})
			c, ok := l.Prepare(body)
			if !ok {
				t.Fatal("Prepare refused a Messages body")
			}
			if n := c.Need(); n.InputTokens != est || n.OutputTokens != 100 {
				t.Fatalf("Need = %+v, want {%d 100} (the estimate, max_tokens before calibration)", n, est)
			}
			a, err := c.Admit(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			a.Settle(tt.status, tt.h, tt.u)
			a.Settle(200, nil, &admit.Usage{InputTokens: 5000, OutputTokens: 500}) // a second settle does nothing
			cs := classState(t, l, c.Class(), t0)
			if got := lv(cs); !sameLevels(got, tt.wantLevels) {
				t.Errorf("levels = %v, want %v", got, tt.wantLevels)
			}
			if got := cs.PausedUntil.Sub(t0); (tt.wantPause == 0 && !cs.PausedUntil.IsZero() && got > 0) || (tt.wantPause > 0 && got != tt.wantPause) {
				t.Errorf("paused for %v, want %v", got, tt.wantPause)
			}
			if s, _ := l.SnapshotAt(context.Background(), t0); s.InFlight != 0 {
				t.Errorf("%d in flight after Settle, want 0", s.InFlight)
			}
		})
	}
}

func TestPrepareLeavesUnknownModels(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, admit.Config{})
	for _, body := range []string{`not json`, `{"max_tokens":10}`, `{"model":"claude-from-the-future-9","max_tokens":10}`} {
		if _, ok := l.Prepare([]byte(body)); ok {
			t.Errorf("Prepare(%s) = ok, want not paced (sent as it is)", body)
		}
	}
}
