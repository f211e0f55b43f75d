package emulator

import (
	"sync"
	"time"
)

// promptCache simulates prompt caching: a cache_control prefix seen before within its
// TTL is a cache read, otherwise a cache write. Each read refreshes the entry's TTL, as
// the API does. Entries live in real time (as the API's cache does).
type promptCache struct {
	mu      sync.Mutex
	entries map[uint64]time.Time // prefix hash -> expiry
	sweeps  int
}

func newPromptCache() *promptCache {
	return &promptCache{entries: make(map[uint64]time.Time)}
}

// cacheUsage is how a request's input splits between cache and fresh tokens.
type cacheUsage struct {
	read      int64 // cache_read_input_tokens
	write5m   int64 // cache creation with a 5-minute TTL
	write1h   int64 // cache creation with a 1-hour TTL
	uncached  int64 // input_tokens: after the last breakpoint
	prefixTok int64 // tokens up to the last breakpoint
}

func ttlDuration(ttl string) time.Duration {
	if ttl == "1h" {
		return time.Hour
	}
	return 5 * time.Minute
}

// lookup splits ic's tokens. The longest breakpoint prefix still cached is read; the
// rest up to the last breakpoint is written. Prefixes shorter than minTokens are not
// cached at all. When commit is true the written prefixes are stored and the read one
// refreshed; count_tokens and rejected requests look without committing.
func (c *promptCache) lookup(ic inputCount, minTokens int64, now time.Time, commit bool) cacheUsage {
	var u cacheUsage
	var eligible []breakpoint
	for _, bp := range ic.breakpoints {
		if bp.tokens >= minTokens {
			eligible = append(eligible, bp)
		}
	}
	if len(eligible) == 0 {
		u.uncached = ic.total
		return u
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	hit := -1
	for i := len(eligible) - 1; i >= 0; i-- {
		if exp, ok := c.entries[eligible[i].hash]; ok && now.Before(exp) {
			hit = i
			break
		}
	}
	last := eligible[len(eligible)-1]
	u.prefixTok = last.tokens
	u.uncached = ic.total - last.tokens
	if hit >= 0 {
		u.read = eligible[hit].tokens
	}
	// Tokens between the hit (or the start) and the last breakpoint are written, each
	// stretch at the TTL of the breakpoint that ends it.
	prev := u.read
	for i := hit + 1; i < len(eligible); i++ {
		stretch := eligible[i].tokens - prev
		if stretch > 0 {
			if eligible[i].ttl == "1h" {
				u.write1h += stretch
			} else {
				u.write5m += stretch
			}
		}
		prev = eligible[i].tokens
	}
	if commit {
		if hit >= 0 {
			c.entries[eligible[hit].hash] = now.Add(ttlDuration(eligible[hit].ttl))
		}
		for i := hit + 1; i < len(eligible); i++ {
			c.entries[eligible[i].hash] = now.Add(ttlDuration(eligible[i].ttl))
		}
		c.sweeps++
		if c.sweeps%4096 == 0 {
			for k, exp := range c.entries {
				if !now.Before(exp) {
					delete(c.entries, k)
				}
			}
		}
	}
	return u
}
