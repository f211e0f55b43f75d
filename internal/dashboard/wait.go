package dashboard

import (
	"math"
	"sync"
	"time"
)

// WaitHistograms collects waits per team (safe for concurrent use) and gives their
// quantiles per sample interval: Take returns the p50 and p99 of the waits
// observed since the last Take, and starts afresh.
//
// Each team's waits fall in log-spaced buckets, four per doubling from 1 ms
// (waits under 1 ms share the first), so a quantile is off by at most one bucket
// (19 %), capped at the longest wait seen.
type WaitHistograms struct {
	mu    sync.Mutex
	teams map[string]*waitHist
}

const (
	waitBuckets   = 4*20 + 2 // up to 1 ms × 2^20 ≈ 17 minutes, and one beyond
	waitPerOctave = 4
)

type waitHist struct {
	n      int
	max    time.Duration
	counts [waitBuckets]int
}

// Quantiles are one team's waits in one interval, in seconds.
type Quantiles struct {
	N        int
	P50, P99 float64
}

// Observe records one wait of team.
func (h *WaitHistograms) Observe(team string, d time.Duration) {
	b := waitBucket(d)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.teams == nil {
		h.teams = map[string]*waitHist{}
	}
	w := h.teams[team]
	if w == nil {
		w = &waitHist{}
		h.teams[team] = w
	}
	w.n++
	w.counts[b]++
	w.max = max(w.max, d)
}

// Take returns each team's quantiles since the last Take (teams with no wait are
// absent) and empties the histograms.
func (h *WaitHistograms) Take() map[string]Quantiles {
	h.mu.Lock()
	teams := h.teams
	h.teams = nil
	h.mu.Unlock()
	out := make(map[string]Quantiles, len(teams))
	for name, w := range teams {
		out[name] = Quantiles{N: w.n, P50: w.quantile(0.5), P99: w.quantile(0.99)}
	}
	return out
}

// waitBucket is the bucket of d: 0 below 1 ms, then i such that d ≤ 1 ms × 2^(i/4).
func waitBucket(d time.Duration) int {
	if d <= time.Millisecond {
		return 0
	}
	i := int(math.Ceil(math.Log2(float64(d)/float64(time.Millisecond)) * waitPerOctave))
	return min(max(i, 1), waitBuckets-1)
}

// bucketUpper is the longest wait of bucket i.
func bucketUpper(i int) time.Duration {
	return time.Duration(float64(time.Millisecond) * math.Exp2(float64(i)/waitPerOctave))
}

// quantile is the upper bound of the bucket holding the q-th wait, at most the
// longest wait seen.
func (w *waitHist) quantile(q float64) float64 {
	rank := int(math.Ceil(q * float64(w.n)))
	seen := 0
	for i, c := range w.counts {
		seen += c
		if seen >= rank {
			return min(bucketUpper(i), w.max).Seconds()
		}
	}
	return w.max.Seconds()
}
