package emulator

import (
	"sync"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
)

// promptCache simulates prompt caching as the API describes it (anthropic-api.md 3.1):
//
//   - A request's cacheable prefixes are its cache_control breakpoints at least the
//     class's min_cache_tokens long (cacheprefix.Scan). The longest prefix found
//     readable, at a breakpoint or up to 20 blocks before one, is a cache read; the
//     rest up to the last breakpoint is a cache write, each stretch at the TTL of the
//     breakpoint that ends it.
//   - An entry becomes readable only when the response that writes it begins
//     (readableAt: admission, plus any injected delay, plus the class's time to first
//     token scaled by LatencyScale). A request that arrives before then writes (and
//     pays for) the same prefix again.
//   - A read refreshes the entry's TTL (5 minutes, or 1 hour).
//
// Entries live in real time (Config.Now), as the API's cache does.
type promptCache struct {
	mu      sync.Mutex
	entries map[cacheprefix.Key]cacheEntry
	sweeps  int
}

// cacheEntry is one written prefix.
type cacheEntry struct {
	readableAt time.Time // when the writing response began
	expiry     time.Time
}

func newPromptCache() *promptCache {
	return &promptCache{entries: make(map[cacheprefix.Key]cacheEntry)}
}

// cacheUsage is how a request's input splits between cache and fresh tokens.
type cacheUsage struct {
	read      int64 // cache_read_input_tokens
	write5m   int64 // cache creation with a 5-minute TTL
	write1h   int64 // cache creation with a 1-hour TTL
	uncached  int64 // input_tokens: after the last breakpoint
	prefixTok int64 // tokens up to the last breakpoint
}

// plan is a lookup's decision: the usage, and what committing it touches.
type plan struct {
	cu       cacheUsage
	hit      *cacheprefix.Point // the prefix read; nil for none
	hitTTL   time.Duration
	writes   []cacheprefix.Breakpoint
	eligible bool
}

// decide splits sc's tokens at now. Callers hold c.mu.
func (c *promptCache) decide(sc cacheprefix.Scan, minTokens int64, now time.Time) plan {
	eligible := sc.Eligible(minTokens)
	if len(eligible) == 0 {
		return plan{cu: cacheUsage{uncached: sc.Total}}
	}
	pl := plan{eligible: true}
	hitIndex := -1
	// Breakpoints from the last: the first readable prefix found is the longest.
search:
	for i := len(eligible) - 1; i >= 0; i-- {
		for j, p := range sc.Lookback(eligible[i]) {
			if e, ok := c.entries[p.Key]; ok && !now.Before(e.readableAt) && now.Before(e.expiry) {
				pl.hit = &p
				pl.hitTTL = eligible[i].TTL()
				hitIndex = eligible[i].Index - j
				break search
			}
		}
	}
	last := eligible[len(eligible)-1]
	pl.cu.prefixTok = last.Tokens
	pl.cu.uncached = sc.Total - last.Tokens
	if pl.hit != nil {
		pl.cu.read = pl.hit.Tokens
	}
	prev := pl.cu.read
	for _, bp := range eligible {
		if bp.Index <= hitIndex {
			continue
		}
		if stretch := bp.Tokens - prev; stretch > 0 {
			if bp.TTL() == time.Hour {
				pl.cu.write1h += stretch
			} else {
				pl.cu.write5m += stretch
			}
		}
		prev = bp.Tokens
		pl.writes = append(pl.writes, bp)
	}
	return pl
}

// peek is how sc's tokens would split at now, without changing the cache
// (count_tokens, admission's input cost).
func (c *promptCache) peek(sc cacheprefix.Scan, minTokens int64, now time.Time) cacheUsage {
	if len(sc.Breakpoints) == 0 {
		return cacheUsage{uncached: sc.Total}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.decide(sc, minTokens, now).cu
}

// store splits sc's tokens at now and records them: the prefix read has its TTL
// refreshed; each prefix written becomes readable at readableAt (or earlier, when
// another response writing it began first) and expires its TTL after now.
func (c *promptCache) store(sc cacheprefix.Scan, minTokens int64, now, readableAt time.Time) cacheUsage {
	if len(sc.Breakpoints) == 0 {
		return cacheUsage{uncached: sc.Total}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pl := c.decide(sc, minTokens, now)
	c.apply(pl, now, readableAt)
	return pl.cu
}

// cacheLookup is one request of storeGroup: its scan and its class's minimum.
type cacheLookup struct {
	input cacheprefix.Scan
	min   int64
}

// storeGroup is store for requests processed together (a group of a batch's
// requests, Config.BatchCacheGroup): every lookup sees the cache as it was before
// the group, so a write made by one of them is not read by the others, and each
// write is readable at once after the group. out[i] is reqs[i]'s usage.
func (c *promptCache) storeGroup(reqs []cacheLookup, now time.Time, out []cacheUsage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	plans := make([]plan, len(reqs))
	for i, r := range reqs {
		plans[i] = c.decide(r.input, r.min, now)
	}
	for i := range plans {
		c.apply(plans[i], now, now)
		out[i] = plans[i].cu
	}
}

// apply records decision pl made at now. Callers hold c.mu.
func (c *promptCache) apply(pl plan, now, readableAt time.Time) {
	if !pl.eligible {
		return
	}
	if pl.hit != nil {
		e := c.entries[pl.hit.Key]
		e.expiry = later(e.expiry, now.Add(pl.hitTTL))
		c.entries[pl.hit.Key] = e
	}
	for _, bp := range pl.writes {
		e, ok := c.entries[bp.Key]
		if !ok || !now.Before(e.expiry) {
			e = cacheEntry{readableAt: readableAt}
		} else if readableAt.Before(e.readableAt) {
			e.readableAt = readableAt
		}
		e.expiry = later(e.expiry, readableAt.Add(bp.TTL()))
		c.entries[bp.Key] = e
	}
	c.sweeps++
	if c.sweeps%4096 == 0 {
		for k, e := range c.entries {
			if !now.Before(e.expiry) {
				delete(c.entries, k)
			}
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
