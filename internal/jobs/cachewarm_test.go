package jobs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// TestCacheWarmClaims walks one prefix through the shared warmth on every
// backend: of two workers asking at once exactly one gets the claim; the other
// sees it claimed until it is marked warm, then warm; near the end of its TTL
// (within the margin) it can be claimed again; a released claim is free; the
// claim of a worker whose heartbeat stopped is taken over once it is dead, and a
// claim past its timeout even while its worker lives.
func TestCacheWarmClaims(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := jobstest.Open(t, ctx, b.NewDSN(t))
			reg := func(opts ...jobs.WorkerOption) *jobs.Worker {
				w, err := st.Register(ctx, opts...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = w.Close() })
				return w
			}
			a, c := reg(), reg()
			p := jobs.CachePrefix{RunID: 1, Model: "m", Key: "00112233445566778899aabbccddeeff"}
			const margin, timeout, ttl = 30 * time.Second, time.Minute, 5 * time.Minute
			claim := func(w *jobs.Worker, timeout time.Duration) jobs.CacheWarmth {
				t.Helper()
				got, err := st.ClaimCacheWarm(ctx, p, w.ID(), margin, timeout)
				if err != nil {
					t.Fatal(err)
				}
				return got
			}

			// Two at once: one claim.
			var wg sync.WaitGroup
			got := make([]jobs.CacheWarmth, 2)
			for i, w := range []*jobs.Worker{a, c} {
				wg.Go(func() { got[i] = claim(w, timeout) })
			}
			wg.Wait()
			if got[0].Mine == got[1].Mine || !(got[0].Claimed || got[1].Claimed) {
				t.Fatalf("ClaimCacheWarm by two workers at once = %+v, %+v; want one Mine, one Claimed", got[0], got[1])
			}
			holder, other := a, c
			if got[1].Mine {
				holder, other = c, a
			}
			if s, err := st.CacheWarmState(ctx, p, other.ID()); err != nil || !s.Claimed || s.WarmFor > 0 {
				t.Fatalf("CacheWarmState while claimed = %+v, %v; want Claimed, cold", s, err)
			}
			if err := st.MarkCacheWarm(ctx, p, holder.ID(), ttl); err != nil {
				t.Fatal(err)
			}
			if w := claim(other, timeout); w.Mine || w.Claimed || w.WarmFor < ttl-time.Minute || w.WarmFor > ttl {
				t.Fatalf("ClaimCacheWarm after MarkCacheWarm = %+v; want warm for about %s", w, ttl)
			}
			// Warm for less than the margin: claimable again (a re-warm); a
			// refresh extends it.
			p.Key = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			if w := claim(holder, timeout); !w.Mine {
				t.Fatalf("ClaimCacheWarm of a new prefix = %+v; want Mine", w)
			}
			if err := st.MarkCacheWarm(ctx, p, holder.ID(), margin/2); err != nil {
				t.Fatal(err)
			}
			if w := claim(other, timeout); !w.Mine {
				t.Fatalf("ClaimCacheWarm within the margin of the TTL's end = %+v; want Mine (re-warm)", w)
			}
			if err := st.RefreshCacheWarm(ctx, p, ttl); err != nil {
				t.Fatal(err)
			}
			if s, err := st.CacheWarmState(ctx, p, holder.ID()); err != nil || s.WarmFor < ttl-time.Minute || !s.Claimed {
				t.Fatalf("CacheWarmState after RefreshCacheWarm = %+v, %v; want warm for about %s, claimed by the other", s, err, ttl)
			}
			// A release frees the claim.
			p.Key = "ffeeddccbbaa99887766554433221100"
			if w := claim(other, timeout); !w.Mine {
				t.Fatalf("ClaimCacheWarm of a new prefix = %+v; want Mine", w)
			}
			if err := st.ReleaseCacheWarm(ctx, p, other.ID()); err != nil {
				t.Fatal(err)
			}
			if w := claim(holder, timeout); !w.Mine {
				t.Fatalf("ClaimCacheWarm after ReleaseCacheWarm = %+v; want Mine", w)
			}

			// A claim whose worker died (heartbeat stopped) is taken over once the
			// worker is dead by its dead-after window, never before.
			p.Key = "0123456789abcdef0123456789abcdef"
			dying := reg(jobs.WithHeartbeat(50*time.Millisecond, 300*time.Millisecond))
			if w := claim(dying, time.Hour); !w.Mine {
				t.Fatalf("ClaimCacheWarm = %+v; want Mine", w)
			}
			dying.StopHeartbeat()
			if w := claim(a, timeout); !w.Claimed {
				t.Fatalf("ClaimCacheWarm just after the holder stopped = %+v; want Claimed (it is not dead yet)", w)
			}
			deadline := time.Now().Add(10 * time.Second)
			for w := claim(a, timeout); !w.Mine; w = claim(a, timeout) {
				if time.Now().After(deadline) {
					t.Fatalf("ClaimCacheWarm 10 s after the holder's heartbeat stopped = %+v; want Mine (taken over)", w)
				}
				time.Sleep(50 * time.Millisecond)
			}

			// Marked warm, then cold again (its warming request was answered with
			// an API error): free to claim.
			p.Key = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
			if w := claim(a, timeout); !w.Mine {
				t.Fatalf("ClaimCacheWarm = %+v; want Mine", w)
			}
			if err := st.MarkCacheWarm(ctx, p, a.ID(), ttl); err != nil {
				t.Fatal(err)
			}
			if err := st.ColdCacheWarm(ctx, p); err != nil {
				t.Fatal(err)
			}
			if w := claim(c, timeout); !w.Mine {
				t.Fatalf("ClaimCacheWarm after ColdCacheWarm = %+v; want Mine", w)
			}

			// A claim past its timeout is dead even though its worker lives.
			p.Key = "fedcba9876543210fedcba9876543210"
			if w := claim(a, time.Millisecond); !w.Mine {
				t.Fatalf("ClaimCacheWarm = %+v; want Mine", w)
			}
			time.Sleep(5 * time.Millisecond)
			if w := claim(c, timeout); !w.Mine {
				t.Fatalf("ClaimCacheWarm after the holder's claim timed out = %+v; want Mine", w)
			}
		})
	}
}
