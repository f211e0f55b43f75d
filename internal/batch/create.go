package batch

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/upstream"
	"github.com/clade-dev/clade/internal/wire"
)

// body is a create body under construction:
// {"requests":[{"custom_id":"a","params":{...}},...]}, spooled to an unlinked temp
// file. size is exactly the bytes sent.
//
// Why a file: a body may reach 256 MB (upstream.MaxBatchCreateBytes), and holding
// it in memory would make clade's peak RSS grow with the params, not stay flat. A
// file keeps what the body costs in memory to a write buffer, while the body is
// still read from the store once, measured before the intent is recorded (the
// intent stores the size), and sent with a Content-Length like an in-memory body
// (no chunked upload, a 413 decided on the header, and a body the transport can
// send again from the file). Streaming the body from the store during the call
// would need a second pass to know the length, or a chunked upload.
type body struct {
	dir    string // where the spool goes ("": os.TempDir())
	f      *os.File
	w      *bufio.Writer
	remove string // the spool's path, when it could not be unlinked while open
	n      int    // bytes written, bodyTail excluded
	ids    []int64
	cid    []string
	// prefixes are the prompt-cache prefixes of the body's requests.
	prefixes map[cacheprefix.Key]bool
}

const (
	bodyHead = `{"requests":[`
	bodyTail = `]}`
	// spoolBuffer is the write buffer of the spool file.
	spoolBuffer = 256 << 10
)

// newBody returns an empty body spooled in dir ("" for os.TempDir()). The file is
// created at the first add and removed at once (it lives until close, and a crash
// leaves nothing behind).
func newBody(dir string) *body {
	return &body{dir: dir}
}

// reset empties the body for the next batch.
func (b *body) reset() {
	b.n = 0
	b.ids, b.cid = b.ids[:0], b.cid[:0]
	clear(b.prefixes)
}

// start opens the spool (the first time) and writes the head at its start.
func (b *body) start() error {
	if b.f == nil {
		f, err := os.CreateTemp(b.dir, ".clade-batch-body-*.json")
		if err != nil {
			return fmt.Errorf("spool batch body: %w", err)
		}
		// Unlinked while open: the data stays until close. Where a file cannot be
		// removed while open (Windows), close removes it.
		if os.Remove(f.Name()) != nil {
			b.remove = f.Name()
		}
		b.f, b.w = f, bufio.NewWriterSize(f, spoolBuffer)
	}
	// Truncate frees the last batch's blocks; the file is written from offset 0.
	if err := b.f.Truncate(0); err != nil {
		return fmt.Errorf("spool batch body: %w", err)
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spool batch body: %w", err)
	}
	b.w.Reset(b.f)
	b.w.WriteString(bodyHead)
	b.n = len(bodyHead)
	return nil
}

// size is the length of the closed body in bytes.
func (b *body) size() int64 { return int64(b.n + len(bodyTail)) }

// itemSize is the bytes req adds to a body, its comma included.
func itemSize(req *jobs.Request) int {
	return len(`,{"custom_id":`) + len(strconv.Quote(req.CustomID)) + len(`,"params":`) + len(req.Params) + 1
}

// add appends req if the body stays within maxBytes with its tail, and reports
// whether it did.
func (b *body) add(req *jobs.Request, maxBytes int) (bool, error) {
	if len(b.ids) == 0 {
		if err := b.start(); err != nil {
			return false, err
		}
	}
	n := itemSize(req)
	if len(b.ids) == 0 {
		n-- // no comma
	}
	if b.n+n+len(bodyTail) > maxBytes {
		return false, nil
	}
	if len(b.ids) > 0 {
		b.w.WriteByte(',')
	}
	b.w.WriteString(`{"custom_id":`)
	b.w.WriteString(strconv.Quote(req.CustomID))
	b.w.WriteString(`,"params":`)
	b.w.Write(req.Params)
	b.w.WriteByte('}')
	b.n += n
	b.ids = append(b.ids, req.ID)
	b.cid = append(b.cid, req.CustomID)
	if k := req.Cache.Key; k != (cacheprefix.Key{}) {
		if b.prefixes == nil {
			b.prefixes = map[cacheprefix.Key]bool{}
		}
		b.prefixes[k] = true
	}
	return true, nil
}

// reader closes the body and returns it as a reader of exactly size() bytes. The
// client sends an *io.SectionReader with its Size as Content-Length.
func (b *body) reader() (*io.SectionReader, error) {
	b.w.WriteString(bodyTail)
	if err := b.w.Flush(); err != nil { // a failed write sticks in w until here
		return nil, fmt.Errorf("spool batch body: %w", err)
	}
	return io.NewSectionReader(b.f, 0, b.size()), nil
}

// close releases the spool.
func (b *body) close() error {
	if b == nil || b.f == nil {
		return nil
	}
	err := b.f.Close()
	if b.remove != "" {
		os.Remove(b.remove)
	}
	b.f = nil
	return err
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
	if open >= d.cfg.QueueLimit || d.stopped != "" || d.drained {
		return nil
	}
	limit := d.cfg.QueueLimit - d.othersInQueue(ctx)
	budget, err := d.budget(ctx)
	if err != nil {
		return err
	}
	if ready, err := d.warmUp(ctx, limit-open); err != nil || !ready {
		return err // warm calls first (warm.go)
	}
	var withJobs map[int64]bool // requests realtime workers send (warm calls)
	if d.cfg.CacheWarm == CacheWarmRealtime {
		if withJobs, err = st.RequestsWithJobs(ctx, d.runID); err != nil {
			return err
		}
	}
	b := newBody(d.spoolDir())
	defer b.close()
	var after jobs.BatchCursor
	var refs []jobs.BatchRef
	var page []jobs.Request
	for open < limit {
		room := min(int64(d.cfg.MaxRequests), limit-open)
		if d.life.Importing() {
			// While the input is still read, only a full batch is worth creating.
			s, err := st.Status(ctx, d.runID)
			if err != nil {
				return err
			}
			if s.Pending-open < room {
				return nil
			}
		}
		b.reset()
		for int64(len(b.ids)) < room {
			if len(page) == 0 {
				if len(refs) == 0 {
					if refs, err = d.pendingForBatch(ctx, after, pendingOrder); err != nil {
						return err
					}
					if len(refs) > 0 {
						after = refs[len(refs)-1].At
					}
				}
				n := min(len(refs), pendingPage)
				if page, err = st.BatchRequests(ctx, refs[:n]); err != nil {
					return err
				}
				refs = refs[n:]
				if n == 0 {
					// Every pending request is in this body (and, once the
					// import is over, no more will come).
					d.drained = !d.life.Importing()
					break
				}
				if len(page) == 0 {
					continue // rows gone since the order was read (cannot happen)
				}
			}
			req := &page[0]
			if withJobs[req.ID] {
				page = page[1:]
				continue
			}
			d.resolveModel(req)
			// Held until the next fill, which reads the batch's hold from the
			// store (HeldWorstCase).
			hold, err := budget.Hold(d.worstCost(req))
			if err != nil {
				d.stop(fmt.Sprintf("the budget of $%.2f would be exceeded: line %d and the requests after it (in batch order, a prefix's lines together) are not sent", d.cfg.Budget, req.Line))
				break
			}
			added, err := b.add(req, d.cfg.MaxBytes)
			if err != nil {
				return err
			}
			if !added {
				hold.Release()
				if len(b.ids) > 0 {
					break // it starts the next batch
				}
				if err := d.tooLarge(ctx, req); err != nil {
					return err
				}
			}
			page = page[1:]
		}
		if len(b.ids) == 0 {
			return nil
		}
		created, err := d.create(ctx, b)
		if !created {
			d.drained = false // the body's requests are pending again (or unknown)
		}
		if err != nil || !created || d.stopped != "" {
			return err
		}
		open += int64(len(b.ids))
	}
	return nil
}

// spoolDir is where create bodies are spooled: the output file's directory, which
// must have room for the results (larger than the requests) anyway; else
// os.TempDir(). The output's directory is also less likely than /tmp to be a tmpfs,
// which would keep the body in memory (outside the process, but memory).
func (d *dispatcher) spoolDir() string {
	path := d.cfg.Output
	if d.cfg.Out != nil {
		path = d.cfg.Out.Path()
	}
	if path == "" {
		return ""
	}
	return filepath.Dir(path)
}

// resolveModel sets a catalog alias (haiku, sonnet, ...) in req's params to its
// model id, as clade run does. A model the catalog does not know is sent as it is.
//
// With Config.Routing, the routed model replaces the line's (req.Model too, so
// the budget prices what is sent).
func (d *dispatcher) resolveModel(req *jobs.Request) {
	name := d.cfg.Routing.Pick(req.CustomID, req.Model, req.EstInputTokens)
	m, err := d.cfg.Catalog.Resolve(name)
	if err != nil {
		if name == req.Model {
			return // a model the catalog does not know: sent as it is
		}
		m = &catalog.Model{ID: name} // Validate checked it; cannot happen
	}
	if m.ID == req.Model {
		return
	}
	if p, err := wire.SetTopLevelString(req.Params, "model", m.ID); err == nil {
		req.Params, req.Model = p, m.ID
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
	rd, err := b.reader()
	if err != nil {
		return false, err
	}
	rec, err := st.RecordBatchIntent(ctx, d.runID, b.ids, b.size(), fingerprint(b.cid))
	if err != nil {
		return false, err
	}
	if err := d.pace(ctx); err != nil {
		return false, errors.Join(err, st.DropBatchIntent(context.WithoutCancel(ctx), rec.Row))
	}
	got, err := d.cfg.Client.CreateBatch(ctx, rd)
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
	if d.cfg.Test.AfterCreate != nil {
		if err := d.cfg.Test.AfterCreate(got); err != nil {
			return false, err
		}
	}
	if err := st.RecordBatchCreated(context.WithoutCancel(ctx), rec.Row, got.ID, got.CreatedAt); err != nil {
		return false, err
	}
	d.failures = 0
	d.batches.Add(1)
	now := d.clock.Now()
	d.polls[rec.Row] = &pollState{next: now.Add(d.cfg.PollMin)}
	d.log.Debug("batch created", "batch_id", got.ID, "requests", rec.Requests, "bytes", rec.BodyBytes, "cache_prefixes", len(b.prefixes))
	if n := len(b.prefixes); n > 0 {
		warmed := ""
		if note := d.warmNote(ctx); note != "" {
			warmed = " (run: " + note + ")"
		}
		d.progress("batch %s created: %d requests, %d bytes, prompt-cache prefixes %d%s", got.ID, rec.Requests, rec.BodyBytes, n, warmed)
	} else {
		d.progress("batch %s created: %d requests, %d bytes", got.ID, rec.Requests, rec.BodyBytes)
	}
	return true, nil
}

// backoff holds fill back for retryAfter, or a doubling step from PollMin.
func (d *dispatcher) backoff(retryAfter time.Duration) {
	d.failures++
	wait := retryAfter
	if wait <= 0 {
		wait = min(d.cfg.PollMin<<min(d.failures-1, 6), d.cfg.PollMax)
	}
	d.fillAfter = d.clock.Now().Add(wait)
}

func (d *dispatcher) progress(format string, args ...any) {
	if d.screen != nil {
		d.screen.Say(fmt.Sprintf(format, args...))
	}
}
