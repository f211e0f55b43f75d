package batch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/upstream"
	"github.com/clade-dev/clade/internal/wire"
)

// body is a create body under construction:
// {"requests":[{"custom_id":"a","params":{...}},...]}. Its length is exactly the
// bytes sent.
type body struct {
	buf bytes.Buffer
	ids []int64
	cid []string
}

const (
	bodyHead = `{"requests":[`
	bodyTail = `]}`
)

func (b *body) reset() {
	b.buf.Reset()
	b.buf.WriteString(bodyHead)
	b.ids, b.cid = b.ids[:0], b.cid[:0]
}

// itemSize is the bytes req adds to a body, its comma included.
func itemSize(req *jobs.Request) int {
	return len(`,{"custom_id":`) + len(strconv.Quote(req.CustomID)) + len(`,"params":`) + len(req.Params) + 1
}

// add appends req if the body stays within maxBytes with its tail.
func (b *body) add(req *jobs.Request, maxBytes int) bool {
	n := itemSize(req)
	if len(b.ids) == 0 {
		n-- // no comma
	}
	if b.buf.Len()+n+len(bodyTail) > maxBytes {
		return false
	}
	if len(b.ids) > 0 {
		b.buf.WriteByte(',')
	}
	b.buf.WriteString(`{"custom_id":`)
	b.buf.WriteString(strconv.Quote(req.CustomID))
	b.buf.WriteString(`,"params":`)
	b.buf.Write(req.Params)
	b.buf.WriteByte('}')
	b.ids = append(b.ids, req.ID)
	b.cid = append(b.cid, req.CustomID)
	return true
}

// bytes closes the body and returns it.
func (b *body) bytes() []byte {
	b.buf.WriteString(bodyTail)
	return b.buf.Bytes()
}

// fingerprint is the hex SHA-256 of custom_ids, sorted, one per line.
func fingerprint(cids []string) string {
	s := slices.Clone(cids)
	slices.Sort(s)
	h := sha256.New()
	for _, c := range s {
		h.Write([]byte(c))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fill creates batches while the run's open requests are under the queue limit and
// requests are pending.
func (d *dispatcher) fill(ctx context.Context) error {
	st := d.cfg.Store
	open, err := st.OpenBatchRequests(ctx, d.runID)
	if err != nil {
		return err
	}
	var b body
	after := 0
	var page []jobs.Request
	for open < d.cfg.QueueLimit {
		room := min(int64(d.cfg.MaxRequests), d.cfg.QueueLimit-open)
		b.reset()
		for int64(len(b.ids)) < room {
			if len(page) == 0 {
				if page, err = st.BatchPending(ctx, d.runID, after, pendingPage); err != nil {
					return err
				}
				if len(page) == 0 {
					break
				}
			}
			req := &page[0]
			d.resolveModel(req)
			if !b.add(req, d.cfg.MaxBytes) {
				if len(b.ids) > 0 {
					break // it starts the next batch
				}
				if err := d.tooLarge(ctx, req); err != nil {
					return err
				}
			}
			after = req.Line
			page = page[1:]
		}
		if len(b.ids) == 0 {
			return nil
		}
		created, err := d.create(ctx, &b)
		if err != nil || !created {
			return err
		}
		open += int64(len(b.ids))
	}
	return nil
}

// resolveModel sets a catalog alias (haiku, sonnet, ...) in req's params to its
// model id, as clade run does. A model the catalog does not know is sent as it is.
func (d *dispatcher) resolveModel(req *jobs.Request) {
	m, err := d.cfg.Catalog.Resolve(req.Model)
	if err != nil || m.ID == req.Model {
		return
	}
	if p, err := wire.SetTopLevelString(req.Params, "model", m.ID); err == nil {
		req.Params = p
	}
}

// tooLarge writes the final errored result of a request that fits in no batch.
func (d *dispatcher) tooLarge(ctx context.Context, req *jobs.Request) error {
	env := jobs.ErrorEnvelope("invalid_request_error",
		fmt.Sprintf("request is %d bytes; a batch create body takes at most %d", itemSize(req), d.cfg.MaxBytes), "")
	res := jobs.Result{Type: jobs.Errored, Error: env}
	line, err := res.ResultLine(req.CustomID)
	if err != nil {
		return err
	}
	item := jobs.BatchItem{RequestID: req.ID, CustomID: req.CustomID, Line: req.Line, Model: req.Model}
	wrote, err := d.cfg.Store.WriteBatchResults(ctx, d.runID, []jobs.BatchResult{{Item: item, Type: jobs.Errored, Line: line}})
	if err != nil {
		return err
	}
	d.out.append(wrote)
	return nil
}

// create records the intent, creates the batch and records its id. It reports
// false, with a nil error, when the API refused for now (429, overload): fill waits
// until d.fillAfter.
func (d *dispatcher) create(ctx context.Context, b *body) (bool, error) {
	st := d.cfg.Store
	rec, err := st.RecordBatchIntent(ctx, d.runID, b.ids, int64(b.buf.Len()+len(bodyTail)), fingerprint(b.cid))
	if err != nil {
		return false, err
	}
	if err := d.pace(ctx); err != nil {
		return false, errors.Join(err, st.DropBatchIntent(context.WithoutCancel(ctx), rec.Row))
	}
	got, err := d.cfg.Client.CreateBatch(ctx, bytes.NewReader(b.bytes()))
	if err != nil {
		var ae *upstream.APIError
		if !errors.As(err, &ae) {
			// The body may have reached the API: find out before sending it again.
			d.log.Warn("create batch: outcome unknown; reconciling", "requests", rec.Requests, "err", err)
			if rerr := d.reconcile(context.WithoutCancel(ctx), *rec); rerr != nil {
				return false, errors.Join(err, rerr)
			}
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			d.backoff(0)
			return false, nil
		}
		// The API answered with an error: no batch was created.
		if derr := st.DropBatchIntent(context.WithoutCancel(ctx), rec.Row); derr != nil {
			return false, derr
		}
		if ae.Status == http.StatusTooManyRequests || upstream.Classify(ae).Retryable() {
			d.log.Info("create batch refused for now", "status", ae.Status, "type", ae.Type, "retry_after", ae.RetryAfter)
			d.backoff(ae.RetryAfter)
			return false, nil
		}
		return false, fmt.Errorf("create batch of %d requests: %w", rec.Requests, err)
	}
	if d.cfg.AfterCreate != nil {
		if err := d.cfg.AfterCreate(got); err != nil {
			return false, err
		}
	}
	if err := st.RecordBatchCreated(context.WithoutCancel(ctx), rec.Row, got.ID, got.CreatedAt); err != nil {
		return false, err
	}
	d.failures = 0
	d.batches++
	now := d.cfg.Clock.Now()
	d.polls[rec.Row] = &pollState{next: now.Add(d.cfg.PollMin)}
	d.log.Debug("batch created", "batch_id", got.ID, "requests", rec.Requests, "bytes", rec.BodyBytes)
	d.progress("batch %s created: %d requests, %d bytes", got.ID, rec.Requests, rec.BodyBytes)
	return true, nil
}

// backoff holds fill back for retryAfter, or a doubling step from PollMin.
func (d *dispatcher) backoff(retryAfter time.Duration) {
	d.failures++
	wait := retryAfter
	if wait <= 0 {
		wait = min(d.cfg.PollMin<<min(d.failures-1, 6), d.cfg.PollMax)
	}
	d.fillAfter = d.cfg.Clock.Now().Add(wait)
}

func (d *dispatcher) progress(format string, args ...any) {
	if d.cfg.Progress != nil {
		fmt.Fprintf(d.cfg.Progress, format+"\n", args...)
	}
}
