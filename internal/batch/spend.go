package batch

import (
	"context"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
)

// othersRefresh is how long a count of other clients' queued requests is reused.
const othersRefresh = time.Minute

// stop ends batch creation for this run (the budget); open batches are still read.
func (d *dispatcher) stop(why string) {
	if d.stopped == "" {
		d.stopped = why
		d.progress("stopped creating batches: %s", why)
	}
}

// worstCost is the most req can cost at batch prices (spend.WorstCase). A model
// the catalog does not know counts as free.
func (d *dispatcher) worstCost(req *jobs.Request) spend.Micros {
	if d.cfg.Budget <= 0 {
		return 0
	}
	m, err := d.cfg.Catalog.Resolve(req.Model)
	if err != nil {
		return 0
	}
	return spend.WorstCase(d.cfg.Catalog, m, req.EstInputTokens, req.MaxTokens, true)
}

// budget is the run's budget as the store has it now, for the batches fill
// creates: the run's cost so far spent, the worst case of the requests in open
// batches without a result held. With no budget it only counts.
func (d *dispatcher) budget(ctx context.Context) (*spend.Budget, error) {
	if d.cfg.Budget <= 0 {
		return spend.NewBudget(spend.NoLimit), nil
	}
	s, err := d.cfg.Store.Status(ctx, d.runID)
	if err != nil {
		return nil, err
	}
	held, err := HeldWorstCase(ctx, d.cfg.Store, d.cfg.Catalog, d.runID)
	if err != nil {
		return nil, err
	}
	b := spend.NewBudget(spend.FromUSD(d.cfg.Budget))
	b.Spend(spend.FromUSD(s.CostUSD))
	b.Force(held)
	return b, nil
}

// HeldWorstCase is the most the run's requests in open batches that have no result
// yet can still cost: their estimated input and whole max_tokens at batch prices
// (spend.WorstCase). Budgets hold it back until the results are read (the hybrid
// mode too).
func HeldWorstCase(ctx context.Context, st *jobs.Store, cat *catalog.Catalog, runID int64) (spend.Micros, error) {
	all, err := st.RemainingNeed(ctx, runID, true)
	if err != nil {
		return 0, err
	}
	outside, err := st.RemainingNeed(ctx, runID, false)
	if err != nil {
		return 0, err
	}
	out := map[string]jobs.ModelNeed{}
	for _, n := range outside {
		out[n.Model] = n
	}
	var held spend.Micros
	for _, n := range all {
		o := out[n.Model]
		m, err := cat.Resolve(n.Model)
		if err != nil {
			continue
		}
		held += spend.WorstCase(cat, m, n.InputTokens-o.InputTokens, n.MaxTokens-o.MaxTokens, true)
	}
	return held, nil
}

// FreshWorstCase is the most the run's requests that have never been in a batch
// (and have no result) can cost in batches: their estimated input and whole
// max_tokens at batch prices (spend.WorstCase).
func FreshWorstCase(ctx context.Context, st *jobs.Store, cat *catalog.Catalog, runID int64) (spend.Micros, error) {
	need, err := st.FreshNeed(ctx, runID)
	if err != nil {
		return 0, err
	}
	var w spend.Micros
	for _, n := range need {
		if m, err := cat.Resolve(n.Model); err == nil {
			w += spend.WorstCase(cat, m, n.InputTokens, n.MaxTokens, true)
		}
	}
	return w, nil
}

// othersInQueue counts the requests other batches of the organisation (other runs,
// other clients) have in processing: the tier's queue limit is shared. It lists
// the account's batches, newest first, while they can still be in progress (a
// batch expires 24 h after creation), at most 10 pages, and reuses the count for
// a minute. This run's batches are counted by OpenBatchRequests instead. An error
// keeps the last count: a create refused for the queue is handled by its 429.
func (d *dispatcher) othersInQueue(ctx context.Context) int64 {
	if d.cfg.OwnQueueOnly {
		return 0
	}
	now := d.clock.Now()
	if !d.othersAt.IsZero() && now.Sub(d.othersAt) < othersRefresh {
		return d.others
	}
	ours := map[string]bool{}
	if bs, err := d.cfg.Store.Batches(ctx, d.runID, jobs.BatchCreated); err == nil {
		for _, b := range bs {
			ours[b.BatchID] = true
		}
	}
	var n int64
	var newest time.Time
	after := ""
	for page := 0; page < 10; page++ {
		if err := d.pace(ctx); err != nil {
			return d.others
		}
		got, err := d.cfg.Client.ListBatches(ctx, after, 100)
		if err != nil {
			d.log.Debug("list batches for the queue count", "err", err)
			return d.others
		}
		old := false
		for _, b := range got.Data {
			if newest.IsZero() {
				newest = b.CreatedAt
			}
			if b.CreatedAt.Before(newest.Add(-24 * time.Hour)) {
				old = true
				break
			}
			if b.ProcessingStatus != upstream.BatchInProgress || b.RequestCounts.Processing == 0 {
				continue
			}
			if !ours[b.ID] {
				n += b.RequestCounts.Processing
			}
		}
		if old || !got.HasMore || got.LastID == "" {
			break
		}
		after = got.LastID
	}
	if n != d.others {
		d.log.Info("other batches share the processing queue", "requests", n)
	}
	d.others, d.othersAt = n, now
	return n
}
