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

// TestSharedWarmthFollowsTheWarmingAnswer: through the store, a prefix one
// process warms is warm for another from the warming answer's first byte; one
// whose warming request was then answered with an API error (it wrote no cache) is
// cold again for the other; one whose warming attempt failed before its first
// byte is free to claim at once.
func TestSharedWarmthFollowsTheWarmingAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := jobs.Open(ctx, filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w, err := st.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := newCacheSched(time.Now)
	s.share(st, 1, w.ID(), 0, 0, nil)
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
