package emulator

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// handleBatchCreate serves POST /v1/messages/batches.
//
// Checks, in order: batch RPM (429), faults, body size (413 request_too_large), the
// body's shape, item count and custom_ids (400 for the whole batch; see
// parseBatchCreate), then the tier's processing-queue limit (429 with retry-after: the
// time until enough queued requests are processed at BatchProcessingRate; a batch
// larger than the whole queue limit can never fit and gets a 400 instead). Params are
// not checked here: bad params end as errored results.
func (s *Server) handleBatchCreate(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.batchPreamble(w, r, c) {
		return
	}
	e := s.batches
	body, werr := readBody(r, MaxBatchCreateBody)
	if werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	items, werr := parseBatchCreate(body, int(e.limit.maxRequests))
	if werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	body = nil
	n := int64(len(items))
	h := hashString("")
	for _, it := range items {
		h = h*1099511628211 ^ hashString(it.customID)
	}
	b := &batch{version: c.version, size: n, orderSeed: h, items: items, status: batchInProgress}

	// Check the queue before the costly part, judge every request outside the lock,
	// then check again and enqueue atomically.
	e.mu.Lock()
	e.advance(e.now())
	werr, wait := e.admitQueue(n)
	e.mu.Unlock()
	if werr != nil {
		s.writeQueueError(w, c, werr, wait)
		return
	}
	s.judge(b)
	e.mu.Lock()
	now := e.now()
	e.advance(now)
	if werr, wait := e.admitQueue(n); werr != nil {
		e.mu.Unlock()
		s.writeQueueError(w, c, werr, wait)
		return
	}
	b.id = newID("msgbatch_")
	b.idSeed = uint64(s.cfg.Seed) ^ hashString(b.id)
	b.created = now
	b.expires = now.Add(batchExpiry)
	e.byID[b.id] = b
	e.order = append(e.order, b)
	e.active = append(e.active, b)
	e.queued += n
	v := e.view(b, now, s.resultsBase(r))
	e.mu.Unlock()
	e.wake()
	s.log.Info("batch created", "batch_id", b.id, "requests", n)
	writeJSON(w, http.StatusOK, v)
}

// admitQueue checks that n more requests fit in the tier's processing queue. On
// refusal it returns the error and, for a 429, how long (real time) until they would
// fit. mu held, simulation advanced.
func (e *batchEngine) admitQueue(n int64) (*wire.Error, time.Duration) {
	q := e.limit.queue
	if q <= 0 || e.queued+n <= q {
		return nil, 0
	}
	if n > q {
		return wire.Errorf(wire.InvalidRequest,
			"requests: a batch of %s requests exceeds your organization's processing queue limit of %s batch requests", commas(n), commas(q)), 0
	}
	wait := time.Hour
	if e.rate > 0 {
		over := float64(e.queued + n - q)
		wait = min(e.s.clock.RealDuration(durationOf((over-e.credit)/e.rate)), 24*time.Hour)
	}
	return wire.Errorf(wire.RateLimit,
		"This request would exceed your organization's (%s) limit of %s batch requests in the processing queue: %s are still processing and this batch adds %s. Please try again later.",
		e.s.cfg.OrganizationID, commas(q), commas(e.queued), commas(n)), wait
}

func (s *Server) writeQueueError(w http.ResponseWriter, c *call, werr *wire.Error, wait time.Duration) {
	if werr.Status == http.StatusTooManyRequests {
		w.Header().Set("retry-after", strconv.FormatInt(retryAfterSeconds(wait), 10))
	}
	s.writeError(w, c.requestID, werr)
}

// handleBatchList serves GET /v1/messages/batches: newest first, limit 1–1000 (default
// 20), after_id/before_id cursors.
func (s *Server) handleBatchList(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.batchPreamble(w, r, c) {
		return
	}
	e := s.batches
	e.mu.Lock()
	now := e.now()
	e.advance(now)
	ids := make([]string, len(e.order))
	for i, b := range e.order {
		ids[len(ids)-1-i] = b.id
	}
	page, werr := paginate(r, ids)
	if werr != nil {
		e.mu.Unlock()
		s.writeError(w, c.requestID, werr)
		return
	}
	base := s.resultsBase(r)
	out := Page[MessageBatch]{Data: make([]MessageBatch, 0, len(page.ids)), HasMore: page.hasMore}
	for _, id := range page.ids {
		out.Data = append(out.Data, e.view(e.byID[id], now, base))
	}
	e.mu.Unlock()
	out.FirstID, out.LastID = page.first(), page.last()
	writeJSON(w, http.StatusOK, out)
}

// handleBatchGet serves GET /v1/messages/batches/{id}.
func (s *Server) handleBatchGet(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.batchPreamble(w, r, c) {
		return
	}
	e := s.batches
	b, now, ok := s.lockBatch(w, r, c)
	if !ok {
		return
	}
	v := e.view(b, now, s.resultsBase(r))
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

// handleBatchCancel serves POST /v1/messages/batches/{id}/cancel.
//
// An in_progress batch stops processing at once and answers canceling with
// cancel_initiated_at; it ends cancelGrace (emulator clock) later, its unprocessed
// requests canceled and its processed ones kept. Cancelling a canceling batch answers
// it unchanged. Cancelling an ended batch is a 400 invalid_request_error: the API's
// behaviour is not documented (anthropic-api.md §9), a 400 is what the API uses for a
// request that cannot apply to the resource's state, and unlike 409 the SDKs do not
// retry it.
func (s *Server) handleBatchCancel(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.batchPreamble(w, r, c) {
		return
	}
	e := s.batches
	b, now, ok := s.lockBatch(w, r, c)
	if !ok {
		return
	}
	id := b.id
	switch b.status {
	case batchEnded:
		e.mu.Unlock()
		s.writeError(w, c.requestID, wire.Errorf(wire.InvalidRequest,
			"Message Batch %s has already ended (processing_status: ended) and cannot be canceled.", id))
		return
	case batchInProgress:
		b.status = batchCanceling
		b.cancelAt = now
		e.removeActive(b)
		e.markDue(b, now.Add(cancelGrace), "canceled")
		s.log.Info("batch canceling", "batch_id", b.id)
	}
	v := e.view(b, now, s.resultsBase(r))
	e.mu.Unlock()
	e.wake()
	writeJSON(w, http.StatusOK, v)
}

// handleBatchDelete serves DELETE /v1/messages/batches/{id}: only an ended batch can
// be deleted (400 otherwise, telling to cancel first); afterwards the id is a 404
// everywhere.
func (s *Server) handleBatchDelete(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.batchPreamble(w, r, c) {
		return
	}
	e := s.batches
	b, _, ok := s.lockBatch(w, r, c)
	if !ok {
		return
	}
	id := b.id
	if b.status != batchEnded {
		e.mu.Unlock()
		s.writeError(w, c.requestID, wire.Errorf(wire.InvalidRequest,
			"Message Batch %s cannot be deleted while it is processing (processing_status: %s). Cancel it first and delete it once processing_status is ended.", id, b.status))
		return
	}
	delete(e.byID, id)
	if i := slices.Index(e.order, b); i >= 0 {
		e.order = slices.Delete(e.order, i, i+1)
	}
	e.mu.Unlock()
	s.log.Info("batch deleted", "batch_id", id)
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "type": "message_batch_deleted"})
}

// lockBatch takes the engine's lock, brings the simulation up to now and finds the
// batch named in the path. When it reports true the lock is held and the caller must
// release it; otherwise it has answered 404 and released the lock.
func (s *Server) lockBatch(w http.ResponseWriter, r *http.Request, c *call) (*batch, time.Time, bool) {
	e := s.batches
	id := r.PathValue("id")
	e.mu.Lock()
	now := e.now()
	e.advance(now)
	b, ok := e.byID[id]
	if !ok {
		e.mu.Unlock()
		s.writeError(w, c.requestID, notFoundBatch(id))
		return nil, now, false
	}
	return b, now, true
}
