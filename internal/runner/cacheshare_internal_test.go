package runner

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/upstream"
)

// workerStore opens a SQLite store for the test with n workers registered in it,
// and returns it with their IDs; both are closed when the test ends.
func workerStore(t *testing.T, n int) (*jobs.Store, []string) {
	t.Helper()
	ctx := context.Background()
	st, err := jobs.Open(ctx, filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ids := make([]string, n)
	for i := range ids {
		w, err := st.Register(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		ids[i] = w.ID()
	}
	return st, ids
}

// TestSharedWarmthFollowsTheWarmingAnswer: through the store, a prefix one
// process warms is warm for another from the warming answer's first byte; one
// whose warming request was then answered with an API error (it wrote no cache) is
// cold again for the other; one whose warming attempt failed before its first
// byte is free to claim at once.
func TestSharedWarmthFollowsTheWarmingAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, workers := workerStore(t, 1)
	s := newCacheSched(time.Now)
	s.share(st, 1, workers[0], 0, 0, nil)
	const other = "another process"
	for i, tc := range []struct {
		name     string
		started  bool  // the warming answer's first byte came
		err      error // how the attempt ended
		wantWarm bool  // for the other process afterwards
	}{
		{name: "answered", started: true, err: nil, wantWarm: true},
		{name: "API error after its first byte", started: true, err: &upstream.APIError{Status: 529}, wantWarm: false},
		{name: "failed before its first byte", started: false, err: &upstream.APIError{Status: 500}, wantWarm: false},
	} {
		p := cacheprefix.Prefix{Key: cacheprefix.Key{byte(i + 1)}, Tokens: 2000, TTL: 5 * time.Minute}
		key := jobs.CachePrefix{RunID: 1, Model: "m", Key: p.Key.String()}
		tk, err := s.acquire(ctx, "m", p)
		if err != nil || !tk.warmer {
			t.Fatalf("%s: acquire = %+v, %v; want a warming ticket", tc.name, tk, err)
		}
		if c, err := st.CacheWarmState(ctx, key, other); err != nil || !c.Claimed {
			t.Fatalf("%s: CacheWarmState while warming = %+v, %v; want claimed", tc.name, c, err)
		}
		if tc.started {
			tk.started()
			tk.mark.wait() // written off the hook's goroutine
			if c, err := st.CacheWarmState(ctx, key, other); err != nil || c.WarmFor < 4*time.Minute {
				t.Fatalf("%s: CacheWarmState after the first byte = %+v, %v; want warm", tc.name, c, err)
			}
		}
		tk.finish(tc.err)
		c, err := st.CacheWarmState(ctx, key, other)
		if err != nil || (c.WarmFor > time.Minute) != tc.wantWarm || c.Claimed {
			t.Errorf("%s: CacheWarmState after the attempt = %+v, %v; want warm %v, unclaimed", tc.name, c, err, tc.wantWarm)
		}
	}
}

// TestSharedStaleReadClaimsBeforeItWarms: a read admitted after its prefix went
// cold in this process's view asks the store before it warms the prefix, without
// waiting: warm there (another process re-warmed it), it goes as a read; cold
// there, it takes the claim and warms it (the others see it claimed); claimed by
// another live process, it goes as it is and does not warm it too.
func TestSharedStaleReadClaimsBeforeItWarms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, workers := workerStore(t, 2)
	me, other := workers[0], workers[1]
	now := time.Now()
	s := newCacheSched(func() time.Time { return now })
	s.share(st, 1, me, 0, 0, nil)
	p := cacheprefix.Prefix{Key: cacheprefix.Key{9}, Tokens: 2000, TTL: 5 * time.Minute}
	key := jobs.CachePrefix{RunID: 1, Model: "m", Key: p.Key.String()}

	// stale returns a read ticket on p whose prefix this process last saw warm
	// 6 minutes before it was admitted.
	stale := func(what string) *ticket {
		t.Helper()
		if _, err := st.ClaimCacheWarm(ctx, key, me, time.Minute, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := st.MarkCacheWarm(ctx, key, me, p.TTL); err != nil { // and its claim dropped
			t.Fatal(err)
		}
		s.mu.Lock()
		s.prefixes[prefixID{key: p.Key, model: "m"}] = &prefixState{warm: true, expires: now.Add(p.TTL)}
		s.mu.Unlock()
		tk, err := s.acquire(ctx, "m", p)
		if err != nil || !tk.read {
			t.Fatalf("%s: acquire = %+v, %v; want a read", what, tk, err)
		}
		now = now.Add(6 * time.Minute)
		return tk
	}

	tk := stale("warm in the store")
	if err := tk.fresh(ctx); err != nil || !tk.read || tk.warmer {
		t.Fatalf("warm in the store: fresh = %v, ticket %+v; want a read", err, tk)
	}

	tk = stale("cold in the store")
	if err := st.ColdCacheWarm(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := tk.fresh(ctx); err != nil || !tk.warmer {
		t.Fatalf("cold in the store: fresh = %v, ticket %+v; want the warming request", err, tk)
	}
	if c, err := st.CacheWarmState(ctx, key, other); err != nil || !c.Claimed {
		t.Fatalf("cold in the store: CacheWarmState for another process = %+v, %v; want claimed by this one", c, err)
	}
	tk.finish(errNotSent)

	tk = stale("claimed by another process")
	if err := st.ColdCacheWarm(ctx, key); err != nil {
		t.Fatal(err)
	}
	if w, err := st.ClaimCacheWarm(ctx, key, other, time.Minute, time.Minute); err != nil || !w.Mine {
		t.Fatalf("ClaimCacheWarm for the other process = %+v, %v", w, err)
	}
	if err := tk.fresh(ctx); err != nil || !tk.read || tk.warmer {
		t.Fatalf("claimed by another process: fresh = %v, ticket %+v; want it sent as a read, not warming", err, tk)
	}
	if got := s.warmed.Load(); got != 1 {
		t.Errorf("warmed = %d, want 1 (cold in the store)", got)
	}
}
