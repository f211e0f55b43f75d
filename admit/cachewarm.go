package admit

import (
	"sync"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/intake"
)

// Prompt caching (docs/library.md, "Prompt caching").
//
// A prompt-cache read takes no ITPM, except on the classes marked
// cache_reads_count_itpm (the † models): the API counts only the uncached input and
// cache writes. A call that reads a cached prefix and reserves its whole prompt is
// paced as if it were a write, far below what the account allows. So a Limiter
// remembers the prefixes whose answers this process has seen start, and a call whose
// prefix is warm reserves its estimate less the prefix.
//
// A call's prefix is its body's last cache_control breakpoint at least the model's
// min_cache_tokens long (the scan import and the emulator use: intake.CachePrefix);
// a body without "cache_control" is not parsed for it. A prefix is warm from the
// first answer to a call with it that started (a JSON answer's usage, a stream's
// message_start) and showed a cache write or read, until its TTL (5 minutes, or 1
// hour) from the last such call's admission: a read refreshes the TTL, and admission
// comes no later than the API's clock starts. An answer that showed neither (the API
// did not cache the prefix) forgets it. Until its prefix is warm a call reserves its
// whole prompt: calls sent before the first answer starts write the prefix too. A
// call waiting for admission looks again each time the first in line tries the
// buckets, and a prefix turning warm wakes that waiter: calls queued behind the
// first writes do not keep their whole-prompt reservations.
//
// The memory is this process's: limiters in other processes (several gateways on one
// Redis) each learn warmth from their own answers. A wrong guess (the API evicted
// the prefix early) costs one call's reservation, which its settle corrects.

// maxWarmPrefixes bounds the prefixes a Limiter remembers, about 50 bytes each.
const maxWarmPrefixes = 10_000

// warmSweepEvery is how often, at most, a full memory is swept of expired prefixes
// before one that has not expired is dropped.
const warmSweepEvery = time.Second

// warmPrefixes is the prefixes known to be warm, each with the time its cache entry
// expires. The zero value is empty and ready; it is safe for concurrent use.
type warmPrefixes struct {
	mu    sync.Mutex
	until map[cacheprefix.Key]time.Time
	swept time.Time
}

// warm reports whether k is warm at now.
func (w *warmPrefixes) warm(k cacheprefix.Key, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	until, ok := w.until[k]
	if ok && !now.Before(until) {
		delete(w.until, k)
		return false
	}
	return ok
}

// mark makes k warm until until (or later, if it already is).
func (w *warmPrefixes) mark(k cacheprefix.Key, until, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur, ok := w.until[k]
	switch {
	case ok && cur.After(until):
		return
	case ok:
	case w.until == nil:
		w.until = make(map[cacheprefix.Key]time.Time)
	case len(w.until) >= maxWarmPrefixes:
		w.evict(now)
	}
	w.until[k] = until
}

// evict makes room for one prefix: the expired ones go (at most once per
// warmSweepEvery), else any one.
func (w *warmPrefixes) evict(now time.Time) {
	if now.Sub(w.swept) >= warmSweepEvery {
		w.swept = now
		for k, until := range w.until {
			if !now.Before(until) {
				delete(w.until, k)
			}
		}
	}
	for k := range w.until {
		if len(w.until) < maxWarmPrefixes {
			return
		}
		delete(w.until, k)
	}
}

// forget makes k cold.
func (w *warmPrefixes) forget(k cacheprefix.Key) {
	w.mu.Lock()
	delete(w.until, k)
	w.mu.Unlock()
}

// len is how many prefixes are remembered, expired ones included.
func (w *warmPrefixes) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.until)
}

// cachePrefix is body's prefix sent to model: its last breakpoint, if at least
// minTokens long (the class's min_cache_tokens); zero otherwise.
func cachePrefix(model string, minTokens int64, body []byte) cacheprefix.Prefix {
	p := intake.CachePrefix(model, body) // a body without "cache_control" is not parsed
	if p.Key == (cacheprefix.Key{}) || p.Tokens < minTokens || p.Tokens <= 0 {
		return cacheprefix.Prefix{}
	}
	return p
}

// lessRead is the call's input to reserve when a prefix of tokens (EstimateInput's
// count) is read from the cache: the estimate less the prefix's calibrated estimate,
// or the whole estimate on a class that counts cache reads (or for no prefix).
func (c *Call) lessRead(tokens int64) int64 {
	if tokens <= 0 || c.cacheReads {
		return c.base
	}
	return max(c.base-c.l.cfg.Estimator.Input(c.model, tokens), 0)
}

// cached records what an answer to an attempt admitted at start showed of the call's
// prefix: written or read, it is warm for its TTL from start; neither, the API did not
// cache it, and it is forgotten.
func (c *Call) cached(start time.Time, u Usage) {
	if c.prefix.Tokens == 0 {
		return
	}
	if u.CacheCreationInputTokens > 0 || u.CacheReadInputTokens > 0 {
		c.l.warm.mark(c.prefix.Key, start.Add(c.prefix.TTL), c.l.cfg.Now())
		if cl, err := c.l.class(c.class); err == nil {
			cl.wake() // a call with the prefix waiting at the gate takes less now
		}
		return
	}
	c.l.warm.forget(c.prefix.Key)
}
