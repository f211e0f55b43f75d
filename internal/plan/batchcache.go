package plan

// The best-effort batch prompt cache: what clade expects a Message Batch to pay
// for a prompt-cache prefix, and when sending one of its lines through realtime
// first pays. `clade batch --cache-warm realtime` decides by WarmSaving
// (internal/batch/warm.go) and `clade plan` estimates by it (cacheEstimate), so
// the two cannot disagree.
//
// The API caches batch requests best effort: it processes a batch's requests
// concurrently, so several lines of a cold prefix write (and pay for) it before
// one of them is readable. The model (the emulator's --batch-cache-group, clade
// batch's and clade plan's --cache-warm-group G, default DefaultCacheWarmGroup):
// a batch's requests are cached in groups of G processed together, a write read
// only from the next group on; a cold prefix of k consecutive lines, its first
// line anywhere in its group, is then expected to be written by
//
//	E(k) = (min(k, 1) + min(k, 2) + … + min(k, G)) / G
//
// of them (ColdWrites: 2.5 for k ≥ 4 when G = 4; 1 when G = 1) and read by the
// other k − E(k). Warming (one line through realtime, answered before the batch
// is created) saves
//
//	E(k) × write(batch) + (k − E(k)) × read(batch)
//	  − [write(full) + (k − 1) × read(batch) + (the line's other input and
//	     expected output at full price − at batch price)]
//
// all priced from the catalog for the line's model and the prefix's TTL. It pays
// when that is positive: on current prices, when E(k) > 2.09 for a long prefix
// and short answers (k ≥ 3 with G = 4; never with G ≤ 3).

import (
	"time"

	"github.com/clade-dev/clade/catalog"
)

// DefaultCacheWarmGroup is the default best-effort batch cache group G: a
// batch's requests are assumed cached 4 at a time, as by the emulator's default
// (emulator.DefaultBatchCacheGroup). clade batch's Config.CacheWarmGroup and
// plan's Options.CacheGroup default to it.
const DefaultCacheWarmGroup = 4

// ColdWrites is E(k): how many of a cold prefix's k consecutive lines are
// expected to write it in a batch cached in groups of group requests (at least
// 1), its first line at any place in its group. It is at most k and at most
// (group + 1) / 2.
func ColdWrites(k int64, group int) float64 {
	group = max(group, 1)
	var sum int64
	for j := int64(1); j <= int64(group); j++ {
		sum += min(k, j)
	}
	return float64(sum) / float64(group)
}

// prefixUsage is one write of a prefix of tokens with ttl (the 1 h write price
// from an hour on, else the 5 m one) and one read of it.
func prefixUsage(tokens int64, ttl time.Duration) (write, read catalog.Usage) {
	write = catalog.Usage{CacheWrite5mTokens: tokens}
	if ttl >= time.Hour {
		write = catalog.Usage{CacheWrite1hTokens: tokens}
	}
	return write, catalog.Usage{CacheReadTokens: tokens}
}

// WarmSaving is what warming a prompt-cache prefix of tokens with ttl, shared by
// lines lines on model m, saves in USD against sending them all in batches
// cached in groups of group requests (the rule in this file's comment). rest is
// the warm line's usage apart from its prefix (its other input and expected
// output), which warming pays at full instead of batch price. 0 or less: it does
// not pay.
func WarmSaving(cat *catalog.Catalog, m *catalog.Model, tokens int64, ttl time.Duration, lines int64, group int, rest catalog.Usage) float64 {
	if lines <= 0 || tokens <= 0 {
		return 0
	}
	write, read := prefixUsage(tokens, ttl)
	w := ColdWrites(lines, group)
	cold := w*cat.Cost(m, write, true) + (float64(lines)-w)*cat.Cost(m, read, true)
	warm := cat.Cost(m, write, false) + float64(lines-1)*cat.Cost(m, read, true) +
		cat.Cost(m, rest, false) - cat.Cost(m, rest, true)
	return cold - warm
}
