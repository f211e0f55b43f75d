package roundtrip_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/roundtrip"
)

// TestGroupShares: calls that arrive while a round of their key is in flight
// share the next one, with their inputs merged, and each gets its result; a
// call never joins a round that has already started.
func TestGroupShares(t *testing.T) {
	t.Parallel()
	var g roundtrip.Group[string, int]
	sum := func(a, b int) int { return a + b }
	var runs atomic.Int64
	started, release := make(chan struct{}), make(chan struct{})
	var first int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		first, _ = g.Do("k", 1, sum, func(in int) (int, error) {
			runs.Add(1)
			close(started)
			<-release
			return in, nil
		})
	}()
	<-started
	// Ten calls arrive while the first round is in flight: they share one round.
	got := make([]int, 10)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = g.Do("k", 10, sum, func(in int) (int, error) {
				runs.Add(1)
				return in, nil
			})
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them queue behind the first round
	close(release)
	wg.Wait()
	if first != 1 {
		t.Errorf("first round's result = %d, want its own input 1 (nobody joins a started round)", first)
	}
	for i, v := range got {
		if v != 100 {
			t.Errorf("call %d got %d, want 100: the ten merged inputs", i, v)
		}
	}
	if n := runs.Load(); n != 2 {
		t.Errorf("%d round trips, want 2", n)
	}
}

// TestGroupLinger: once a key's rounds are shared (it is busy), a round's opener
// lingers and calls arriving shortly after it share its round; a caller alone,
// calling in sequence, never waits.
func TestGroupLinger(t *testing.T) {
	t.Parallel()
	g := roundtrip.Group[string, int]{Linger: 100 * time.Millisecond}
	sum := func(a, b int) int { return a + b }
	var runs atomic.Int64
	run := func(in int) (int, error) {
		runs.Add(1)
		time.Sleep(2 * time.Millisecond)
		return in, nil
	}
	start := time.Now()
	for range 5 {
		g.Do("k", 1, sum, run)
	}
	if d := time.Since(start); d > 5*2*time.Millisecond+80*time.Millisecond {
		t.Errorf("5 calls in sequence took %v, want about 10ms: a caller alone lingered", d)
	}
	// Four calls at once: those behind the first share the next round, and from
	// then on the key is busy, so staggered calls within the linger share. The
	// first round is held until the others have had time to join the next (a round
	// of 2 ms can end before a loaded machine schedules them, and then nothing is
	// shared).
	var wg sync.WaitGroup
	var calling atomic.Int64
	gate := make(chan struct{})
	held := func(in int) (int, error) {
		<-gate
		return run(in)
	}
	for range 4 {
		wg.Go(func() {
			calling.Add(1)
			g.Do("k", 1, sum, held)
		})
	}
	for calling.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(gate)
	wg.Wait()
	runs.Store(0)
	for range 5 {
		wg.Go(func() { g.Do("k", 1, sum, run) })
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if n := runs.Load(); n > 2 {
		t.Errorf("%d round trips for 5 calls 5 ms apart on a busy key with a 100 ms linger, want at most 2", n)
	}
}

// TestGroupAlwaysLingers: with Always, a call alone lingers, so a call that
// arrives within Linger shares its round; without, a call alone starts at once,
// without waiting Linger.
func TestGroupAlwaysLingers(t *testing.T) {
	t.Parallel()
	const linger = time.Second
	sum := func(a, b int) int { return a + b }
	t.Run("always", func(t *testing.T) {
		t.Parallel()
		g := roundtrip.Group[string, int]{Linger: linger, Always: true}
		var runs atomic.Int64
		run := func(in int) (int, error) { runs.Add(1); return in, nil }
		var wg sync.WaitGroup
		var a, b int
		wg.Go(func() { a, _ = g.Do("k", 1, sum, run) })
		time.Sleep(20 * time.Millisecond)
		wg.Go(func() { b, _ = g.Do("k", 10, sum, run) })
		wg.Wait()
		if runs.Load() != 1 || a != 11 || b != 11 {
			t.Errorf("%d rounds, results %d and %d; want one round of 11 (the call 20 ms later joined the lingering one)", runs.Load(), a, b)
		}
	})
	t.Run("not always", func(t *testing.T) {
		t.Parallel()
		g := roundtrip.Group[string, int]{Linger: linger}
		for _, in := range []int{1, 10} {
			start := time.Now()
			got, _ := g.Do("k", in, sum, func(in int) (int, error) { return in, nil })
			if d := time.Since(start); got != in || d >= linger/2 {
				t.Errorf("a call alone = %d after %v, want %d at once (not after the %v linger)", got, d, in, linger)
			}
		}
	})
}
