package spend

import (
	"fmt"
	"math"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/upstream"
)

// Micros is an amount of USD in micro-dollars (1e-6 USD).
type Micros int64

// NoLimit is the limit of a Budget that only counts: every Hold fits. It is also
// what FromUSD returns for an amount too large to count.
const NoLimit Micros = math.MaxInt64

// FromUSD returns usd in micro-dollars, rounded to the nearest; NoLimit for an
// amount of NoLimit's size or more (about $9.2 trillion), and 0 for NaN.
func FromUSD(usd float64) Micros {
	m := math.Round(usd * 1e6)
	switch {
	case math.IsNaN(m):
		return 0
	case m >= float64(NoLimit):
		return NoLimit
	case m <= -float64(NoLimit):
		return -NoLimit
	}
	return Micros(m)
}

// USD returns m in dollars.
func (m Micros) USD() float64 { return float64(m) / 1e6 }

// String formats m as dollars with all six decimals: "$1.250000".
func (m Micros) String() string {
	if m == NoLimit {
		return "no limit"
	}
	sign := ""
	u := uint64(m)
	if m < 0 {
		sign, u = "-", uint64(-m)
	}
	return fmt.Sprintf("%s$%d.%06d", sign, u/1e6, u%1e6)
}

// Usage is a response's usage as the catalog prices it. Cache writes the API did
// not split by TTL (no cache_creation object) count as 5-minute writes, the
// default TTL and the cheaper of the two.
func Usage(u upstream.Usage) catalog.Usage {
	cu := catalog.Usage{
		InputTokens:        u.InputTokens,
		OutputTokens:       u.OutputTokens,
		CacheWrite5mTokens: u.CacheCreation.Ephemeral5m,
		CacheWrite1hTokens: u.CacheCreation.Ephemeral1h,
		CacheReadTokens:    u.CacheReadInputTokens,
	}
	if cu.CacheWrite5mTokens+cu.CacheWrite1hTokens == 0 && u.CacheCreationInputTokens > 0 {
		cu.CacheWrite5mTokens = u.CacheCreationInputTokens
	}
	return cu
}

// Cost is what usage u on model m costs in USD at cat's prices, at Message
// Batches prices when batch is set: catalog.Catalog.Cost, which does the
// arithmetic. It is a float64 because stored results and reports keep the exact
// price; a Budget takes it through FromUSD.
func Cost(cat *catalog.Catalog, m *catalog.Model, u catalog.Usage, batch bool) float64 {
	return cat.Cost(m, u, batch)
}

// WorstCase is the most a request can cost on model m before it is sent: its
// estimated inputTokens, all uncached, and its whole maxTokens as output, at m's
// price (Message Batches prices when batch is set). Cost is linear in tokens, so
// for a set of requests of one model pass their sums.
func WorstCase(cat *catalog.Catalog, m *catalog.Model, inputTokens, maxTokens int64, batch bool) Micros {
	return FromUSD(cat.Cost(m, catalog.Usage{InputTokens: inputTokens, OutputTokens: maxTokens}, batch))
}
