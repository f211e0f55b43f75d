package batch

import (
	"context"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
)

// Overview is where a run's Message Batches are, for clade status.
type Overview struct {
	// Open are the batches not yet ended, those whose create is unconfirmed
	// included (jobs.BatchIntent); Done those ended, both in the store's order.
	Open, Done []jobs.BatchRecord
	// Unconfirmed counts the batches of Open whose create is not confirmed.
	Unconfirmed int
	// CanceledAt is when clade batch cancel marked the run (zero: it did not).
	CanceledAt time.Time
	// InBatches counts the pending requests in batches in flight, Unsent those
	// in none.
	InBatches, Unsent int64
	// Counts are each ended batch's results by type, by its row.
	Counts map[int64]jobs.BatchCounts
}

// Describe reads the Overview of a run; nil when the run has no batch and was
// not canceled (a realtime run).
func Describe(ctx context.Context, st *jobs.Store, runID int64) (*Overview, error) {
	if err := st.PrepareBatches(ctx); err != nil {
		return nil, err
	}
	bs, err := st.Batches(ctx, runID)
	if err != nil {
		return nil, err
	}
	o := &Overview{}
	if o.CanceledAt, err = st.BatchRunCanceled(ctx, runID); err != nil {
		return nil, err
	}
	if len(bs) == 0 && o.CanceledAt.IsZero() {
		return nil, nil
	}
	if o.InBatches, o.Unsent, err = st.BatchPendingCounts(ctx, runID); err != nil {
		return nil, err
	}
	if o.Counts, err = st.BatchCountsOf(ctx, runID); err != nil {
		return nil, err
	}
	for _, b := range bs {
		switch b.State {
		case jobs.BatchDone:
			o.Done = append(o.Done, b)
		case jobs.BatchIntent:
			o.Unconfirmed++
			o.Open = append(o.Open, b)
		default:
			o.Open = append(o.Open, b)
		}
	}
	return o, nil
}
