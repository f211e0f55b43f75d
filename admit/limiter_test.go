package admit_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// testCatalog is the default catalog with a tier "tiny": 60 RPM, 6,000 ITPM and 600
// OTPM for every class, i.e. per second 1 request, 100 input and 10 output tokens.
func testCatalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Overlay(catalog.Default(), []byte(`tiers:
  tiny:
    batch: {rpm: 1000, queue: 1000, max_requests: 100000}
    limits:
      default: {rpm: 60, itpm: 6000, otpm: 600}
`))
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	return c
}

// newLimiter returns a limiter on the tiny tier with no headroom, a fixed seed and a
// clock stuck at t0, with cfg's non-zero fields laid over.
func newLimiter(t testing.TB, cfg admit.Config) *admit.Limiter {
	t.Helper()
	if cfg.Catalog == nil {
		cfg.Catalog = testCatalog(t)
	}
	if cfg.Tier == "" {
		cfg.Tier = "tiny"
	}
	if cfg.Headroom == 0 {
		cfg.Headroom = -1
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 2))
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return t0 }
	}
	l, err := admit.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func classState(t testing.TB, l *admit.Limiter, class string, now time.Time) admit.ClassSnapshot {
	t.Helper()
	s, err := l.SnapshotAt(context.Background(), now)
	if err != nil {
		t.Fatalf("SnapshotAt: %v", err)
	}
	for _, c := range s.Classes {
		if c.Class == class {
			return c
		}
	}
	t.Fatalf("SnapshotAt: no class %s in %+v", class, s)
	return admit.ClassSnapshot{}
}

func lv(c admit.ClassSnapshot) [3]float64 {
	return [3]float64{c.Requests.Level, c.InputTokens.Level, c.OutputTokens.Level}
}

func sameLevels(a, b [3]float64) bool {
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-6 {
			return false
		}
	}
	return true
}

func mustReserve(t testing.TB, l *admit.Limiter, class string, n admit.Need, now time.Time) admit.Reservation {
	t.Helper()
	r, w, err := l.ReserveAt(class, n, now)
	if err != nil || w != 0 || !r.OK() {
		t.Fatalf("ReserveAt(%s, %+v) = ok %v, wait %v, err %v; want admitted", class, n, r.OK(), w, err)
	}
	return r
}

// headers builds the rate-limit headers a response would carry.
func headers(reqLimit, reqRem, inLimit, inRem, outLimit, outRem int64) http.Header {
	h := http.Header{}
	for _, b := range []struct {
		name       string
		limit, rem int64
	}{{"requests", reqLimit, reqRem}, {"input-tokens", inLimit, inRem}, {"output-tokens", outLimit, outRem}} {
		h.Set("anthropic-ratelimit-"+b.name+"-limit", strconv.FormatInt(b.limit, 10))
		h.Set("anthropic-ratelimit-"+b.name+"-remaining", strconv.FormatInt(b.rem, 10))
	}
	return h
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cat := testCatalog(t)
	tests := []struct {
		name    string
		cfg     admit.Config
		wantErr string
	}{
		{name: "zero value", cfg: admit.Config{}},
		{name: "named tier", cfg: admit.Config{Catalog: cat, Tier: "tiny"}},
		{name: "unknown tier", cfg: admit.Config{Tier: "platinum"}, wantErr: "tier: unknown tier"},
		{name: "unknown start tier", cfg: admit.Config{StartTier: "nope"}, wantErr: "start tier"},
		{name: "burst above 1", cfg: admit.Config{Burst: 1.5}, wantErr: "burst 1.5"},
		{name: "negative burst", cfg: admit.Config{Burst: -1}, wantErr: "burst -1"},
		{name: "headroom too large", cfg: admit.Config{Headroom: 0.5}, wantErr: "headroom 0.5"},
		{name: "no headroom", cfg: admit.Config{Headroom: -1}},
		{name: "negative concurrency", cfg: admit.Config{MaxConcurrency: -3}, wantErr: "max concurrency -3"},
		{name: "aimd max above cap", cfg: admit.Config{MaxConcurrency: 8, AIMD: admit.AIMDConfig{Max: 16}}, wantErr: "must not exceed max concurrency"},
		{name: "aimd decrease", cfg: admit.Config{AIMD: admit.AIMDConfig{Decrease: 1}}, wantErr: "aimd decrease 1"},
		{name: "aimd initial", cfg: admit.Config{AIMD: admit.AIMDConfig{Min: 4, Initial: 2}}, wantErr: "aimd initial 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := admit.New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New(%+v) = %v, want nil", tt.cfg, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.wantErr)
			}
		})
	}
}

func TestAutoStartsFromCautiousTier(t *testing.T) {
	t.Parallel()
	l, err := admit.New(admit.Config{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	mustReserve(t, l, "sonnet-4", admit.Need{}, t0)
	c := classState(t, l, "sonnet-4", t0)
	if c.Requests.Limit != 50 || c.InputTokens.Limit != 30000 || c.OutputTokens.Limit != 8000 {
		t.Errorf("auto mode starts with %d/%d/%d, want tier-1's 50/30000/8000", c.Requests.Limit, c.InputTokens.Limit, c.OutputTokens.Limit)
	}
}

func TestReserveAt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		headroom float64
		first    admit.Need // admitted n times
		n        int
		then     admit.Need
		wantWait time.Duration
	}{
		{name: "requests", first: admit.Need{}, n: 60, then: admit.Need{}, wantWait: time.Second},
		{name: "input", first: admit.Need{InputTokens: 2000}, n: 3, then: admit.Need{InputTokens: 50}, wantWait: 500 * time.Millisecond},
		{name: "output", first: admit.Need{OutputTokens: 300}, n: 2, then: admit.Need{OutputTokens: 20}, wantWait: 2 * time.Second},
		{name: "headroom", headroom: 0.1, first: admit.Need{}, n: 54, then: admit.Need{}, wantWait: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter(t, admit.Config{Headroom: tt.headroom})
			for i := 0; i < tt.n; i++ {
				r := mustReserve(t, l, "sonnet-5", tt.first, t0)
				if err := r.CommitAt(admit.Usage{InputTokens: tt.first.InputTokens, OutputTokens: tt.first.OutputTokens}, nil, t0); err != nil {
					t.Fatal(err)
				}
			}
			r, w, err := l.ReserveAt("sonnet-5", tt.then, t0)
			if err != nil || r.OK() || w < tt.wantWait || w > tt.wantWait+time.Millisecond {
				t.Fatalf("ReserveAt(%+v) = ok %v, wait %v, err %v; want wait %v", tt.then, r.OK(), w, err, tt.wantWait)
			}
			mustReserve(t, l, "sonnet-5", tt.then, t0.Add(w))
			if got := classState(t, l, "sonnet-5", t0.Add(w)).InFlight.Requests; got != 1 {
				t.Errorf("InFlight.Requests = %d, want 1", got)
			}
		})
	}
}

func TestReserveErrors(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, admit.Config{})
	if _, _, err := l.ReserveAt("gpt-5", admit.Need{}, t0); !errors.Is(err, admit.ErrUnknownClass) {
		t.Errorf("ReserveAt(gpt-5) = %v, want ErrUnknownClass", err)
	}
	if _, _, err := l.ReserveAt("sonnet-5", admit.Need{InputTokens: -1}, t0); err == nil {
		t.Errorf("ReserveAt(negative need) = nil error, want one")
	}
	if cls, err := l.ClassOf("claude-opus-4-6"); err != nil || cls != "opus-4" {
		t.Errorf("ClassOf(claude-opus-4-6) = %q, %v, want opus-4", cls, err)
	}
}

func TestFinishing(t *testing.T) {
	t.Parallel()
	// Every case reserves 1,000 input and 100 output tokens on a full tiny bucket
	// (60 requests, 6,000 input, 600 output) and finishes at t0.
	need := admit.Need{InputTokens: 1000, OutputTokens: 100}
	tests := []struct {
		name   string
		class  string
		finish func(r *admit.Reservation) error
		want   [3]float64
	}{
		{"commit exact", "sonnet-5", func(r *admit.Reservation) error {
			return r.CommitAt(admit.Usage{InputTokens: 1000, OutputTokens: 100}, nil, t0)
		}, [3]float64{59, 5000, 500}},
		{"commit refunds", "sonnet-5", func(r *admit.Reservation) error {
			return r.CommitAt(admit.Usage{InputTokens: 300, CacheCreationInputTokens: 200, OutputTokens: 40}, nil, t0)
		}, [3]float64{59, 5500, 560}},
		{"commit charges", "sonnet-5", func(r *admit.Reservation) error {
			return r.CommitAt(admit.Usage{InputTokens: 1500, OutputTokens: 900}, nil, t0)
		}, [3]float64{59, 4500, -300}},
		{"cache reads free", "sonnet-5", func(r *admit.Reservation) error {
			return r.CommitAt(admit.Usage{InputTokens: 100, CacheReadInputTokens: 5000, OutputTokens: 100}, nil, t0)
		}, [3]float64{59, 5900, 500}},
		{"cache reads count on †", "haiku-3", func(r *admit.Reservation) error {
			return r.CommitAt(admit.Usage{InputTokens: 100, CacheReadInputTokens: 5000, OutputTokens: 100}, nil, t0)
		}, [3]float64{59, 900, 500}},
		{"cancel", "sonnet-5", func(r *admit.Reservation) error { return r.CancelAt(t0) }, [3]float64{60, 6000, 600}},
		{"rate limited", "sonnet-5", func(r *admit.Reservation) error { return r.RateLimitedAt(nil, t0) }, [3]float64{60, 6000, 600}},
		{"overloaded", "sonnet-5", func(r *admit.Reservation) error { return r.OverloadedAt(nil, t0) }, [3]float64{60, 6000, 600}},
		{"fail keeps the charge", "sonnet-5", func(r *admit.Reservation) error { return r.FailAt(nil, t0) }, [3]float64{59, 5000, 500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter(t, admit.Config{})
			r := mustReserve(t, l, tt.class, need, t0)
			if err := tt.finish(&r); err != nil {
				t.Fatalf("finish: %v", err)
			}
			if r.OK() {
				t.Errorf("reservation still live after finishing")
			}
			c := classState(t, l, tt.class, t0)
			if got := lv(c); !sameLevels(got, tt.want) {
				t.Errorf("levels = %v, want %v", got, tt.want)
			}
			if c.InFlight != (admit.Cost{}) || c.Concurrency.InFlight != 0 {
				t.Errorf("after finishing: InFlight %+v, concurrency in flight %d, want none", c.InFlight, c.Concurrency.InFlight)
			}
			// Finishing twice does nothing.
			before := lv(c)
			if err := r.CancelAt(t0); err != nil {
				t.Errorf("second finish = %v, want nil", err)
			}
			if got := lv(classState(t, l, tt.class, t0)); got != before {
				t.Errorf("a second finish changed the levels from %v to %v", before, got)
			}
		})
	}
}

func TestRateLimitedPausesWithJitter(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, admit.Config{PauseJitter: time.Second})
	var rs []admit.Reservation
	for i := 0; i < 20; i++ {
		rs = append(rs, mustReserve(t, l, "sonnet-5", admit.Need{}, t0))
	}
	var ends []time.Time
	for i := range rs {
		h := headers(60, 59, 6000, 6000, 600, 600)
		h.Set("retry-after", "3")
		if err := rs[i].RateLimitedAt(h, t0); err != nil {
			t.Fatal(err)
		}
		p := classState(t, l, "sonnet-5", t0).PausedUntil
		if p.Before(t0.Add(3*time.Second)) || !p.Before(t0.Add(4*time.Second)) {
			t.Fatalf("PausedUntil = t0+%v, want in [3s, 4s)", p.Sub(t0))
		}
		ends = append(ends, p)
	}
	if ends[0].Equal(ends[len(ends)-1]) {
		t.Errorf("20 pauses all ended at t0+%v: want jitter", ends[0].Sub(t0))
	}
	if _, w, _ := l.ReserveAt("sonnet-5", admit.Need{}, t0.Add(2*time.Second)); w < time.Second {
		t.Errorf("ReserveAt during the pause = wait %v, want at least 1s", w)
	}
	// Another class is not paused.
	mustReserve(t, l, "haiku-4-5", admit.Need{}, t0)

	// The spend cap's 429 has no retry-after: no pause.
	l2 := newLimiter(t, admit.Config{})
	r := mustReserve(t, l2, "sonnet-5", admit.Need{}, t0)
	if err := r.RateLimitedAt(http.Header{}, t0); err != nil {
		t.Fatal(err)
	}
	if p := classState(t, l2, "sonnet-5", t0).PausedUntil; !p.IsZero() {
		t.Errorf("spend-cap 429 paused the class until t0+%v, want no pause", p.Sub(t0))
	}
}

func TestPauseJitterIsSeeded(t *testing.T) {
	t.Parallel()
	pauseEnd := func(seed uint64) time.Time {
		l := newLimiter(t, admit.Config{Rand: rand.New(rand.NewPCG(seed, 0))})
		if err := l.PauseAt("opus-4", time.Second, t0); err != nil {
			t.Fatal(err)
		}
		return classState(t, l, "opus-4", t0).PausedUntil
	}
	if a, b := pauseEnd(7), pauseEnd(7); !a.Equal(b) {
		t.Errorf("same seed: pauses end at t0+%v and t0+%v, want equal", a.Sub(t0), b.Sub(t0))
	}
	if a, b := pauseEnd(7), pauseEnd(8); a.Equal(b) {
		t.Errorf("different seeds: both pauses end at t0+%v, want different", a.Sub(t0))
	}
}

func TestOverloadShrinksConcurrency(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, admit.Config{MaxConcurrency: 8})
	var rs []admit.Reservation
	for i := 0; i < 8; i++ {
		rs = append(rs, mustReserve(t, l, "sonnet-5", admit.Need{}, t0))
	}
	if _, _, err := l.ReserveAt("sonnet-5", admit.Need{}, t0); !errors.Is(err, admit.ErrBusy) {
		t.Fatalf("9th ReserveAt with MaxConcurrency 8 = %v, want ErrBusy", err)
	}
	t1 := t0.Add(time.Second)
	steps := []struct {
		what      string
		finish    func() error
		wantLimit float64
	}{
		{"first 529 halves", func() error { return rs[0].OverloadedAt(nil, t1) }, 4},
		{"529 of a call started before the decrease", func() error { return rs[1].OverloadedAt(nil, t1) }, 4},
		{"429 is not overload", func() error { return rs[2].RateLimitedAt(nil, t1) }, 4},
		{"success of a call started before the decrease does not grow it", func() error { return rs[3].CommitAt(admit.Usage{}, nil, t1) }, 4},
	}
	for _, s := range steps {
		if err := s.finish(); err != nil {
			t.Fatal(err)
		}
		if got := classState(t, l, "sonnet-5", t1).Concurrency.Limit; got != s.wantLimit {
			t.Errorf("%s: concurrency limit = %v, want %v", s.what, got, s.wantLimit)
		}
	}
	// 4 still in flight at a limit of 4: busy, although the global cap has room.
	if _, _, err := l.ReserveAt("sonnet-5", admit.Need{}, t1); !errors.Is(err, admit.ErrBusy) {
		t.Errorf("ReserveAt at the AIMD limit = %v, want ErrBusy", err)
	}
	mustReserve(t, l, "haiku-4-5", admit.Need{}, t1) // another class has its own controller
	// A call started after the decrease that gets a 529 halves again.
	rs[4].CancelAt(t1)
	late := mustReserve(t, l, "sonnet-5", admit.Need{}, t1.Add(time.Millisecond))
	if err := late.OverloadedAt(nil, t1.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := classState(t, l, "sonnet-5", t1).Concurrency.Limit; got != 2 {
		t.Errorf("after a second-round 529: concurrency limit = %v, want 2", got)
	}
}

func TestResync(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		tier       string
		h          http.Header
		wantLimits [3]int64
		wantLevels [3]float64
	}{
		{
			name: "fixed tier lowers levels to remaining plus rounding",
			tier: "tiny", h: headers(60, 30, 6000, 2000, 600, 600),
			wantLimits: [3]int64{60, 6000, 600}, wantLevels: [3]float64{31, 2500, 600},
		},
		{
			name: "fixed tier never raises a limit",
			tier: "tiny", h: headers(1000, 1000, 2000000, 2000000, 400000, 400000),
			wantLimits: [3]int64{60, 6000, 600}, wantLevels: [3]float64{60, 6000, 600},
		},
		{
			name: "fixed tier takes a lower limit",
			tier: "tiny", h: headers(30, 30, 6000, 6000, 600, 600),
			wantLimits: [3]int64{30, 6000, 600}, wantLevels: [3]float64{30, 6000, 600},
		},
		{
			name: "auto adopts reported limits",
			tier: admit.TierAuto, h: headers(1000, 990, 2000000, 1990000, 400000, 400000),
			wantLimits: [3]int64{1000, 2000000, 400000}, wantLevels: [3]float64{991, 1990500, 400000},
		},
		{
			name: "absent headers change nothing",
			tier: "tiny", h: http.Header{},
			wantLimits: [3]int64{60, 6000, 600}, wantLevels: [3]float64{60, 6000, 600},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newLimiter(t, admit.Config{Tier: tt.tier, StartTier: "tiny"})
			if err := l.ResyncAt("sonnet-5", tt.h, t0); err != nil {
				t.Fatal(err)
			}
			c := classState(t, l, "sonnet-5", t0)
			if got := [3]int64{c.Requests.Limit, c.InputTokens.Limit, c.OutputTokens.Limit}; got != tt.wantLimits {
				t.Errorf("limits = %v, want %v", got, tt.wantLimits)
			}
			if got := lv(c); !sameLevels(got, tt.wantLevels) {
				t.Errorf("levels = %v, want %v", got, tt.wantLevels)
			}
		})
	}
}

// TestCommitThenResyncCountsOnce: the server's remaining includes a call's actual
// usage; Commit charges the same difference locally first, so resyncing with that
// response must not take it again.
func TestCommitThenResyncCountsOnce(t *testing.T) {
	t.Parallel()
	cat, err := catalog.Overlay(catalog.Default(), []byte(`tiers:
  big:
    batch: {rpm: 1000, queue: 1000, max_requests: 100000}
    limits:
      default: {rpm: 600, itpm: 600000, otpm: 60000}
`))
	if err != nil {
		t.Fatal(err)
	}
	l := newLimiter(t, admit.Config{Catalog: cat, Tier: "big"})
	r := mustReserve(t, l, "sonnet-5", admit.Need{InputTokens: 10000, OutputTokens: 1000}, t0)
	// The call used 25,000 input and 3,000 output; the server counts exactly that.
	h := headers(600, 599, 600000, 575000, 60000, 57000)
	if err := r.CommitAt(admit.Usage{InputTokens: 25000, OutputTokens: 3000}, h, t0); err != nil {
		t.Fatal(err)
	}
	if got, want := lv(classState(t, l, "sonnet-5", t0)), [3]float64{599, 575000, 57000}; !sameLevels(got, want) {
		t.Errorf("levels = %v, want %v: the call counted once", got, want)
	}
	// Headers of another response that lag a reservation in flight do not lower the
	// level below what is held for it.
	r2 := mustReserve(t, l, "sonnet-5", admit.Need{InputTokens: 10000, OutputTokens: 1000}, t0)
	if err := l.ResyncAt("sonnet-5", headers(600, 599, 600000, 575000, 60000, 57000), t0); err != nil {
		t.Fatal(err)
	}
	if got, want := lv(classState(t, l, "sonnet-5", t0)), [3]float64{598, 565000, 56000}; !sameLevels(got, want) {
		t.Errorf("levels = %v, want %v: in flight still held", got, want)
	}
	r2.CancelAt(t0)
}

func TestSnapshot(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, admit.Config{MaxConcurrency: 16})
	r := mustReserve(t, l, "sonnet-5", admit.Need{InputTokens: 1200, OutputTokens: 300}, t0)
	mustReserve(t, l, "haiku-4-5", admit.Need{InputTokens: 10}, t0)
	if err := l.PauseAt("haiku-4-5", 2*time.Second, t0); err != nil {
		t.Fatal(err)
	}
	s, err := l.SnapshotAt(context.Background(), t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if s.Tier != "tiny" || s.MaxConcurrency != 16 || s.InFlight != 2 || len(s.Classes) != 2 {
		t.Fatalf("Snapshot = tier %q, max %d, in flight %d, %d classes; want tiny, 16, 2, 2", s.Tier, s.MaxConcurrency, s.InFlight, len(s.Classes))
	}
	h, so := s.Classes[0], s.Classes[1]
	if h.Class != "haiku-4-5" || so.Class != "sonnet-5" {
		t.Errorf("classes = %s, %s; want haiku-4-5, sonnet-5 (sorted)", h.Class, so.Class)
	}
	if !h.Paused(s.At) || so.Paused(s.At) {
		t.Errorf("paused: haiku %v, sonnet %v; want true, false", h.Paused(s.At), so.Paused(s.At))
	}
	if want := (admit.Cost{Requests: 1, InputTokens: 1200, OutputTokens: 300}); so.InFlight != want {
		t.Errorf("sonnet InFlight = %+v, want %+v", so.InFlight, want)
	}
	if so.Concurrency.InFlight != 1 || so.Concurrency.Limit != 16 || so.Concurrency.Max != 16 {
		t.Errorf("sonnet Concurrency = %+v, want 1 in flight, limit 16", so.Concurrency)
	}
	// One second refilled 1 request and 100 input; output is held at capacity − 300.
	if got, want := lv(so), [3]float64{60, 4900, 300}; !sameLevels(got, want) {
		t.Errorf("sonnet levels = %v, want %v", got, want)
	}
	if so.OutputTokens.Held != 300 {
		t.Errorf("sonnet output held = %v, want 300", so.OutputTokens.Held)
	}
	r.CancelAt(t0)
}

// The tests below use testing/synctest: the limiter's clock is the bubble's fake
// time.Now, and Wait's timers advance it without sleeping.

func TestWaitSleepsUntilFit(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, admit.Config{Now: time.Now})
		ctx := context.Background()
		start := time.Now()
		for i := 0; i < 60; i++ {
			if _, err := l.Wait(ctx, "sonnet-5", admit.Need{}); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("60 Waits on a full 60 RPM bucket took %v, want none", d)
		}
		for i := 1; i <= 3; i++ {
			if _, err := l.Wait(ctx, "sonnet-5", admit.Need{}); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < time.Duration(i)*time.Second || d > time.Duration(i)*time.Second+time.Millisecond {
				t.Errorf("Wait #%d returned after %v, want %ds (one request per second)", 60+i, d, i)
			}
		}
	})
}

func TestWaitQueuesInOrderAfterPause(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// MaxConcurrency 1: each caller holds its slot until it has reported its turn.
		l := newLimiter(t, admit.Config{Now: time.Now, PauseJitter: -1, MaxConcurrency: 1})
		start := time.Now()
		if err := l.Pause("sonnet-5", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		// 10 callers arrive in order; the bucket has room for 60 at once.
		order := make(chan int, 10)
		for i := 0; i < 10; i++ {
			go func() {
				r, err := l.Wait(context.Background(), "sonnet-5", admit.Need{})
				if err != nil {
					t.Error(err)
					return
				}
				if d := time.Since(start); d != 5*time.Second {
					t.Errorf("caller %d admitted after %v, want at the pause's end, 5s", i, d)
				}
				order <- i
				r.Cancel()
			}()
			synctest.Wait() // caller i is queued before caller i+1 starts
		}
		for want := 0; want < 10; want++ {
			if got := <-order; got != want {
				t.Errorf("admission %d went to caller %d, want FIFO", want, got)
			}
		}
	})
}

func TestWaitWakesOnRefund(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, admit.Config{Now: time.Now})
		ctx := context.Background()
		big, err := l.Wait(ctx, "sonnet-5", admit.Need{OutputTokens: 600})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		done := make(chan time.Duration)
		go func() {
			r, err := l.Wait(ctx, "sonnet-5", admit.Need{OutputTokens: 300}) // 30 s of refill
			if err != nil {
				t.Error(err)
			}
			done <- time.Since(start)
			r.Cancel()
		}()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		// The big call produced only 100 tokens: 500 come back at once.
		if err := big.Commit(admit.Usage{OutputTokens: 100}, nil); err != nil {
			t.Fatal(err)
		}
		if d := <-done; d != 2*time.Second {
			t.Errorf("waiter admitted after %v, want at the refund, 2s", d)
		}
	})
}

func TestWaitCancelReleasesSlots(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, admit.Config{Now: time.Now, MaxConcurrency: 2})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var held []admit.Reservation
		for i := 0; i < 60; i++ { // drain the RPM bucket
			r, err := l.Wait(ctx, "sonnet-5", admit.Need{})
			if err != nil {
				t.Fatal(err)
			}
			if i < 1 {
				held = append(held, r)
			} else {
				r.FailAt(nil, time.Now())
			}
		}
		// One slot left; the first waiter takes it and waits for a token (1 s), the
		// second waits for the first to pass the gate, the third for a slot.
		// Cancelled, not a deadline: a wait past a deadline fails at once
		// (TestWaitFailsFastPastDeadline), and these must be waiting when it ends.
		errs := make(chan error, 3)
		short, cancelShort := context.WithCancel(ctx)
		defer cancelShort()
		time.AfterFunc(500*time.Millisecond, cancelShort)
		go func() { _, err := l.Wait(short, "sonnet-5", admit.Need{}); errs <- err }()
		synctest.Wait()
		go func() { _, err := l.Wait(short, "sonnet-5", admit.Need{}); errs <- err }()
		go func() { _, err := l.Wait(short, "haiku-4-5", admit.Need{}); errs <- err }()
		for i := 0; i < 3; i++ {
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Errorf("Wait cancelled after 500ms = %v, want Canceled", err)
			}
		}
		s, _ := l.Snapshot(ctx)
		if s.InFlight != 1 {
			t.Errorf("after cancelled waits, %d slots in use, want 1 (the held reservation)", s.InFlight)
		}
		held[0].Cancel()
		if r, err := l.Wait(ctx, "haiku-4-5", admit.Need{}); err != nil || !r.OK() {
			t.Errorf("Wait after the cancellations = %v, want admitted", err)
		}
	})
}

func TestWaitFailsFastPastDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, admit.Config{Now: time.Now, MaxConcurrency: 4})
		ctx := context.Background()
		for i := 0; i < 60; i++ { // drain the RPM bucket: the next request fits in 1 s
			r, err := l.Wait(ctx, "sonnet-5", admit.Need{})
			if err != nil {
				t.Fatal(err)
			}
			r.FailAt(nil, time.Now())
		}
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := l.Wait(short, "sonnet-5", admit.Need{})
		if !errors.Is(err, admit.ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait needing 1s with 500ms left = %v, want ErrDeadline (and DeadlineExceeded)", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("Wait waited %v before failing, want 0 (at once)", waited)
		}
		if s, _ := l.Snapshot(ctx); s.InFlight != 0 {
			t.Errorf("after a refused wait, %d slots in use, want 0", s.InFlight)
		}
		// With time enough, the same wait goes through after the second.
		long, cancelLong := context.WithTimeout(ctx, 2*time.Second)
		defer cancelLong()
		r, err := l.Wait(long, "sonnet-5", admit.Need{})
		if err != nil {
			t.Fatalf("Wait needing 1s with 2s left = %v, want admitted", err)
		}
		if waited := time.Since(start); waited < time.Second-50*time.Millisecond || waited > time.Second+50*time.Millisecond {
			t.Errorf("admitted after %v, want about 1s", waited)
		}
		r.Cancel()
	})
}
