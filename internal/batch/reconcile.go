package batch

import (
	"context"
	"fmt"
	"slices"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/upstream"
)

// listPage is how many batches one list call returns while reconciling.
const listPage = 100

// reconcileAll settles every intent of the run left by an earlier process, then, if
// the run was canceled, cancels its open batches and settles it (startCanceled).
func (d *dispatcher) reconcileAll(ctx context.Context) error {
	intents, err := d.cfg.Store.Batches(ctx, d.runID, jobs.BatchIntent)
	if err != nil {
		return err
	}
	for _, rec := range intents {
		if err := d.reconcile(ctx, rec); err != nil {
			return err
		}
	}
	return d.startCanceled(ctx)
}

// reconcile settles one intent whose create call may or may not have reached the
// API: it adopts the batch the call created, or drops the intent when none matches.
//
// Candidates are the batches created since the intent was recorded, less
// Config.ReconcileWindow, that no row of the store names and whose request counts
// add up to the intent's. They are tried oldest first: an ended one is adopted only
// if the custom_ids of its results have the intent's fingerprint; one still running
// cannot be checked and is adopted (its results are matched by custom_id).
func (d *dispatcher) reconcile(ctx context.Context, rec jobs.BatchRecord) error {
	since := rec.AttemptedAt.Add(-d.cfg.ReconcileWindow)
	var cands []upstream.Batch
	after := ""
	for {
		if err := d.pace(ctx); err != nil {
			return err
		}
		page, err := d.cfg.Client.ListBatches(ctx, after, listPage)
		if err != nil {
			return fmt.Errorf("reconcile batch intent %d: list batches: %w", rec.Row, err)
		}
		older := false
		for _, b := range page.Data {
			if b.CreatedAt.Before(since) {
				older = true
				break
			}
			if total(b.RequestCounts) != rec.Requests {
				continue
			}
			known, err := d.cfg.Store.BatchIDKnown(ctx, b.ID)
			if err != nil {
				return err
			}
			if !known {
				cands = append(cands, b)
			}
		}
		if older || !page.HasMore || page.LastID == "" {
			break
		}
		after = page.LastID
	}
	slices.Reverse(cands) // oldest first
	for _, b := range cands {
		if b.ProcessingStatus == upstream.BatchEnded {
			fp, err := d.resultsFingerprint(ctx, b.ID)
			if err != nil {
				return fmt.Errorf("reconcile batch intent %d: %w", rec.Row, err)
			}
			if fp != rec.Fingerprint {
				continue
			}
		}
		if err := d.cfg.Store.RecordBatchCreated(ctx, rec.Row, b.ID, b.CreatedAt); err != nil {
			return err
		}
		d.batches.Add(1)
		d.log.Info("batch intent adopted", "batch_id", b.ID, "requests", rec.Requests)
		d.progress("batch %s adopted: created by an interrupted call", b.ID)
		return nil
	}
	d.log.Info("batch intent dropped: no such batch was created", "requests", rec.Requests)
	return d.cfg.Store.DropBatchIntent(ctx, rec.Row)
}

func total(c upstream.RequestCounts) int64 {
	return c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
}

// resultsFingerprint is the fingerprint of the custom_ids of a batch's results.
func (d *dispatcher) resultsFingerprint(ctx context.Context, id string) (string, error) {
	if err := d.pace(ctx); err != nil {
		return "", err
	}
	rr, err := d.cfg.Client.Results(ctx, id)
	if err != nil {
		return "", fmt.Errorf("results of batch %s: %w", id, err)
	}
	defer rr.Close()
	var cids []string
	for rr.Next() {
		cids = append(cids, rr.Result().CustomID)
	}
	if err := rr.Err(); err != nil {
		return "", fmt.Errorf("results of batch %s: %w", id, err)
	}
	return fingerprint(cids), nil
}
