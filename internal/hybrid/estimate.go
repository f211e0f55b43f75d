package hybrid

import (
	"context"
	"fmt"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/plan"
)

// estimate is the state of the run as the plan sees it.
type estimate struct {
	requests int64 // without a result
	inBatch  int64 // of which in open batches
	// realtime is the sustained realtime time of the requests without a result,
	// plus the slowest class's latency; binding names the class and limit.
	realtime time.Duration
	binding  string
	// costRealtime and costBatch price the requests without a result (expected
	// output) in each mode.
	costRealtime, costBatch float64
}

// estimate re-reads the run and estimates the realtime time of what is left.
func (h *hybrid) estimate(ctx context.Context) (estimate, error) {
	st := h.cfg.Store
	all, err := st.RemainingNeed(ctx, h.runID, true)
	if err != nil {
		return estimate{}, err
	}
	outside, err := st.RemainingNeed(ctx, h.runID, false)
	if err != nil {
		return estimate{}, err
	}
	var e estimate
	for _, n := range outside {
		e.inBatch -= n.Requests
	}
	byClass := map[string]plan.Need{}
	var tail time.Duration
	for _, n := range all {
		e.requests += n.Requests
		e.inBatch += n.Requests
		out := h.expectedOutput(n)
		class := "default"
		// The routed model (rules on custom_id are not applied to the estimate).
		name := h.cfg.Realtime.Routing.Pick("", n.Model, n.InputTokens/max(n.Requests, 1))
		if m, err := h.cfg.Catalog.Resolve(name); err == nil {
			class = m.Class
			u := catalog.Usage{InputTokens: n.InputTokens, OutputTokens: out}
			e.costRealtime += h.cfg.Catalog.Cost(m, u, false)
			e.costBatch += h.cfg.Catalog.Cost(m, u, true)
			if c := h.cfg.Catalog.Classes[m.Class]; c != nil && n.Requests > 0 {
				lat := c.Latency
				d := time.Duration(lat.TTFTMillis * float64(time.Millisecond))
				if lat.OutputTokensPerSec > 0 {
					d += time.Duration(float64(out) / float64(n.Requests) / lat.OutputTokensPerSec * float64(time.Second))
				}
				tail = max(tail, d)
			}
		}
		need := byClass[class]
		need.Requests += n.Requests
		need.InputTokens += n.InputTokens
		need.OutputTokens += out
		byClass[class] = need
	}
	var worst float64
	for class, need := range byClass {
		m, limit := plan.Sustained(h.tier.ClassLimits(class), need)
		if m > worst || e.binding == "" {
			worst, e.binding = m, fmt.Sprintf("%s %s", class, limit)
		}
	}
	e.realtime = time.Duration(worst*float64(time.Minute)) + tail
	return e, nil
}

// expectedOutput is the output the plan expects of n's requests.
func (h *hybrid) expectedOutput(n jobs.ModelNeed) int64 {
	a := h.cfg.OutputAssumption
	if a.Tokens > 0 {
		return min(a.Tokens*n.Requests, n.MaxTokens)
	}
	return a.Expected(n.MaxTokens)
}

// spillTime is when realtime must take over for e to finish by the deadline.
func (h *hybrid) spillTime(e estimate) time.Time {
	lead := time.Duration(h.cfg.Safety*float64(e.realtime)) + h.cfg.Slack
	// Realtime reaches a batch's requests only once the batch, cancelled at the
	// hand-over, has ended and been read, or takeoverWait after the cancel: a
	// tenth of the time then left, within [1 s, 30 s].
	lead += min(30*time.Second, max(lead/10, time.Second))
	return h.cfg.Deadline.Add(-lead)
}

func (h *hybrid) printPlan(e estimate, window time.Duration, noBatch bool) {
	h.printf("plan: %d requests left, deadline in %s (%s)", e.requests, round(window), h.cfg.Deadline.Local().Format("15:04:05"))
	h.printf("  realtime alone on %s: about %s (bound by %s), ~$%.2f; batch: ~$%.2f", h.cfg.Tier, round(e.realtime), e.binding, e.costRealtime, e.costBatch)
	switch {
	case h.spilled.Load():
		h.printf("  resuming a run that already moved to realtime: realtime finishes it, batches in flight are read or cancelled")
	case noBatch:
		h.printf("  the deadline is under --batch-min-window (%s): realtime only", h.cfg.MinBatchWindow)
	default:
		h.printf("  batches first; %s (re-planned as batches progress)", h.spillPhrase(h.spillTime(e)))
	}
	if h.cfg.Budget > 0 {
		h.printf("  budget: $%.2f", h.cfg.Budget)
	}
}

func (h *hybrid) spillPhrase(at time.Time) string {
	if d := time.Until(at); d > 0 {
		return fmt.Sprintf("realtime takes the rest at %s (in %s) unless batches finish first", at.Local().Format("15:04:05"), round(d))
	}
	return "realtime starts now, from the back, while batches work from the front"
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Hour:
		return d.Round(time.Minute)
	case d > time.Minute:
		return d.Round(time.Second)
	default:
		return d.Round(100 * time.Millisecond)
	}
}
