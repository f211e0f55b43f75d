package runner

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/upstream"
)

// TestCacheSchedWarmWaitRewarm walks one prefix through the scheduler: the first
// attempt warms it and the next waits until the warming answer starts, then reads;
// idle for close to the TTL, the next attempt warms it again and the one after it
// waits again; a read admitted after the TTL warms it; a warming attempt
// answered with an API error leaves it cold.
func TestCacheSchedWarmWaitRewarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		s := newCacheSched(func() time.Time { return now })
		p := cacheprefix.Prefix{Key: cacheprefix.Key{1}, Tokens: 2000, TTL: 5 * time.Minute}
		ctx := context.Background()

		// waiter starts an acquire and returns its result channel.
		waiter := func() <-chan *ticket {
			ch := make(chan *ticket, 1)
			go func() {
				tk, err := s.acquire(ctx, "m", p)
				if err != nil {
					t.Errorf("acquire: %v", err)
				}
				ch <- tk
			}()
			return ch
		}
		mustWarm := func(what string) *ticket {
			t.Helper()
			tk, err := s.acquire(ctx, "m", p)
			if err != nil || !tk.warmer {
				t.Fatalf("%s: acquire = %+v, %v; want a warming ticket", what, tk, err)
			}
			return tk
		}
		// mustFresh: a read ticket's attempt admitted and sent at once.
		mustFresh := func(tk *ticket) bool {
			return tk.fresh(ctx) == nil && tk.read
		}
		blockedThenRead := func(what string, warm *ticket) {
			t.Helper()
			w := waiter()
			synctest.Wait()
			select {
			case tk := <-w:
				t.Fatalf("%s: a second attempt went (%+v) before the warming answer started", what, tk)
			default:
			}
			warm.started()
			synctest.Wait()
			if tk := <-w; tk == nil || !tk.read || !mustFresh(tk) {
				t.Fatalf("%s: after the warming answer started: %+v, want a read", what, tk)
			}
		}

		first := mustWarm("first")
		blockedThenRead("first", first)
		first.finish(nil)

		now = now.Add(4 * time.Minute) // idle 4 of 5 minutes: still warm
		if tk, _ := s.acquire(ctx, "m", p); !tk.read || !mustFresh(tk) {
			t.Fatalf("after 4 idle minutes: %+v, want a read", tk)
		}
		now = now.Add(4*time.Minute + 31*time.Second) // within 30 s of the TTL since the last read
		again := mustWarm("idle close to its TTL")
		if s.rewarmed.Load() != 1 {
			t.Errorf("rewarmed = %d, want 1", s.rewarmed.Load())
		}
		blockedThenRead("re-warm", again)
		again.finish(nil)

		// Two reads that waited for admission past the TTL: the first admitted
		// warms the prefix; the second, admitted while the first warms it, goes as
		// a read all the same (neither goes back to wait for admission again).
		staleA, _ := s.acquire(ctx, "m", p)
		staleB, _ := s.acquire(ctx, "m", p)
		now = now.Add(5 * time.Minute)
		if err := staleA.fresh(ctx); err != nil || staleA.read || !staleA.warmer {
			t.Fatalf("a read admitted 5 minutes after its ticket: %+v, %v; want it turned into the warming request", staleA, err)
		}
		if err := staleB.fresh(ctx); err != nil || !staleB.read || staleB.warmer {
			t.Fatalf("a second stale read, admitted while the first warms: %+v, %v; want it sent as a read", staleB, err)
		}
		blockedThenRead("after a stale read", staleA)
		staleA.finish(nil)

		now = now.Add(time.Hour) // cold
		failed := mustWarm("cold")
		failed.finish(&upstream.APIError{Status: 400})
		mustWarm("after a failed warm-up").finish(errNotSent)
		if got := s.warmed.Load(); got != 5 {
			t.Errorf("warmed = %d, want 5 (first, re-warm, after the stale read, cold, after the failure)", got)
		}
		if got := s.reads.Load(); got != 5 {
			t.Errorf("reads = %d, want 5 (the two that waited, the one after 4 idle minutes, the second stale one, the one after it warmed)", got)
		}
		if got := s.rewarmed.Load(); got != 3 {
			t.Errorf("rewarmed = %d, want 3 (idle close to its TTL, the stale read, an hour later)", got)
		}
	})
}

// TestCacheStaleReadAdmittedForTheWholePrompt: a read admitted for a cache read
// (no ITPM for its prefix) whose prefix went cold while it waited becomes the
// warming request and is admitted again for the whole prompt, its read admission
// given back, so its write does not overshoot ITPM; a read still warm when
// admitted keeps its admission, and so does one gone cold on a class whose cache
// reads count toward ITPM (it reserved the whole prompt already).
func TestCacheStaleReadAdmittedForTheWholePrompt(t *testing.T) {
	ctx := context.Background()
	lim, err := admit.New(admit.Config{Catalog: catalog.Default(), Tier: "tier-2"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := newCacheSched(func() time.Time { return now })
	const model = "claude-haiku-4-5"
	p := cacheprefix.Prefix{Key: cacheprefix.Key{7}, Tokens: 6000, TTL: 5 * time.Minute}
	whole := lim.Estimator().Input(model, 6100)
	warm, err := s.acquire(ctx, model, p)
	if err != nil || !warm.warmer {
		t.Fatalf("acquire = %+v, %v; want a warming ticket", warm, err)
	}
	warm.finish(nil)

	// admitted reserves for tk and admits its attempt, as run.admit does.
	admitted := func(tk *ticket) (*admit.Call, *admit.Attempt) {
		t.Helper()
		call, ok := lim.PrepareFor(model, 100, 6100)
		if !ok {
			t.Fatalf("PrepareFor(%s) refused", model)
		}
		(&run{}).reserve(call, p, tk)
		att, err := call.Admit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return call, att
	}
	fresh, _ := s.acquire(ctx, model, p)
	call, att := admitted(fresh)
	if got := att.Cost().InputTokens; got >= whole/2 {
		t.Fatalf("a read reserved %d input tokens of %d: want the prompt less its cached prefix", got, whole)
	}
	if got, err := fresh.settle(ctx, call, att); err != nil || got != att || !fresh.read {
		t.Fatalf("settle of a read still warm = %p, %v (read %v); want its own admission, a read", got, err, fresh.read)
	}
	att.Cancel()

	stale, _ := s.acquire(ctx, model, p)
	call, att = admitted(stale)
	read := att.Cost().InputTokens
	now = now.Add(6 * time.Minute) // it waited past the TTL
	got, err := stale.settle(ctx, call, att)
	if err != nil || !stale.warmer {
		t.Fatalf("settle of a read gone cold = %v (warmer %v); want it turned into the warming request", err, stale.warmer)
	}
	if got == att || got.Cost().InputTokens != whole {
		t.Errorf("the warming request sent with %d input tokens reserved (as a read: %d); want the whole prompt's %d", got.Cost().InputTokens, read, whole)
	}
	snap, err := lim.Snapshot(ctx)
	if err != nil || len(snap.Classes) != 1 {
		t.Fatalf("Snapshot = %+v, %v; want one class", snap, err)
	}
	if in := snap.Classes[0].InFlight; in.InputTokens != whole || in.Requests != 1 {
		t.Errorf("the limiter holds %+v in flight, want 1 request and %d input tokens: the read's admission given back, the write's held", in, whole)
	}
	got.Cancel()
	stale.finish(errNotSent)

	// A class whose cache reads count toward ITPM reserved the whole prompt for
	// the read: the attempt keeps its admission.
	const legacy = "claude-3-haiku-20240307"
	warm, _ = s.acquire(ctx, legacy, p)
	warm.finish(nil)
	stale, _ = s.acquire(ctx, legacy, p)
	call, ok := lim.PrepareFor(legacy, 100, 6100)
	if !ok {
		t.Fatalf("PrepareFor(%s) refused", legacy)
	}
	(&run{}).reserve(call, p, stale)
	if att, err = call.Admit(ctx); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Minute)
	if got, err := stale.settle(ctx, call, att); err != nil || got != att || !stale.warmer {
		t.Errorf("settle of a read gone cold on %s = %p, %v (warmer %v); want its own admission (the whole prompt), warming", legacy, got, err, stale.warmer)
	}
	att.Cancel()
	stale.finish(errNotSent)
}

// TestCacheWarmersWaitingBounded: at most maxWarmersWaiting warming attempts wait
// for admission at once; the next cold prefix's attempt waits in acquire until one
// of them is admitted, while a warm prefix's reads and a warming prefix's followers
// are not held by the bound.
func TestCacheWarmersWaitingBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newCacheSched(time.Now)
		ctx := context.Background()
		prefix := func(i int) cacheprefix.Prefix {
			return cacheprefix.Prefix{Key: cacheprefix.Key{byte(i + 1)}, Tokens: 2000, TTL: 5 * time.Minute}
		}
		// Prefix 0 warm: its warming attempt admitted and answering.
		w0, _ := s.acquire(ctx, "m", prefix(0))
		w0.admitted()
		w0.started()
		var warmers []*ticket
		for i := 1; i <= maxWarmersWaiting; i++ {
			tk, err := s.acquire(ctx, "m", prefix(i))
			if err != nil || !tk.warmer {
				t.Fatalf("cold prefix %d: %+v, %v; want a warming ticket", i, tk, err)
			}
			warmers = append(warmers, tk)
		}
		next := make(chan *ticket, 1)
		go func() {
			tk, _ := s.acquire(ctx, "m", prefix(maxWarmersWaiting+1))
			next <- tk
		}()
		synctest.Wait()
		select {
		case tk := <-next:
			t.Fatalf("a warming ticket (%+v) with %d warming attempts already waiting for admission", tk, maxWarmersWaiting)
		default:
		}
		if tk, err := s.acquire(ctx, "m", prefix(0)); err != nil || !tk.read {
			t.Fatalf("a warm prefix's attempt while the bound is full: %+v, %v; want a read at once", tk, err)
		}
		follower := make(chan *ticket, 1)
		go func() {
			tk, _ := s.acquire(ctx, "m", prefix(1))
			follower <- tk
		}()
		warmers[0].admitted()
		synctest.Wait()
		if tk := <-next; tk == nil || !tk.warmer {
			t.Fatalf("once a warming attempt was admitted: %+v, want the next cold prefix's warming ticket", tk)
		}
		warmers[0].started()
		synctest.Wait()
		if tk := <-follower; tk == nil || !tk.read {
			t.Fatalf("prefix 1's follower once its warming answer started: %+v, want a read", tk)
		}
		// A warming attempt never sent gives its place back too.
		warmers[1].finish(errNotSent)
		if tk, err := s.acquire(ctx, "m", prefix(maxWarmersWaiting+2)); err != nil || !tk.warmer {
			t.Fatalf("after a warming attempt was not sent: %+v, %v; want a warming ticket at once", tk, err)
		}
	})
}

// TestProgressShowsCache: with prompt-cache tokens the block gets a cache row and
// the line a cache part, within 80 columns; without, neither changes.
func TestProgressShowsCache(t *testing.T) {
	v := view{elapsed: time.Minute, done: 10, total: 20, ok: 10, cost: 1,
		cacheRead: 10_813_788, cacheWrite: 1_201_532, cacheSaved: 25.6}
	b := v.block(80)
	last := b[len(b)-1]
	if last != "cache   read 10.8M  written 1.2M  saved $25.6000" || len(last) > 80 {
		t.Errorf("cache row = %q, want read, written and saved", last)
	}
	if l := v.line(); !strings.HasSuffix(l, " | cache read 10.8M written 1.2M saved $25.6000") {
		t.Errorf("line = %q, want the cache part at its end", l)
	}
	v.cacheRead, v.cacheWrite = 0, 0
	if b := v.block(80); strings.Contains(strings.Join(b, "\n"), "cache") || strings.Contains(v.line(), "cache") {
		t.Errorf("without cache tokens: block %q, line %q; want no cache part", b, v.line())
	}
}
