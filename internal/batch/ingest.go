package batch

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
)

// retryableErrors are the errored result types whose request is sent again in a
// later batch as it is (anthropic-api.md 4.4: other errors need the request fixed).
var retryableErrors = map[string]bool{"api_error": true, "overloaded_error": true}

// ingest reads an ended batch's results into the store and marks the batch done.
// It may run again for the same batch after a crash or a failed download: a request
// keeps its first result.
func (d *dispatcher) ingest(ctx context.Context, rec jobs.BatchRecord, b *upstream.Batch) error {
	st := d.cfg.Store
	items, err := st.BatchItems(ctx, rec.Row)
	if err != nil {
		return err
	}
	byID := make(map[string]jobs.BatchItem, len(items))
	for _, it := range items {
		byID[it.CustomID] = it
	}
	// In a canceled run every line is final: nothing is sent again.
	canceled, err := d.runCanceled(ctx)
	if err != nil {
		return err
	}
	if err := d.pace(ctx); err != nil {
		return err
	}
	d.progress("batch %s ended: reading %d results", b.ID, len(items))
	rr, err := d.cfg.Client.Results(ctx, b.ID)
	var ae *upstream.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && !b.ArchivedAt.IsZero() {
		// Results are kept 29 days after created_at: every request of the batch
		// without a result is pending again.
		d.log.Warn("batch results archived; its requests are sent again", "batch_id", b.ID, "requests", len(items))
		if err := d.finish(ctx, rec, b); err != nil {
			return err
		}
		if !canceled {
			d.resubmitted.Add(int64(len(items)))
		}
		return d.settleCanceled(ctx)
	}
	if err != nil {
		return fmt.Errorf("results of batch %s: %w", b.ID, err)
	}
	defer rr.Close()
	var buf []jobs.BatchResult
	var final, again, unknown int64
	var cache cacheShare // of this batch's succeeded results
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		wrote, err := st.WriteBatchResults(ctx, d.runID, buf)
		if err != nil {
			return err
		}
		d.out.append(wrote)
		buf = buf[:0]
		return nil
	}
	for rr.Next() {
		r := rr.Result()
		it, ok := byID[r.CustomID]
		if !ok {
			unknown++
			continue
		}
		delete(byID, r.CustomID) // a repeated line counts once
		typ, isFinal := d.classify(r, it, canceled)
		if !isFinal {
			again++
			continue
		}
		final++
		res := jobs.BatchResult{Item: it, Type: typ, Line: slices.Clone(r.Line)}
		if typ == jobs.Succeeded {
			res.Usage, res.CostUSD = d.cost(it, r)
			cache.add(res.Usage)
		}
		buf = append(buf, res)
		if len(buf) >= resultFlush {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := rr.Err(); err != nil {
		return fmt.Errorf("results of batch %s: %w", b.ID, err)
	}
	if err := flush(); err != nil {
		return err
	}
	// Requests with no line at all are pending again, as if expired.
	again += int64(len(byID))
	if unknown > 0 {
		d.log.Warn("batch results name requests not in the batch; ignored", "batch_id", b.ID, "lines", unknown)
	}
	if err := d.finish(ctx, rec, b); err != nil {
		return err
	}
	if canceled {
		again = 0 // they get canceled lines below: the run was canceled
	}
	d.resubmitted.Add(again)
	d.cacheRead.Add(cache.read)
	d.cacheWrite.Add(cache.write)
	d.cacheInput.Add(cache.input)
	d.log.Debug("batch ended", "batch_id", b.ID, "final", final, "resubmit", again,
		"cache_read_tokens", cache.read, "input_tokens", cache.input)
	if d.cfg.MayFill != nil && !d.cfg.MayFill() || d.cfg.RetryVia == RetryRealtime {
		d.progress("batch %s ended: %d results, %d left for realtime%s", b.ID, final, again, cache.note())
	} else {
		d.progress("batch %s ended: %d results, %d to resubmit%s", b.ID, final, again, cache.note())
	}
	// The run may have been canceled meanwhile, or this was its last open batch.
	return d.settleCanceled(ctx)
}

// finish records an ended batch's request counts (for clade status) and marks it
// done.
func (d *dispatcher) finish(ctx context.Context, rec jobs.BatchRecord, b *upstream.Batch) error {
	c := b.RequestCounts
	if err := d.cfg.Store.RecordBatchCounts(ctx, rec.Row, jobs.BatchCounts{
		Succeeded: c.Succeeded, Errored: c.Errored, Canceled: c.Canceled, Expired: c.Expired,
	}); err != nil {
		return err
	}
	return d.cfg.Store.FinishBatch(ctx, rec.Row, b.EndedAt)
}

// classify says what a result line makes of its request: a final result of type
// typ, or (false) a resubmission. In a canceled run every line is final.
func (d *dispatcher) classify(r upstream.Result, it jobs.BatchItem, canceled bool) (typ jobs.ResultType, final bool) {
	lastRound := canceled || it.Attempt >= d.cfg.MaxRounds
	switch r.Type {
	case upstream.ResultSucceeded:
		return jobs.Succeeded, true
	case upstream.ResultErrored:
		return jobs.Errored, !retryableErrors[r.ErrorType] || lastRound
	case upstream.ResultExpired:
		return jobs.Expired, lastRound
	case upstream.ResultCanceled:
		return jobs.Canceled, lastRound
	}
	// A result type newer than this code: send the request again, then keep the line.
	return jobs.Errored, lastRound
}

// cost prices a succeeded line's usage (read with the line) at batch rates.
func (d *dispatcher) cost(it jobs.BatchItem, r upstream.Result) (catalog.Usage, float64) {
	if r.Usage == nil {
		return catalog.Usage{}, 0
	}
	cu := spend.Usage(*r.Usage)
	// The model that answered (routing may have changed the line's), else the
	// line's own.
	m, err := d.cfg.Catalog.Resolve(r.Model)
	if err != nil {
		if m, err = d.cfg.Catalog.Resolve(it.Model); err != nil {
			return cu, 0
		}
	}
	return cu, spend.Cost(d.cfg.Catalog, m, cu, true)
}

// cacheShare sums the prompt-cache part of succeeded results' usage: tokens read
// from and written to the cache, and all input tokens (uncached, written and read).
type cacheShare struct{ read, write, input int64 }

func (c *cacheShare) add(u catalog.Usage) {
	c.read += u.CacheReadTokens
	c.write += u.CacheWrite5mTokens + u.CacheWrite1hTokens
	c.input += u.InputTokens + u.CacheWrite5mTokens + u.CacheWrite1hTokens + u.CacheReadTokens
}

// note is "; cache reads N % of input tokens" for a progress line, or "" when the
// results used no prompt cache.
func (c cacheShare) note() string {
	if c.read+c.write == 0 || c.input == 0 {
		return ""
	}
	return fmt.Sprintf("; cache reads %s of input tokens", percent(c.read, c.input))
}

// percent renders part/whole as "62.5 %".
func percent(part, whole int64) string {
	return fmt.Sprintf("%.1f %%", 100*float64(part)/float64(whole))
}
