// Package admittest is the conformance suite every admit.Backend must pass.
//
// A backend's own test calls Run with a constructor:
//
//	func TestConformance(t *testing.T) {
//		admittest.Run(t, func(t *testing.T) admit.Backend { return admit.NewMemory() })
//	}
//
// The suite drives the backend with explicit times and never sleeps. A backend that
// uses its own clock in production (Redis TIME) must honour the given now under test.
package admittest

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/admit"
)

// T0 is the suite's starting time.
var T0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// spec refills 1 request, 100 input and 10 output tokens per second.
var spec = admit.Spec{Limits: admit.Limits{RPM: 60, ITPM: 6000, OTPM: 600}, Burst: 1}

const class = "sonnet-5"

// Run runs the suite. newBackend must return a new, empty backend for each call; the
// subtests run in parallel.
func Run(t *testing.T, newBackend func(t *testing.T) admit.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b admit.Backend)
	}{
		{"UnknownClass", testUnknownClass},
		{"InitRejectsInvalidSpec", testInitRejectsInvalidSpec},
		{"InitStartsFull", testInitStartsFull},
		{"InitKeepsExisting", testInitKeepsExisting},
		{"ReserveTakesCost", testReserveTakesCost},
		{"ReserveRefusesWithWait", testReserveRefusesWithWait},
		{"ReserveLeavesHeadroom", testReserveLeavesHeadroom},
		{"CostAboveCapacity", testCostAboveCapacity},
		{"RefillCapsAtCapacity", testRefillCapsAtCapacity},
		{"EarlierNowAddsNothing", testEarlierNowAddsNothing},
		{"Settle", testSettle},
		{"HeldOutputCapsRefill", testHeldOutputCapsRefill},
		{"Pause", testPause},
		{"SyncLowersNeverRaises", testSyncLowersNeverRaises},
		{"SyncIgnoresStaleRemaining", testSyncIgnoresStaleRemaining},
		{"SyncAdoptsLimit", testSyncAdoptsLimit},
		{"ClassesAreIndependent", testClassesAreIndependent},
		{"StateDoesNotMutate", testStateDoesNotMutate},
		{"ConcurrentReserve", testConcurrentReserve},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newBackend(t))
		})
	}
}

var ctx = context.Background()

func at(d time.Duration) time.Time { return T0.Add(d) }

func initClass(t *testing.T, b admit.Backend, name string, s admit.Spec) {
	t.Helper()
	if err := b.Init(ctx, name, s, T0); err != nil {
		t.Fatalf("Init(%s, %+v) = %v, want nil", name, s, err)
	}
}

func reserve(t *testing.T, b admit.Backend, c admit.Cost, now time.Time) time.Duration {
	t.Helper()
	w, err := b.Reserve(ctx, class, c, now)
	if err != nil {
		t.Fatalf("Reserve(%+v, %v) error %v", c, now.Sub(T0), err)
	}
	return w
}

func mustAdmit(t *testing.T, b admit.Backend, c admit.Cost, now time.Time) {
	t.Helper()
	if w := reserve(t, b, c, now); w != 0 {
		t.Fatalf("Reserve(%+v, T0+%v) = wait %v, want admitted", c, now.Sub(T0), w)
	}
}

func state(t *testing.T, b admit.Backend, now time.Time) admit.State {
	t.Helper()
	s, err := b.State(ctx, class, now)
	if err != nil {
		t.Fatalf("State(T0+%v) error %v", now.Sub(T0), err)
	}
	return s
}

func levels(s admit.State) [3]float64 {
	return [3]float64{s.Requests.Level, s.InputTokens.Level, s.OutputTokens.Level}
}

func checkLevels(t *testing.T, what string, got admit.State, want [3]float64) {
	t.Helper()
	g := levels(got)
	for i, name := range []string{"requests", "input", "output"} {
		if math.Abs(g[i]-want[i]) > 1e-6*math.Max(1, math.Abs(want[i])) {
			t.Errorf("%s: %s level = %v, want %v", what, name, g[i], want[i])
		}
	}
}

// near reports whether a wait is within the microsecond rounding of want.
func near(got, want time.Duration) bool {
	d := got - want
	return d >= 0 && d <= 2*time.Microsecond
}

func testUnknownClass(t *testing.T, b admit.Backend) {
	checks := map[string]error{}
	_, checks["Reserve"] = b.Reserve(ctx, "nope", admit.Cost{Requests: 1}, T0)
	checks["Settle"] = b.Settle(ctx, "nope", admit.Cost{Requests: 1}, admit.Cost{}, T0)
	checks["Sync"] = b.Sync(ctx, "nope", admit.Report{}, T0)
	checks["Pause"] = b.Pause(ctx, "nope", T0)
	_, checks["State"] = b.State(ctx, "nope", T0)
	for op, err := range checks {
		if !errors.Is(err, admit.ErrUnknownClass) {
			t.Errorf("%s(nope) = %v, want ErrUnknownClass", op, err)
		}
	}
}

func testInitRejectsInvalidSpec(t *testing.T, b admit.Backend) {
	bad := []admit.Spec{
		{Limits: admit.Limits{RPM: 0, ITPM: 1, OTPM: 1}, Burst: 1},
		{Limits: spec.Limits, Burst: 0},
		{Limits: spec.Limits, Burst: 1.5},
		{Limits: spec.Limits, Burst: 1, Headroom: 0.5},
		{Limits: spec.Limits, Burst: 1, Headroom: -0.1},
	}
	for _, s := range bad {
		if err := b.Init(ctx, class, s, T0); err == nil {
			t.Errorf("Init(%+v) = nil, want an error", s)
		}
	}
}

func testInitStartsFull(t *testing.T, b admit.Backend) {
	initClass(t, b, class, admit.Spec{Limits: spec.Limits, Burst: 0.5})
	s := state(t, b, T0)
	want := []admit.BucketState{{Limit: 60, Capacity: 30, Level: 30}, {Limit: 6000, Capacity: 3000, Level: 3000}, {Limit: 600, Capacity: 300, Level: 300}}
	for i, got := range []admit.BucketState{s.Requests, s.InputTokens, s.OutputTokens} {
		if got != want[i] {
			t.Errorf("State() bucket %d = %+v, want %+v", i, got, want[i])
		}
	}
	if !s.PausedUntil.IsZero() || !s.SyncedAt.IsZero() {
		t.Errorf("State() paused %v synced %v, want zero times", s.PausedUntil, s.SyncedAt)
	}
}

func testInitKeepsExisting(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	mustAdmit(t, b, admit.Cost{Requests: 10, InputTokens: 1000, OutputTokens: 100}, T0)
	initClass(t, b, class, admit.Spec{Limits: admit.Limits{RPM: 1, ITPM: 1, OTPM: 1}, Burst: 1})
	s := state(t, b, T0)
	if s.Requests.Limit != 60 {
		t.Errorf("after a second Init, requests limit = %d, want 60 (unchanged)", s.Requests.Limit)
	}
	checkLevels(t, "after a second Init", s, [3]float64{50, 5000, 500})
}

func testReserveTakesCost(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	mustAdmit(t, b, admit.Cost{Requests: 1, InputTokens: 2500, OutputTokens: 200}, T0)
	mustAdmit(t, b, admit.Cost{Requests: 1, InputTokens: 500}, T0)
	checkLevels(t, "after two reservations", state(t, b, T0), [3]float64{58, 3000, 400})
	// Two seconds refill 2 requests and 200 input tokens; output stays at capacity
	// less the 200 held.
	checkLevels(t, "two seconds later", state(t, b, at(2*time.Second)), [3]float64{60, 3200, 400})
}

func testReserveRefusesWithWait(t *testing.T, b admit.Backend) {
	tests := []struct {
		name  string
		drain admit.Cost // taken first
		try   admit.Cost
		want  time.Duration
	}{
		{"requests", admit.Cost{Requests: 60}, admit.Cost{Requests: 1}, time.Second},
		{"input", admit.Cost{Requests: 1, InputTokens: 5900}, admit.Cost{Requests: 1, InputTokens: 350}, 2500 * time.Millisecond},
		{"output", admit.Cost{Requests: 1, OutputTokens: 600}, admit.Cost{Requests: 1, OutputTokens: 5}, 500 * time.Millisecond},
		{"slowest bucket decides", admit.Cost{Requests: 60, InputTokens: 6000}, admit.Cost{Requests: 1, InputTokens: 300}, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cls := "c-" + tt.name
			initClass(t, b, cls, spec)
			if w, err := b.Reserve(ctx, cls, tt.drain, T0); w != 0 || err != nil {
				t.Fatalf("Reserve(drain %+v) = %v, %v, want admitted", tt.drain, w, err)
			}
			if err := b.Settle(ctx, cls, tt.drain, tt.drain, T0); err != nil { // the call used it all
				t.Fatal(err)
			}
			before, _ := b.State(ctx, cls, T0)
			w, err := b.Reserve(ctx, cls, tt.try, T0)
			if err != nil || !near(w, tt.want) {
				t.Fatalf("Reserve(%+v) = %v, %v, want wait %v", tt.try, w, err, tt.want)
			}
			after, _ := b.State(ctx, cls, T0)
			if levels(after) != levels(before) {
				t.Errorf("a refused Reserve changed the levels from %v to %v", levels(before), levels(after))
			}
			if w2, _ := b.Reserve(ctx, cls, tt.try, T0.Add(w-time.Millisecond)); w2 == 0 {
				t.Errorf("Reserve 1ms before the wait ended admitted the call")
			}
			if w2, _ := b.Reserve(ctx, cls, tt.try, T0.Add(w)); w2 != 0 {
				t.Errorf("Reserve after the wait = wait %v, want admitted", w2)
			}
		})
	}
}

func testReserveLeavesHeadroom(t *testing.T, b admit.Backend) {
	initClass(t, b, class, admit.Spec{Limits: spec.Limits, Burst: 1, Headroom: 0.1}) // floor: 6 requests
	for i := 0; i < 54; i++ {
		mustAdmit(t, b, admit.Cost{Requests: 1}, T0)
	}
	if w := reserve(t, b, admit.Cost{Requests: 1}, T0); !near(w, time.Second) {
		t.Fatalf("Reserve with the level at the headroom floor = wait %v, want 1s", w)
	}
	// Input: floor 600, so with 5,000 left a call may take 4,400.
	initClass(t, b, "in", admit.Spec{Limits: spec.Limits, Burst: 1, Headroom: 0.1})
	if w, _ := b.Reserve(ctx, "in", admit.Cost{InputTokens: 1000}, T0); w != 0 {
		t.Fatalf("Reserve(1000 of a full bucket) = wait %v, want admitted", w)
	}
	if w, _ := b.Reserve(ctx, "in", admit.Cost{InputTokens: 4401}, T0); !near(w, 10*time.Millisecond) {
		t.Errorf("Reserve(4401 of 4400 usable) = wait %v, want 10ms", w)
	}
	if w, _ := b.Reserve(ctx, "in", admit.Cost{InputTokens: 4400}, T0); w != 0 {
		t.Errorf("Reserve(4400 of 4400 usable) = wait %v, want admitted", w)
	}
}

func testCostAboveCapacity(t *testing.T, b admit.Backend) {
	initClass(t, b, class, admit.Spec{Limits: spec.Limits, Burst: 1, Headroom: 0.1})
	// A call larger than the bucket is admitted when the bucket is full, and leaves debt.
	mustAdmit(t, b, admit.Cost{Requests: 1, InputTokens: 10000}, T0)
	checkLevels(t, "after 10,000 tokens from a 6,000 bucket", state(t, b, T0), [3]float64{59, -4000, 600})
	// The next call waits for the debt, the floor (600) and itself (100): 47 s.
	if w := reserve(t, b, admit.Cost{Requests: 1, InputTokens: 100}, T0); !near(w, 47*time.Second) {
		t.Errorf("Reserve after the debt = wait %v, want 47s", w)
	}
	if w := reserve(t, b, admit.Cost{Requests: 1, InputTokens: 1e6}, at(time.Minute)); !near(w, 40*time.Second) {
		t.Errorf("Reserve(1e6) with the bucket at 2,000 = wait %v, want 40s (until full)", w)
	}
}

func testRefillCapsAtCapacity(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	c := admit.Cost{Requests: 30, InputTokens: 3000, OutputTokens: 300}
	mustAdmit(t, b, c, T0)
	if err := b.Settle(ctx, class, c, c, T0); err != nil {
		t.Fatal(err)
	}
	checkLevels(t, "an hour later", state(t, b, at(time.Hour)), [3]float64{60, 6000, 600})
	mustAdmit(t, b, admit.Cost{Requests: 60}, at(time.Hour))
	if w := reserve(t, b, admit.Cost{Requests: 1}, at(time.Hour)); w == 0 {
		t.Errorf("Reserve(61st request an hour later) admitted, want refused: capacity is 60")
	}
}

func testEarlierNowAddsNothing(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	mustAdmit(t, b, admit.Cost{Requests: 60}, at(2*time.Second))
	// A caller whose clock read T0+1s takes the lock after T0+2s was seen.
	if w := reserve(t, b, admit.Cost{Requests: 1}, at(time.Second)); w == 0 {
		t.Fatalf("Reserve at an earlier now admitted a call the bucket has no room for")
	}
	checkLevels(t, "after an earlier now", state(t, b, at(2*time.Second)), [3]float64{0, 6000, 600})
}

func testSettle(t *testing.T, b admit.Backend) {
	reserved := admit.Cost{Requests: 1, InputTokens: 1000, OutputTokens: 100}
	tests := []struct {
		name   string
		actual admit.Cost
		at     time.Duration
		want   [3]float64
	}{
		{"used more: debt allowed", admit.Cost{Requests: 1, InputTokens: 1400, OutputTokens: 750}, 0, [3]float64{59, 4600, -150}},
		{"used less: refund", admit.Cost{Requests: 1, InputTokens: 700, OutputTokens: 40}, 0, [3]float64{59, 5300, 560}},
		{"never charged: full refund", admit.Cost{}, 0, [3]float64{60, 6000, 600}},
		{"keep the charge", reserved, 0, [3]float64{59, 5000, 500}},
		{"refund capped at capacity", admit.Cost{}, time.Hour, [3]float64{60, 6000, 600}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cls := "c-" + tt.name
			initClass(t, b, cls, spec)
			if w, err := b.Reserve(ctx, cls, reserved, T0); w != 0 || err != nil {
				t.Fatalf("Reserve(%+v) = %v, %v, want admitted", reserved, w, err)
			}
			s, _ := b.State(ctx, cls, T0)
			if s.OutputTokens.Held != 100 {
				t.Errorf("after Reserve, output held = %v, want 100", s.OutputTokens.Held)
			}
			if err := b.Settle(ctx, cls, reserved, tt.actual, at(tt.at)); err != nil {
				t.Fatalf("Settle(%+v, %+v) = %v", reserved, tt.actual, err)
			}
			s, _ = b.State(ctx, cls, at(tt.at))
			checkLevels(t, "after Settle", s, tt.want)
			if s.OutputTokens.Held != 0 {
				t.Errorf("after Settle, output held = %v, want 0", s.OutputTokens.Held)
			}
		})
	}
}

// testHeldOutputCapsRefill: the server charges output as generated, so while a call
// is in flight its bucket (the local level plus the held output) is full and stores no
// refill; the local level must not either.
func testHeldOutputCapsRefill(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	r := admit.Cost{Requests: 1, OutputTokens: 500}
	mustAdmit(t, b, r, T0)
	s := state(t, b, at(time.Minute))
	if s.OutputTokens.Level != 100 || s.OutputTokens.Held != 500 {
		t.Fatalf("a minute into a call holding 500: output %+v, want level 100 (capacity − held), held 500", s.OutputTokens)
	}
	// The call generated 500: the server's 600 becomes 100, and so does the local level.
	if err := b.Settle(ctx, class, r, r, at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	checkLevels(t, "after Settle", state(t, b, at(time.Minute)), [3]float64{60, 6000, 100})
	checkLevels(t, "10s later", state(t, b, at(time.Minute+10*time.Second)), [3]float64{60, 6000, 200})
}

func testPause(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	if err := b.Pause(ctx, class, at(5*time.Second)); err != nil {
		t.Fatalf("Pause = %v", err)
	}
	if err := b.Pause(ctx, class, at(2*time.Second)); err != nil { // earlier: no effect
		t.Fatalf("Pause = %v", err)
	}
	if s := state(t, b, T0); !s.PausedUntil.Equal(at(5 * time.Second)) {
		t.Errorf("PausedUntil = %v, want T0+5s", s.PausedUntil.Sub(T0))
	}
	if w := reserve(t, b, admit.Cost{Requests: 1}, at(time.Second)); w != 4*time.Second {
		t.Errorf("Reserve 1s into a 5s pause = wait %v, want 4s", w)
	}
	mustAdmit(t, b, admit.Cost{Requests: 1}, at(5*time.Second))
	// The pause and the buckets combine: the later of the two.
	mustAdmit(t, b, admit.Cost{Requests: 59}, at(5*time.Second))
	if err := b.Pause(ctx, class, at(5500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if w := reserve(t, b, admit.Cost{Requests: 1}, at(5*time.Second)); !near(w, time.Second) {
		t.Errorf("Reserve with a 0.5s pause and an empty bucket = wait %v, want 1s", w)
	}
}

func report(req, in, out admit.Reading) admit.Report {
	return admit.Report{Requests: req, InputTokens: in, OutputTokens: out}
}

func rd(limit, remaining, slack int64) admit.Reading {
	return admit.Reading{Valid: true, Limit: limit, Remaining: remaining, Slack: slack}
}

func testSyncLowersNeverRaises(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	mustAdmit(t, b, admit.Cost{Requests: 10, InputTokens: 1000, OutputTokens: 100}, T0) // 50, 5000, 500
	// Requests lower (40+1), input higher (5,500+500: ignored), output invalid.
	r := report(rd(60, 40, 1), rd(6000, 5500, 500), admit.Reading{Remaining: 0})
	if err := b.Sync(ctx, class, r, T0); err != nil {
		t.Fatalf("Sync = %v", err)
	}
	s := state(t, b, T0)
	checkLevels(t, "after Sync", s, [3]float64{41, 5000, 500})
	if !s.SyncedAt.Equal(T0) {
		t.Errorf("SyncedAt = %v, want T0", s.SyncedAt)
	}
	// Token counts rounded: remaining 4,000 means at most 4,500.
	if err := b.Sync(ctx, class, report(admit.Reading{}, rd(6000, 4000, 500), rd(600, 0, 500)), at(time.Second)); err != nil {
		t.Fatal(err)
	}
	checkLevels(t, "after a second Sync", state(t, b, at(time.Second)), [3]float64{42, 4500, 500})
}

func testSyncIgnoresStaleRemaining(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	if err := b.Sync(ctx, class, report(rd(60, 50, 0), admit.Reading{}, admit.Reading{}), at(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	// An older report, handled later: its remaining is stale, its limit still counts.
	if err := b.Sync(ctx, class, report(rd(120, 10, 0), admit.Reading{}, admit.Reading{}), at(time.Second)); err != nil {
		t.Fatal(err)
	}
	s := state(t, b, at(2*time.Second))
	if s.Requests.Limit != 120 || s.Requests.Level != 110 {
		t.Errorf("after a stale report: requests %+v, want limit 120 and level 110 (50 + 60 more capacity)", s.Requests)
	}
	if !s.SyncedAt.Equal(at(2 * time.Second)) {
		t.Errorf("SyncedAt = T0+%v, want T0+2s", s.SyncedAt.Sub(T0))
	}
}

func testSyncAdoptsLimit(t *testing.T, b admit.Backend) {
	initClass(t, b, class, admit.Spec{Limits: spec.Limits, Burst: 0.5, Headroom: 0.1})
	mustAdmit(t, b, admit.Cost{Requests: 20, InputTokens: 1000, OutputTokens: 250}, T0) // 10, 2000, 50
	// Requests up to 600/min (capacity 300: +270), input down to 4,000 (capacity 2,000:
	// −1,000), output limit 0 (not adopted) with a high remaining.
	r := report(rd(600, 1000, 1), rd(4000, 5000, 500), rd(0, 9000, 500))
	if err := b.Sync(ctx, class, r, T0); err != nil {
		t.Fatal(err)
	}
	s := state(t, b, T0)
	want := []admit.BucketState{{Limit: 600, Capacity: 300, Level: 280}, {Limit: 4000, Capacity: 2000, Level: 1000}, {Limit: 600, Capacity: 300, Level: 50}}
	for i, got := range []admit.BucketState{s.Requests, s.InputTokens, s.OutputTokens} {
		if math.Abs(got.Level-want[i].Level) > 1e-9 || got.Limit != want[i].Limit || got.Capacity != want[i].Capacity {
			t.Errorf("after adopting limits, bucket %d = %+v, want %+v", i, got, want[i])
		}
	}
	// The new rate and headroom apply: 10 requests/s, floor 30.
	if w := reserve(t, b, admit.Cost{Requests: 251}, T0); !near(w, 100*time.Millisecond) {
		t.Errorf("Reserve(251 requests) = wait %v, want 100ms at the new rate", w)
	}
}

func testClassesAreIndependent(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	initClass(t, b, "other", spec)
	mustAdmit(t, b, admit.Cost{Requests: 60}, T0)
	if err := b.Pause(ctx, class, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if w, err := b.Reserve(ctx, "other", admit.Cost{Requests: 60}, T0); w != 0 || err != nil {
		t.Errorf("Reserve(other class) = %v, %v, want admitted: classes are separate pools", w, err)
	}
}

func testStateDoesNotMutate(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	mustAdmit(t, b, admit.Cost{Requests: 60}, T0)
	state(t, b, at(time.Minute))
	if w := reserve(t, b, admit.Cost{Requests: 2}, at(time.Second)); w == 0 {
		t.Errorf("Reserve(2) at T0+1s after State(T0+1m) admitted: State must not refill the bucket")
	}
}

func testConcurrentReserve(t *testing.T, b admit.Backend) {
	initClass(t, b, class, spec)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				w, err := b.Reserve(ctx, class, admit.Cost{Requests: 1, InputTokens: 10}, T0)
				if err != nil {
					t.Errorf("Reserve = %v", err)
					return
				}
				if w == 0 {
					admitted.Add(1)
				}
				if i%4 == 0 {
					c := admit.Cost{InputTokens: 1}
					b.Settle(ctx, class, c, c, T0)
				}
			}
		}()
	}
	wg.Wait()
	if got := admitted.Load(); got != 60 {
		t.Errorf("320 concurrent Reserves at one time admitted %d, want exactly the capacity 60", got)
	}
}
