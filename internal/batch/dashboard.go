package batch

import (
	"context"
	"fmt"

	"github.com/clade-dev/clade/internal/dashboard"
)

// feedDashboard gives the dashboard (Spec.Dashboard) the numbers of the display
// (view: the store's counts, the ETA from the results' rate, the batches by state,
// the requests in batches in flight and waiting, the cost), at most every
// storeEvery unless final (the run's end, so the page ends at its last counts).
func (d *dispatcher) feedDashboard(ctx context.Context, final bool) {
	now := d.clock.Now()
	if d.cfg.Dashboard == nil || (!final && now.Before(d.nextDashboard)) {
		return
	}
	v, err := d.view(ctx, true)
	if err != nil || v.requests == 0 {
		return
	}
	d.nextDashboard = now.Add(storeEvery)
	p := &dashboard.Progress{Mode: "batch", Done: v.done, Total: v.requests, OK: v.ok, Errored: v.bad,
		ElapsedSeconds: v.elapsed.Seconds(), ETASeconds: v.eta.Seconds(), CostUSD: v.cost, BatchCostUSD: v.cost,
		Note: fmt.Sprintf("%d batches running, %d ended; %d requests in batches in flight, %d waiting", v.running, v.ended, v.inFlight, v.waiting)}
	if v.rate > 0 {
		p.Note += fmt.Sprintf("; %.0f results/min", v.rate)
	}
	d.cfg.Dashboard.Set(dashboard.Sample{Tier: d.cfg.Tier, InFlight: int(v.inFlight), Progress: p})
}
