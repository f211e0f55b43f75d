package admit

import (
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
)

func keyOf(i int) cacheprefix.Key {
	var k cacheprefix.Key
	k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
	return k
}

// TestWarmPrefixesBounded: the memory never holds more than maxWarmPrefixes, drops
// expired prefixes first when full, and a prefix expires at its time.
func TestWarmPrefixesBounded(t *testing.T) {
	t.Parallel()
	var w warmPrefixes
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	// Half of them expire after a minute, half after an hour.
	for i := range maxWarmPrefixes {
		ttl := time.Minute
		if i%2 == 1 {
			ttl = time.Hour
		}
		w.mark(keyOf(i), t0.Add(ttl), t0)
	}
	if n := w.len(); n != maxWarmPrefixes {
		t.Fatalf("after %d marks: %d remembered, want %d", maxWarmPrefixes, n, maxWarmPrefixes)
	}
	t1 := t0.Add(2 * time.Minute)
	w.mark(keyOf(maxWarmPrefixes), t1.Add(time.Hour), t1)
	if n := w.len(); n != maxWarmPrefixes/2+1 {
		t.Errorf("a mark when full, half expired: %d remembered, want the %d unexpired", n, maxWarmPrefixes/2+1)
	}
	for i := range 4 {
		if got, want := w.warm(keyOf(i), t1), i%2 == 1; got != want {
			t.Errorf("warm(prefix %d) = %v, want %v", i, got, want)
		}
	}
	// Full of unexpired prefixes: each new one drops one, the bound holds.
	for i := range maxWarmPrefixes {
		w.mark(keyOf(maxWarmPrefixes+1+i), t1.Add(time.Hour), t1)
	}
	if n := w.len(); n != maxWarmPrefixes {
		t.Errorf("after %d more marks: %d remembered, want %d", maxWarmPrefixes, n, maxWarmPrefixes)
	}
	if !w.warm(keyOf(2*maxWarmPrefixes), t1) {
		t.Error("the last prefix marked is not warm")
	}
	if w.warm(keyOf(2*maxWarmPrefixes), t1.Add(time.Hour)) {
		t.Error("a prefix is warm at its expiry, want cold")
	}
}

// TestWarmPrefixesMarkKeepsTheLaterExpiry: a mark with an earlier expiry (an attempt
// admitted before another, answered after it) does not shorten the prefix's life;
// forget ends it.
func TestWarmPrefixesMarkKeepsTheLaterExpiry(t *testing.T) {
	t.Parallel()
	var w warmPrefixes
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	k := keyOf(1)
	w.mark(k, t0.Add(5*time.Minute), t0)
	w.mark(k, t0.Add(4*time.Minute), t0)
	if !w.warm(k, t0.Add(4*time.Minute+time.Second)) {
		t.Error("an earlier expiry shortened the prefix's life")
	}
	w.forget(k)
	if w.warm(k, t0) {
		t.Error("warm after forget")
	}
}

// TestWarmPrefixesConcurrent: marks, lookups and forgets from many goroutines
// (run with -race).
func TestWarmPrefixesConcurrent(t *testing.T) {
	t.Parallel()
	var w warmPrefixes
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				k := keyOf(g*1000 + i%50)
				w.mark(k, t0.Add(time.Minute), t0)
				w.warm(k, t0)
				if i%7 == 0 {
					w.forget(k)
				}
			}
		})
	}
	wg.Wait()
	if n := w.len(); n == 0 || n > 8*50 {
		t.Errorf("%d remembered, want 1 to %d", n, 8*50)
	}
}
