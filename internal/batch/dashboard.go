package batch

import (
	"context"
	"fmt"
	"time"

	"github.com/clade-dev/clade/internal/dashboard"
	"github.com/clade-dev/clade/internal/jobs"
)

// dashboardEvery is how often the loop gives the dashboard the run's counts.
const dashboardEvery = 2 * time.Second

// feedDashboard gives the dashboard (Spec.Dashboard) the numbers of the status
// line: the store's counts, the requests in batches in flight and waiting, the
// cost and the results' rate; at most every dashboardEvery.
func (d *dispatcher) feedDashboard(ctx context.Context, inFlight int64) {
	now := d.clock.Now()
	if d.cfg.Dashboard == nil || now.Before(d.nextDashboard) {
		return
	}
	st, err := d.cfg.Store.Status(ctx, d.runID)
	if err != nil || st.Requests == 0 {
		return
	}
	d.nextDashboard = now.Add(dashboardEvery)
	done := st.Requests - st.Pending
	elapsed := now.Sub(d.start)
	p := &dashboard.Progress{Mode: "batch", Done: done, Total: st.Requests, OK: st.Results[jobs.Succeeded],
		Errored:        st.Results[jobs.Errored] + st.Results[jobs.Canceled] + st.Results[jobs.Expired],
		ElapsedSeconds: elapsed.Seconds(), CostUSD: st.CostUSD, BatchCostUSD: st.CostUSD,
		Note: fmt.Sprintf("%d in batches in flight, %d waiting", inFlight, max(st.Pending-inFlight, 0))}
	if n := done - d.doneAtStart; n > 0 && elapsed > 0 {
		p.Note += fmt.Sprintf(", %.0f results/min", float64(n)/elapsed.Minutes())
	}
	d.cfg.Dashboard.Set(dashboard.Sample{Tier: d.cfg.Tier, Progress: p})
}
