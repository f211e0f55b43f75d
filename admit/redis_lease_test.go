package admit_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/admit/admittest"
)

// leaseBackend is a Redis backend with leases, its class "c" initialised with
// spec, and a counter of the scripts it runs.
func leaseBackend(t *testing.T, prefix string, lease time.Duration, spec admit.Spec) (*admit.Redis, *atomic.Int64) {
	t.Helper()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	var calls atomic.Int64
	client.AddHook(countEval{n: &calls})
	if prefix == "" {
		prefix = testPrefix(t, opts)
	}
	rd := newRedis(t, admit.RedisConfig{Client: client, Prefix: prefix, Clock: admit.ClockCaller, Lease: lease})
	if err := rd.Init(context.Background(), "c", spec, admittest.T0); err != nil {
		t.Fatal(err)
	}
	calls.Store(0)
	return rd, &calls
}

// TestRedisLeaseSavesRoundTrips: with a lease, a run of calls of one class makes
// one round trip per lease, not per call, and once the calls have settled and
// the lease is back the buckets are where Memory's are after the same calls.
func TestRedisLeaseSavesRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	spec := admit.Spec{Limits: admit.Limits{RPM: 60000, ITPM: 60000000, OTPM: 6000000}, Burst: 1}
	rd, calls := leaseBackend(t, "", time.Minute, spec) // a long lease: only ReturnLeases gives it back
	mem := admit.NewMemory()
	t0 := admittest.T0
	if err := mem.Init(ctx, "c", spec, t0); err != nil {
		t.Fatal(err)
	}
	const n = 200
	reserved := admit.Cost{Requests: 1, InputTokens: 500, OutputTokens: 400}
	for _, be := range []admit.Backend{rd, mem} {
		for range n {
			if w, err := be.Reserve(ctx, "c", reserved, t0); w != 0 || err != nil {
				t.Fatalf("Reserve = %v, %v, want admitted at once", w, err)
			}
		}
	}
	// 64 calls per lease (maxLeaseCalls) beside the call that takes it: 200 calls
	// take 4 round trips.
	if got := calls.Load(); got != 4 {
		t.Errorf("%d reserve round trips for %d calls, want 4 (each takes a lease of 64 calls beside its own)", got, n)
	}
	for i := range n {
		actual := admit.Cost{Requests: 1, InputTokens: 450, OutputTokens: int64(i % 17 * 20)}
		for _, be := range []admit.Backend{rd, mem} {
			if err := be.Settle(ctx, "c", reserved, actual, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	rd.ReturnLeases()
	levelsAgree(t, "after the calls and the lease's return (Memory's after the same calls)", rd, mem, t0)
}

// TestRedisLeasesNeverGiveMoreThanTheBuckets: two processes with leases, calling
// as fast as they can on a bucket of 600 requests that does not refill, admit 600
// calls between them, not one more.
func TestRedisLeasesNeverGiveMoreThanTheBuckets(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	prefix := testPrefix(t, opts)
	spec := admit.Spec{Limits: admit.Limits{RPM: 600, ITPM: 6000000, OTPM: 600000}, Burst: 1}
	a, _ := leaseBackend(t, prefix, 10*time.Second, spec)
	b, _ := leaseBackend(t, prefix, 10*time.Second, spec)
	ctx := context.Background()
	t0 := admittest.T0
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for _, be := range []*admit.Redis{a, b} {
		for range 4 {
			wg.Go(func() {
				for refused := 0; refused < 3; {
					w, err := be.Reserve(ctx, "c", admit.Cost{Requests: 1, InputTokens: 10, OutputTokens: 10}, t0)
					switch {
					case err != nil:
						t.Error(err)
						return
					case w == 0:
						admitted.Add(1)
					default:
						refused++
					}
				}
			})
		}
	}
	wg.Wait()
	if got := admitted.Load(); got != 600 {
		t.Errorf("%d calls admitted by two processes with leases from 600 requests, want 600", got)
	}
}

// TestRedisLeasePauseReturnsIt: a 429's pause gives the class's lease back: the
// next call waits out the pause instead of going from the lease.
func TestRedisLeasePauseReturnsIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	spec := admit.Spec{Limits: admit.Limits{RPM: 60000, ITPM: 60000000, OTPM: 6000000}, Burst: 1}
	rd, _ := leaseBackend(t, "", time.Minute, spec)
	t0 := admittest.T0
	c := admit.Cost{Requests: 1, InputTokens: 10, OutputTokens: 10}
	if w, err := rd.Reserve(ctx, "c", c, t0); w != 0 || err != nil {
		t.Fatalf("first Reserve = %v, %v", w, err)
	}
	if err := rd.Pause(ctx, "c", t0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if w, err := rd.Reserve(ctx, "c", c, t0); err != nil || w < 9*time.Second {
		t.Errorf("Reserve during the pause = %v, %v, want a wait of about 10s: the lease was kept", w, err)
	}
	// Pause's return is on its way; ReturnLeases waits for it.
	rd.ReturnLeases()
	st, err := rd.State(ctx, "c", t0)
	if err != nil {
		t.Fatal(err)
	}
	// One call reserved (not settled); the lease of 64 taken beside it is back.
	if lvl, want := st.Requests.Level, 60000.0-1; math.Abs(lvl-want) > 1e-6 {
		t.Errorf("requests level = %v, want %v (capacity less the one call in flight)", lvl, want)
	}
}

// TestRedisNoLeaseAtLowLimits: where the limits allow less than one more call
// per lease, every call reserves in Redis, as without leases.
func TestRedisNoLeaseAtLowLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	spec := admit.Spec{Limits: admit.Limits{RPM: 50, ITPM: 50000, OTPM: 10000}, Burst: 1}
	rd, calls := leaseBackend(t, "", 50*time.Millisecond, spec)
	for i := range 5 {
		if w, err := rd.Reserve(ctx, "c", admit.Cost{Requests: 1, InputTokens: 100, OutputTokens: 100}, admittest.T0); w != 0 || err != nil {
			t.Fatalf("Reserve %d = %v, %v", i, w, err)
		}
	}
	if got := calls.Load(); got != 5 {
		t.Errorf("%d round trips for 5 calls at 50 RPM with a 50 ms lease, want 5 (no lease)", got)
	}
}

// TestRedisReplayInsideSettleAndLease: what an outage kept (a settle, a pause) is
// replayed by the first call that reaches Redis again, whichever it is: a
// Settle (whose round trip the settles waiting behind it share) or, with leases,
// a Reserve holding its class's lease. Neither deadlocks.
func TestRedisReplayInsideSettleAndLease(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"settle", "reserve"} {
		t.Run(first, func(t *testing.T) {
			t.Parallel()
			be, p, _ := viaProxy(t, admit.RedisConfig{Lease: time.Second})
			ctx := context.Background()
			spec := admit.Spec{Limits: admit.Limits{RPM: 60000, ITPM: 60000000, OTPM: 6000000}, Burst: 1}
			if err := be.Init(ctx, "c", spec, time.Now()); err != nil {
				t.Fatal(err)
			}
			c := admit.Cost{Requests: 1, InputTokens: 100, OutputTokens: 300}
			if w, err := be.Reserve(ctx, "c", c, time.Now()); w != 0 || err != nil {
				t.Fatalf("Reserve before the outage = %v, %v", w, err)
			}
			p.down()
			if err := be.Settle(ctx, "c", c, admit.Cost{Requests: 1, InputTokens: 100, OutputTokens: 30}, time.Now()); err != nil {
				t.Fatalf("Settle during the outage = %v, want kept", err)
			}
			if err := be.Pause(ctx, "c", time.Now().Add(50*time.Millisecond)); err != nil {
				t.Fatalf("Pause during the outage = %v, want kept", err)
			}
			p.up()
			time.Sleep(100 * time.Millisecond) // past RetryInterval and the pause
			done := make(chan error, 1)
			go func() {
				switch first {
				case "settle":
					done <- be.Settle(ctx, "c", admit.Cost{}, admit.Cost{}, time.Now())
				default:
					_, err := be.Reserve(ctx, "c", c, time.Now())
					done <- err
				}
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("first %s after the outage = %v", first, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("first %s after the outage still running after 10s: the replay deadlocked", first)
			}
		})
	}
}

// gatedLeaseBackend is leaseBackend whose round trips can be held: the returned
// hold takes a channel whose closing lets the held round trips go.
func gatedLeaseBackend(t *testing.T, lease time.Duration, spec admit.Spec) (rd *admit.Redis, calls, landed *atomic.Int64, hold *atomic.Pointer[chan struct{}]) {
	t.Helper()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	calls, landed, hold = new(atomic.Int64), new(atomic.Int64), new(atomic.Pointer[chan struct{}])
	client.AddHook(countEval{n: calls, landed: landed, hold: hold})
	rd = newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts), Clock: admit.ClockCaller, Lease: lease})
	if err := rd.Init(context.Background(), "c", spec, admittest.T0); err != nil {
		t.Fatal(err)
	}
	calls.Store(0)
	landed.Store(0)
	return rd, calls, landed, hold
}

// holdRedis makes the scripts of gatedLeaseBackend's hold wait (Redis answering
// nothing) until release is called, at the latest at cleanup.
func holdRedis(t *testing.T, hold *atomic.Pointer[chan struct{}]) (release func()) {
	gate := make(chan struct{})
	hold.Store(&gate)
	release = sync.OnceFunc(func() { hold.Store(nil); close(gate) })
	t.Cleanup(release)
	return release
}

// returnsSoon runs f and fails the test with why unless it returns, without an
// error, within 10 s.
func returnsSoon(t *testing.T, why string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(why)
	}
}

// waitCalls waits (up to 10 s) until calls has reached n.
func waitCalls(calls *atomic.Int64, n int64) {
	for deadline := time.Now().Add(10 * time.Second); calls.Load() < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// TestRedisLeaseRenewedAhead: the call that leaves a lease under half full
// renews it in the background, so the calls after it are given from the lease
// while Redis has not answered; a call that finds the lease spent while its
// renewal is on its way waits for that renewal rather than make a round trip of
// its own; and once the lease is back, the buckets hold exactly the calls given.
func TestRedisLeaseRenewedAhead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	spec := admit.Spec{Limits: admit.Limits{RPM: 60000, ITPM: 60000000, OTPM: 6000000}, Burst: 1}
	rd, calls, _, hold := gatedLeaseBackend(t, time.Minute, spec) // a long lease: no expiry, no renewal for age
	c := admit.Cost{Requests: 1, InputTokens: 10, OutputTokens: 10}
	t0 := admittest.T0
	reserve := func() error {
		w, err := rd.Reserve(ctx, "c", c, t0)
		if err == nil && w != 0 {
			err = fmt.Errorf("Reserve = wait %v, want admitted at once", w)
		}
		return err
	}
	if err := reserve(); err != nil { // takes a lease of 64 calls beside itself
		t.Fatal(err)
	}
	release := holdRedis(t, hold)
	// The 64 calls the lease holds go while Redis answers nothing.
	returnsSoon(t, "calls given from the lease waited for Redis", func() error {
		var err error
		for i := 0; i < 64 && err == nil; i++ {
			err = reserve()
		}
		return err
	})
	waitCalls(calls, 2)
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d round trips after 65 calls with Redis held, want 2: the first call's and one renewal's, started when the lease fell under half", n)
	}
	// The lease is spent, its renewal held: the next call waits for it.
	next := make(chan error, 1)
	go func() { next <- reserve() }()
	select {
	case err := <-next:
		t.Fatalf("a call returned (%v) with the lease spent and its renewal held", err)
	case <-time.After(100 * time.Millisecond):
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d round trips, want 2: the call that found the lease spent made one of its own", n)
	}
	release()
	select {
	case err := <-next:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call waiting for the renewal did not go once it landed")
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d round trips, want 2: the call went from the renewed lease", n)
	}
	rd.ReturnLeases()
	st, err := rd.State(ctx, "c", t0)
	if err != nil {
		t.Fatal(err)
	}
	if lvl, want := st.Requests.Level, 60000.0-66; math.Abs(lvl-want) > 1e-6 {
		t.Errorf("requests level after the lease's return = %v, want %v (capacity less the 66 calls in flight)", lvl, want)
	}
}

// TestRedisLeaseRenewedBeforeItExpires: a call that finds its lease with under
// half its time left renews it in the background, so a call after the lease's
// first expiry is still given from it, while Redis answers nothing.
func TestRedisLeaseRenewedBeforeItExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	spec := admit.Spec{Limits: admit.Limits{RPM: 60000, ITPM: 60000000, OTPM: 6000000}, Burst: 1}
	rd, calls, landed, hold := gatedLeaseBackend(t, time.Minute, spec)
	c := admit.Cost{Requests: 1, InputTokens: 10, OutputTokens: 10}
	t0 := admittest.T0
	reserve := func(at time.Duration) error {
		w, err := rd.Reserve(ctx, "c", c, t0.Add(at))
		if err == nil && w != 0 {
			err = fmt.Errorf("Reserve at +%v = wait %v, want admitted at once", at, w)
		}
		return err
	}
	for _, at := range []time.Duration{0, 31 * time.Second} {
		if err := reserve(at); err != nil {
			t.Fatal(err)
		}
	}
	waitCalls(landed, 2) // the lease, and its renewal started at +31s, have their answers
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d round trips by +31s, want 2: the lease and its renewal (under half its time left)", n)
	}
	// Redis answers nothing from here: the call at +70s, after the lease's
	// first minute, goes only if the renewed lease gives it.
	release := holdRedis(t, hold)
	returnsSoon(t, "the call at +70s waited for Redis: the lease was not renewed before it expired",
		func() error { return reserve(70 * time.Second) })
	release()
	rd.ReturnLeases() // the +70s call's own renewal (its lease has under half its time left) lands, then all goes back
}
