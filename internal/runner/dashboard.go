package runner

import "github.com/clade-dev/clade/internal/dashboard"

// sample is the dashboard's sample of the view the display draws: the same
// numbers (rates, ETA, cost), computed once by view.
func (v view) sample(tier string, inFlight int64) dashboard.Sample {
	s := dashboard.Sample{Tier: tier, InFlight: int(inFlight), Progress: &dashboard.Progress{
		Mode: "realtime", Done: v.done, Total: v.total, OK: v.ok, Errored: v.bad,
		ElapsedSeconds: v.elapsed.Seconds(), ETASeconds: v.eta.Seconds(),
		CostUSD: v.cost, BatchCostUSD: v.batchCost, RateLimited: v.rateLimited, Overloaded: v.over,
	}}
	for _, c := range v.classes {
		s.Classes = append(s.Classes, dashboard.Class{Name: c.name, Warming: v.warming, Paused: c.paused > 0,
			Requests:     dashboard.Rate{PerMin: c.rate[0], Limit: c.limit[0]},
			InputTokens:  dashboard.Rate{PerMin: c.rate[1], Limit: c.limit[1]},
			OutputTokens: dashboard.Rate{PerMin: c.rate[2], Limit: c.limit[2]}})
	}
	return s
}
