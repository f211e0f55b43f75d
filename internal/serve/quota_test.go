package serve_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/internal/serve"
)

// flood keeps n calls of prefix in flight through c until ctx ends (each client
// sends its next call as soon as its last one is answered), and returns the function
// that waits for them. Each call's text is prefix, a space and a number counted from 0
// in the order the calls are sent; calls that fail before ctx ends are test errors.
func flood(t *testing.T, ctx context.Context, c anthropic.Client, prefix string, n int, sent *atomic.Int64, opts ...option.RequestOption) func() {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := sent.Add(1) - 1
				_, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 16, fmt.Sprintf("%s %d", prefix, i)), opts...)
				if err != nil && ctx.Err() == nil {
					t.Errorf("%s call %d: %v", prefix, i, err)
					return
				}
			}
		}()
	}
	return wg.Wait
}

// waitSent polls rec until it has sent n Messages calls upstream.
func waitSent(t *testing.T, rec *recorder, n int, what string) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := rec.sentSoFar()
		if len(s) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %d calls sent upstream, want %d", what, len(s), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// countPrefix counts the texts that start with prefix and a space.
func countPrefix(texts []string, prefix string) int {
	n := 0
	for _, s := range texts {
		if strings.HasPrefix(s, prefix+" ") {
			n++
		}
	}
	return n
}

// TestQuotaCapWhileOthersWaitAndBorrow: team a, capped at 30 % (and of weight 2, so
// that uncapped it would get two thirds), floods alone and is admitted at the full
// limit, well above its cap (work-conserving borrowing); then team b floods too, and
// while both wait a is admitted at most 30 % of the limit, measured in requests
// admitted upstream over the time measured, plus its cap's share of the bucket.
func TestQuotaCapWhileOthersWaitAndBorrow(t *testing.T) {
	t.Parallel()
	const rpm, share = 600, 0.3 // 10 calls a second, a bucket of 10 (limiterBurst)
	gw := startGateway(t, setup{cat: tinyTier(t, rpm), tier: "tiny", burst: limiterBurst, emBurst: emulatorBurst,
		keys: "teams:\n  a: {cap: 0.3, weight: 2}\nkeys:\n  ck-team-a-0001: a\n  ck-team-b-0001: b\n"})
	ca, cb := v2(gw.URL, "ck-team-a-0001"), v2(gw.URL, "ck-team-b-0001")
	perSec := float64(rpm) / 60
	bucket := perSec * limiterBurst * 60

	// a alone: 40 calls at once. Capped with no borrowing they would take
	// (40 − 3) / 3 s ≈ 12 s; borrowing what nobody else wants, (40 − 10) / 10 = 3 s.
	const n = 40
	start := time.Now()
	if failed, err := burst(context.Background(), ca, n); failed > 0 {
		t.Fatalf("%d of team a's calls failed alone: %v", failed, err)
	}
	alone := time.Since(start)
	if sa := teamShare(gw.G, "a"); sa.Borrowed < n/4 || sa.CapRPM != share*rpm {
		t.Fatalf("team a alone: TeamShares = %+v, want at least a quarter of its %d calls borrowed at a cap of %v RPM: the cap was not exercised", sa, n, share*rpm)
	}
	capped := share * (perSec*alone.Seconds() + bucket)
	if float64(n) < 1.5*capped {
		t.Errorf("team a alone had %d calls admitted in %v, want well over its cap's %.1f (≥ 1.5×): nobody else waited, so it should borrow",
			n, alone.Round(time.Millisecond), capped)
	}

	// Both flood: 15 of a's calls and 30 of b's kept in flight. b is admitted at
	// 70 % of the limit: with 15, on a loaded machine its client could be slower
	// to send the next than the gateway to admit it, and b's queue run dry before
	// the window's end (then a may rightly borrow).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sentA, sentB atomic.Int64
	waitA := flood(t, ctx, ca, "a", 15, &sentA)
	waitB := flood(t, ctx, cb, "b", 30, &sentB)
	waitFor(t, func() bool {
		q := gw.G.Status(context.Background()).Queued
		return q["a"] >= 5 && q["b"] >= 5
	}, "both teams queued")
	from := len(gw.rec.sentSoFar())
	t0 := time.Now()
	const window = 60
	got := waitSent(t, gw.rec, from+window, "the measured window")[from : from+window]
	elapsed := time.Since(t0)
	q := gw.G.Status(context.Background()).Queued
	cancel()
	waitA()
	waitB()
	if q["a"] == 0 || q["b"] == 0 {
		t.Fatalf("queued at the end of the window = %v, want both teams still waiting: the cap was not exercised", q)
	}
	na, nb := countPrefix(got, "a"), countPrefix(got, "b")
	// The cap's bound over the window: its rate for the time measured, its bucket, and
	// the call that was at the limiter when the window opened.
	bound := share*(perSec*elapsed.Seconds()+bucket) + 1
	t.Logf("window: a %d, b %d in %v (bound %.1f); alone %v", na, nb, elapsed, bound, alone)
	if float64(na) > bound {
		t.Errorf("while team b waited, team a had %d of %d calls admitted in %v, want at most %.1f (30 %% of the limit); b had %d",
			na, window, elapsed.Round(time.Millisecond), bound, nb)
	}
	if na < window/10 || na+nb != window {
		t.Errorf("team a had %d and team b %d of %d calls, want a served at about its cap, not starved", na, nb, window)
	}
}

// teamShare returns team's line of g.TeamShares() in claude-haiku-4-5's class.
func teamShare(g *serve.Gateway, team string) serve.TeamShare {
	for _, s := range g.TeamShares() {
		if s.Team == team {
			return s
		}
	}
	return serve.TeamShare{}
}

// TestQuotaConfigErrors: a bad cap, priority or aging is an error naming the file,
// the line and the field, never a key.
func TestQuotaConfigErrors(t *testing.T) {
	t.Parallel()
	const key = "ck-secret-key-1"
	for _, tc := range []struct {
		name, in, want string
	}{
		{name: "cap above 1", in: "teams:\n  a:\n    cap: 1.5\nkeys:\n  " + key + ": a\n", want: "line 3: teams.a.cap 1.5: want a share"},
		{name: "cap zero", in: "teams:\n  a: {cap: 0}\nkeys:\n  " + key + ": a\n", want: "line 2: teams.a.cap 0: want a share"},
		{name: "cap not a number", in: "teams:\n  a: {cap: lots}\nkeys:\n  " + key + ": a\n", want: `line 2: cap "lots": want a share`},
		{name: "priority", in: "keys:\n  " + key + ": {team: a, priority: urgent}\n", want: `line 2: priority "urgent": want low, normal, high or 0 to 9`},
		{name: "priority out of range", in: "keys:\n  " + key + ": {team: a, priority: 10}\n", want: `line 2: priority "10"`},
		{name: "aging", in: "priority_aging: 0s\nkeys:\n  " + key + ": a\n", want: `line 1: priority_aging "0s": want a duration from 1s to 1h`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "keys.yaml")
			if err := os.WriteFile(path, []byte(tc.in), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := serve.LoadKeys(path)
			if err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), path+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadKeys(%q) = %v, want an error naming %s and saying %q, without the key", tc.in, err, path, tc.want)
			}
		})
	}
}
