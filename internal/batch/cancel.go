package batch

// Canceling a run: `clade batch cancel` (Cancel) and what the dispatcher does with a
// canceled run.
//
// Cancel records on every batch-mode run of the store that it was canceled
// (jobs.Store.CancelBatchRun), then asks the API to cancel each batch in flight. The
// mark comes first, so a dispatcher still running never sends the canceled requests
// again: the store gives a canceled run no pending requests (jobs.Store.BatchPending),
// ingest makes every line of a canceled run final (canceled, expired and retryably
// errored lines included), and once the run has no open batch every request without
// a result gets a final canceled line (settleCanceled). A later `clade batch` on the
// store does the same at start, after canceling at the API any batch of the run still
// open (one whose create was in flight during the cancel, or an adopted intent).
// jobs.Store.ReopenCanceledRun (clade batch --resume-canceled) undoes it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/upstream"
)

// CanceledBatch is what Cancel did to one batch in flight.
type CanceledBatch struct {
	RunID int64
	ID    string
	// Status is the batch's processing_status after the call: canceling, or ended
	// when it had ended before the cancel reached it.
	Status string
	Err    error
}

// CancelReport is what Cancel did.
type CancelReport struct {
	// Runs are the runs marked canceled.
	Runs    []int64
	Batches []CanceledBatch
}

// Cancel cancels the store's batch-mode runs: it marks every run with batches or
// started by clade batch, and with requests left, as canceled, then asks the API to
// cancel every batch of the store in flight. A batch that has already ended is not
// an error. The returned error joins the failed cancel calls; running Cancel again
// is safe.
func Cancel(ctx context.Context, st *jobs.Store, client *upstream.Client) (*CancelReport, error) {
	if err := st.PrepareBatches(ctx); err != nil {
		return nil, err
	}
	runs, err := st.Runs(ctx)
	if err != nil {
		return nil, err
	}
	rep := &CancelReport{}
	for _, r := range runs {
		if !isBatchRun(r) {
			bs, err := st.Batches(ctx, r.ID)
			if err != nil {
				return nil, err
			}
			if len(bs) == 0 {
				continue
			}
		}
		s, err := st.Status(ctx, r.ID)
		if err != nil {
			return nil, err
		}
		if s.Pending == 0 && s.Imported {
			continue
		}
		if err := st.CancelBatchRun(ctx, r.ID); err != nil {
			return nil, err
		}
		rep.Runs = append(rep.Runs, r.ID)
	}
	open, err := st.Batches(ctx, 0, jobs.BatchCreated)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, b := range open {
		cb := CanceledBatch{RunID: b.RunID, ID: b.BatchID}
		cb.Status, cb.Err = cancelAtAPI(ctx, client, b.BatchID)
		if cb.Err != nil {
			errs = append(errs, cb.Err)
		}
		rep.Batches = append(rep.Batches, cb)
	}
	return rep, errors.Join(errs...)
}

// isBatchRun reports whether clade batch created the run (its stored options say
// mode batch).
func isBatchRun(r *jobs.Run) bool {
	var o struct {
		Mode string `json:"mode"`
	}
	return json.Unmarshal(r.Options, &o) == nil && o.Mode == "batch"
}

// cancelAtAPI cancels one batch and returns its processing_status. The API refuses
// to cancel a batch that has ended (400 on the emulator): that batch is reported
// ended, without an error.
func cancelAtAPI(ctx context.Context, client *upstream.Client, id string) (string, error) {
	got, err := client.CancelBatch(ctx, id)
	if err == nil {
		return got.ProcessingStatus, nil
	}
	var ae *upstream.APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusConflict) {
		if b, gerr := client.GetBatch(ctx, id); gerr == nil && b.ProcessingStatus == upstream.BatchEnded {
			return b.ProcessingStatus, nil
		}
	}
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return "deleted", nil // the next clade batch finds it gone
	}
	return "", fmt.Errorf("cancel batch %s: %w", id, err)
}

// runCanceled reports whether the run was canceled (Cancel).
func (d *dispatcher) runCanceled(ctx context.Context) (bool, error) {
	at, err := d.cfg.Store.BatchRunCanceled(ctx, d.runID)
	return !at.IsZero(), err
}

// startCanceled is what a dispatcher does at start for a canceled run: cancel at the
// API every batch of the run still open (created after Cancel listed them, or just
// adopted), and settle the run if nothing is open.
func (d *dispatcher) startCanceled(ctx context.Context) error {
	canceled, err := d.runCanceled(ctx)
	if err != nil || !canceled {
		return err
	}
	open, err := d.cfg.Store.Batches(ctx, d.runID, jobs.BatchCreated)
	if err != nil {
		return err
	}
	for _, b := range open {
		if err := d.pace(ctx); err != nil {
			return err
		}
		status, err := cancelAtAPI(ctx, d.cfg.Client, b.BatchID)
		if err != nil {
			// Not fatal: polling goes on and its results are read when it ends.
			d.log.Warn("cancel batch of a canceled run failed", "batch_id", b.BatchID, "err", err)
			continue
		}
		d.progress("batch %s %s: the run was canceled", b.BatchID, status)
	}
	return d.settleCanceled(ctx)
}

// settleCanceled ends a canceled run that has no open batch: every request without
// a result gets a final canceled line, as the API writes for a request a canceled
// batch did not process. It does nothing for a run that is not canceled or still
// has batches open.
func (d *dispatcher) settleCanceled(ctx context.Context) error {
	st := d.cfg.Store
	if canceled, err := d.runCanceled(ctx); err != nil || !canceled {
		return err
	}
	if open, err := st.OpenBatchRequests(ctx, d.runID); err != nil || open > 0 {
		return err
	}
	var n int64
	after := 0
	for {
		page, err := st.BatchUnsent(ctx, d.runID, after, pendingPage)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		rs := make([]jobs.BatchResult, 0, len(page))
		for _, req := range page {
			line, err := jobs.Result{Type: jobs.Canceled}.ResultLine(req.CustomID)
			if err != nil {
				return err
			}
			item := jobs.BatchItem{RequestID: req.ID, CustomID: req.CustomID, Line: req.Line, Model: req.Model}
			rs = append(rs, jobs.BatchResult{Item: item, Type: jobs.Canceled, Line: line})
			after = req.Line
		}
		wrote, err := st.WriteBatchResults(ctx, d.runID, rs)
		if err != nil {
			return err
		}
		d.out.append(wrote)
		n += int64(len(wrote))
	}
	if n > 0 {
		d.log.Info("run canceled: requests not sent again are canceled", "requests", n)
		d.progress("run canceled: %d requests without a result written as canceled", n)
	}
	return nil
}
