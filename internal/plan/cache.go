package plan

import (
	"bytes"
	"math"
	"sort"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/cacheprefix"
)

// CacheEstimate is the workload's input with and without prompt-cache-aware
// ordering (clade run's default and --cache-schedule=off), and what it is
// expected to cost through clade batch, with and without --cache-warm realtime.
//
// A prefix counts when its line has cache_control and it is at least its class's
// min_cache_tokens long (the prefix clade run schedules by: each line's last
// breakpoint). With scheduling, each distinct prefix is written once (at the
// catalog's cache_write_5m or cache_write_1h multiplier, by its TTL) and read by
// the model's other lines with it (cache_read); it assumes a prefix's lines run
// within its TTL, as the import groups them, so no re-warm is counted. Without,
// every line with a prefix is assumed to write it: at full concurrency a prefix's
// lines go before its first write is readable. That is the worst case; a real run
// in the file's order reads some by accident, so the saving is an upper bound.
//
// Time: ITPM counts uncached input and cache writes, and cache reads only on the
// classes whose reads count (catalog cache_reads_count_itpm). When there is no
// cacheable prefix both modes equal the plan's own cost and time.
//
// Batch: the API caches batch requests best effort, in the model of
// batchcache.go (groups of CacheGroup requests processed together). clade batch
// puts a prefix's lines in one batch, so a prefix of k lines is expected to be
// written ColdWrites(k) times and read by the other lines, all at batch price.
// With --cache-warm realtime, a prefix where WarmSaving pays has one line sent
// through realtime first: one write and that line's other input and output at
// full price, its k − 1 other lines reading at batch price. The warm line's
// other input and output are taken as the model's averages per line (uncached
// input over all its lines, expected output). Both assume a prefix's lines are
// processed within its TTL and leave out prefixes split over batches (a prefix
// with more lines than a batch holds). When there is no cacheable prefix both
// equal the plan's batch cost.
type CacheEstimate struct {
	// Prefixes is the number of distinct cacheable prefixes; Requests the lines
	// that have one. When the input was sampled, Prefixes are those seen in the
	// sample (a prefix with fewer lines than the stride may be missed) and
	// Requests is scaled up.
	Prefixes int64 `json:"prefixes"`
	Requests int64 `json:"requests"`
	Sampled  bool  `json:"sampled"`
	// With and Without are the two orders.
	With    CacheMode `json:"with_scheduling"`
	Without CacheMode `json:"without_scheduling"`
	// CacheGroup is the best-effort batch cache group Batch and BatchWarm assume
	// (Options.CacheGroup, default DefaultCacheWarmGroup).
	CacheGroup int `json:"cache_group"`
	// Batch is clade batch as it sends the lines; BatchWarm clade batch
	// --cache-warm realtime.
	Batch     CacheBatch `json:"batch"`
	BatchWarm CacheBatch `json:"batch_cache_warm"`
}

// CacheBatch is what one way of sending the lines through batches is expected
// to pay.
type CacheBatch struct {
	// InputTokens is the uncached input; CacheWriteTokens and CacheReadTokens the
	// prefix tokens expected to be written and read (ColdWrites is fractional:
	// rounded to whole tokens).
	InputTokens      int64 `json:"input_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	CacheReadTokens  int64 `json:"cache_read_tokens"`
	// InputCostUSD is the input's cost: at batch price, but the warm lines'
	// (one a warmed prefix) at full price; CostUSD adds the expected output, the
	// warm lines' at full price too.
	InputCostUSD float64 `json:"input_cost_usd"`
	CostUSD      float64 `json:"cost_usd"`
	// WarmedPrefixes is the prefixes warmed through realtime first, one request
	// each (0 in Batch).
	WarmedPrefixes int64 `json:"warmed_prefixes"`
}

// CacheMode is the input of one order.
type CacheMode struct {
	// InputTokens is the uncached input; CacheWriteTokens and CacheReadTokens the
	// prefix tokens written and read; ITPMTokens what counts toward ITPM.
	InputTokens      int64 `json:"input_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens"`
	CacheReadTokens  int64 `json:"cache_read_tokens"`
	ITPMTokens       int64 `json:"itpm_tokens"`
	// InputCostUSD is the input's realtime cost (uncached, writes and reads at the
	// catalog's multipliers); CostUSD adds the expected output. BatchCostUSD is
	// CostUSD's tokens at batch price; a batch's cache is best effort, so With's
	// one write per prefix is not what it pays (CacheEstimate.Batch is).
	InputCostUSD float64 `json:"input_cost_usd"`
	CostUSD      float64 `json:"cost_usd"`
	BatchCostUSD float64 `json:"batch_cost_usd"`
	// Tiers is the realtime time per tier, in the plan's tier order.
	Tiers []CacheTime `json:"tiers"`
}

// CacheTime is one tier's realtime time in one order.
type CacheTime struct {
	Tier         string  `json:"tier"`
	Minutes      float64 `json:"minutes"`
	BindingClass string  `json:"binding_class"`
	Binding      string  `json:"binding"`
}

// mergePrefixes adds b's prefixes to a (a new map when a is nil) and returns it.
func mergePrefixes(a, b map[cacheprefix.Key]*PrefixLoad) map[cacheprefix.Key]*PrefixLoad {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = make(map[cacheprefix.Key]*PrefixLoad, len(b))
	}
	for k, pl := range b {
		if o := a[k]; o != nil {
			o.Lines += pl.Lines
		} else {
			c := *pl
			a[k] = &c
		}
	}
	return a
}

// cacheEstimate computes the CacheEstimate of the models byID (merged by id, in
// ids' order) on tiers, batches cached in groups of group requests.
func cacheEstimate(cat *catalog.Catalog, byID map[string]*ModelLoad, ids []string, tiers []string, sampled bool, group int) CacheEstimate {
	est := CacheEstimate{Sampled: sampled, CacheGroup: group}
	type classNeed struct{ with, without Need }
	needs := map[string]*classNeed{}
	var classes []string
	for _, id := range ids {
		ml := byID[id]
		m, _ := cat.Model(id)
		cl := cat.Class(m)
		minTokens, readsCount := int64(0), false
		if cl != nil {
			minTokens, readsCount = cl.MinCacheTokens, cl.CacheReadsCountITPM
		}
		var with, without catalog.Usage
		var prefixTokens int64 // all lines' cacheable prefix tokens
		for _, pl := range ml.Prefixes {
			if pl.Tokens < minTokens || pl.Lines <= 0 {
				continue
			}
			est.Prefixes++
			est.Requests += pl.Lines
			all := pl.Lines * pl.Tokens
			prefixTokens += all
			if pl.TTL >= time.Hour {
				with.CacheWrite1hTokens += pl.Tokens
				without.CacheWrite1hTokens += all
			} else {
				with.CacheWrite5mTokens += pl.Tokens
				without.CacheWrite5mTokens += all
			}
			with.CacheReadTokens += all - pl.Tokens
		}
		uncached := max(0, ml.InputTokens-prefixTokens)
		with.InputTokens, without.InputTokens = uncached, uncached
		batchEstimate(cat, m, ml, minTokens, uncached, group, &est.Batch, &est.BatchWarm)
		cn := needs[m.Class]
		if cn == nil {
			cn = &classNeed{}
			needs[m.Class] = cn
			classes = append(classes, m.Class)
		}
		for _, x := range []struct {
			mode *CacheMode
			u    catalog.Usage
			need *Need
		}{{&est.With, with, &cn.with}, {&est.Without, without, &cn.without}} {
			u := x.u
			writes := u.CacheWrite5mTokens + u.CacheWrite1hTokens
			itpm := u.InputTokens + writes
			if readsCount {
				itpm += u.CacheReadTokens
			}
			x.mode.InputTokens += u.InputTokens
			x.mode.CacheWriteTokens += writes
			x.mode.CacheReadTokens += u.CacheReadTokens
			x.mode.ITPMTokens += itpm
			x.mode.InputCostUSD += cat.Cost(m, u, false)
			u.OutputTokens = ml.OutputTokens
			x.mode.CostUSD += cat.Cost(m, u, false)
			x.mode.BatchCostUSD += cat.Cost(m, u, true)
			x.need.Requests += ml.Requests
			x.need.InputTokens += itpm
			x.need.OutputTokens += ml.OutputTokens
		}
	}
	sort.Strings(classes) // as Make: on a tie the first class binds
	est.With.Tiers, est.Without.Tiers = []CacheTime{}, []CacheTime{}
	for _, name := range tiers {
		t, err := cat.Tier(name)
		if err != nil {
			continue // Make has already refused an unknown tier
		}
		for _, x := range []struct {
			mode *CacheMode
			need func(*classNeed) Need
		}{{&est.With, func(c *classNeed) Need { return c.with }}, {&est.Without, func(c *classNeed) Need { return c.without }}} {
			ct := CacheTime{Tier: t.Name}
			for _, cl := range classes {
				minutes, binding, _ := Estimate(t.ClassLimits(cl), x.need(needs[cl]))
				if ct.BindingClass == "" || minutes > ct.Minutes {
					ct.Minutes, ct.BindingClass, ct.Binding = minutes, cl, binding
				}
			}
			x.mode.Tiers = append(x.mode.Tiers, ct)
		}
	}
	return est
}

// batchEstimate adds model m's lines ml (uncached input tokens not in a prefix
// of at least minTokens) to batch and warm, cached in groups of group requests
// (CacheEstimate's Batch and BatchWarm).
func batchEstimate(cat *catalog.Catalog, m *catalog.Model, ml *ModelLoad, minTokens, uncached int64, group int, batch, warm *CacheBatch) {
	var rest catalog.Usage // the warm line's other input and output: the model's averages
	if ml.Requests > 0 {
		rest = catalog.Usage{InputTokens: uncached / ml.Requests, OutputTokens: ml.OutputTokens / ml.Requests}
	}
	restIn := catalog.Usage{InputTokens: rest.InputTokens}
	restOut := catalog.Usage{OutputTokens: rest.OutputTokens}
	type sums struct {
		writes, reads float64 // prefix tokens
		// inputUSD is the prefixes' cost, and the warm lines' other input at full
		// price less batch; moreUSD the warm lines' output at full less batch.
		inputUSD, moreUSD float64
		warmed            int64
	}
	var b, w sums
	keys := make([]cacheprefix.Key, 0, len(ml.Prefixes))
	for k := range ml.Prefixes {
		keys = append(keys, k)
	}
	// The costs are float sums: add them in one order so that plan prints the
	// same figures every time.
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i][:], keys[j][:]) < 0 })
	for _, key := range keys {
		pl := ml.Prefixes[key]
		if pl.Tokens < minTokens || pl.Lines <= 0 {
			continue
		}
		k, T := float64(pl.Lines), float64(pl.Tokens)
		write, read := prefixUsage(pl.Tokens, pl.TTL)
		writeB, readB := cat.Cost(m, write, true), cat.Cost(m, read, true)
		e := ColdWrites(pl.Lines, group)
		coldWrites, coldReads, coldUSD := e*T, (k-e)*T, e*writeB+(k-e)*readB
		b.writes, b.reads, b.inputUSD = b.writes+coldWrites, b.reads+coldReads, b.inputUSD+coldUSD
		if WarmSaving(cat, m, pl.Tokens, pl.TTL, pl.Lines, group, rest) <= 0 {
			w.writes, w.reads, w.inputUSD = w.writes+coldWrites, w.reads+coldReads, w.inputUSD+coldUSD
			continue
		}
		w.writes += T
		w.reads += (k - 1) * T
		w.inputUSD += cat.Cost(m, write, false) + (k-1)*readB + cat.Cost(m, restIn, false) - cat.Cost(m, restIn, true)
		w.moreUSD += cat.Cost(m, restOut, false) - cat.Cost(m, restOut, true)
		w.warmed++
	}
	inUSD := cat.Cost(m, catalog.Usage{InputTokens: uncached}, true)
	allUSD := cat.Cost(m, catalog.Usage{InputTokens: uncached, OutputTokens: ml.OutputTokens}, true)
	for _, x := range []struct {
		cb *CacheBatch
		s  sums
	}{{batch, b}, {warm, w}} {
		x.cb.InputTokens += uncached
		x.cb.CacheWriteTokens += int64(math.Round(x.s.writes))
		x.cb.CacheReadTokens += int64(math.Round(x.s.reads))
		x.cb.InputCostUSD += inUSD + x.s.inputUSD
		x.cb.CostUSD += allUSD + x.s.inputUSD + x.s.moreUSD
		x.cb.WarmedPrefixes += x.s.warmed
	}
}
