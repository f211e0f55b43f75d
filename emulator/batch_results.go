package emulator

import (
	"bufio"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// batchResultLine is one line of a results file (anthropic-api.md §4.4).
type batchResultLine struct {
	CustomID string      `json:"custom_id"`
	Result   batchResult `json:"result"`
}

type batchResult struct {
	Type    string         `json:"type"` // succeeded, errored, canceled, expired
	Message *Message       `json:"message,omitempty"`
	Error   *wire.Envelope `json:"error,omitempty"`
}

// resultsSnapshot is what a download needs, copied under the engine lock; everything
// it points at is immutable once the batch has ended.
type resultsSnapshot struct {
	items       []batchItem
	outcomes    []outcome
	errs        map[int32]*wire.Error
	cache       map[int32]cacheUsage
	done        int
	unprocessed string
	version     string
	idSeed      uint64
	orderSeed   uint64
}

// handleBatchResults serves GET /v1/messages/batches/{id}/results: JSONL, one line per
// request, in a random order fixed by Config.Seed and the batch's custom_ids.
//
// Choices the spec leaves open (anthropic-api.md §9):
//   - Before the batch has ended: 400 invalid_request_error saying to wait for
//     processing_status "ended" (results_url is null until then, so a client that
//     follows it never gets here).
//   - After archiving (created_at + 29 days): 404 not_found_error saying the results
//     were archived; the batch itself stays retrievable.
//   - Content-Type is application/binary when the client asks for it (the Python SDK
//     does), else application/x-jsonl (the Go SDKs' Accept, and the OpenAPI spec's).
//
// Succeeded lines are generated now, exactly as s.complete would, with ids and prompt
// cache usage fixed at validation so that every download is identical.
func (s *Server) handleBatchResults(w http.ResponseWriter, r *http.Request, c *call) {
	if !s.batchPreamble(w, r, c) {
		return
	}
	e := s.batches
	b, now, ok := s.lockBatch(w, r, c)
	if !ok {
		return
	}
	id := b.id
	if b.status != batchEnded {
		e.mu.Unlock()
		s.writeError(w, c.requestID, wire.Errorf(wire.InvalidRequest,
			"Results for Message Batch %s are not available yet: processing_status is %s. Poll the batch until processing_status is ended.", id, b.status))
		return
	}
	if e.archived(b, now) {
		e.mu.Unlock()
		s.writeError(w, c.requestID, wire.Errorf(wire.NotFound,
			"Results for Message Batch %s are no longer available: the batch was archived at %s, %s after it was created.", id, batchTime(b.created.Add(e.retention)), retentionText(e.retention)))
		return
	}
	snap := resultsSnapshot{
		items: b.items, outcomes: b.outcomes, errs: b.errs, cache: b.cache, done: b.done,
		unprocessed: b.unprocessed, version: b.version, idSeed: b.idSeed, orderSeed: b.orderSeed,
	}
	e.mu.Unlock()

	ct := "application/x-jsonl"
	if strings.Contains(r.Header.Get("Accept"), "application/binary") {
		ct = "application/binary"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	opt := s.parseOptions(snap.version, nil, false)
	ctx := r.Context()
	order := rand.New(rand.NewPCG(uint64(s.cfg.Seed), snap.orderSeed)).Perm(len(snap.items))
	th := newResultsThrottle(s.faults.resultsRate(), s.cfg.Now())
	for k, i := range order {
		if k%256 == 0 && ctx.Err() != nil {
			return
		}
		if th != nil && !th.wait(r, w, bw, k, s.cfg.Now) {
			return
		}
		if err := enc.Encode(s.batchResultLine(&snap, i, opt)); err != nil {
			return // the client went away
		}
	}
	bw.Flush()
}

// resultsThrottle paces a results download to Faults.ResultsRate lines per second.
type resultsThrottle struct {
	rate  float64
	start time.Time
}

func newResultsThrottle(rate float64, now time.Time) *resultsThrottle {
	if rate <= 0 {
		return nil
	}
	return &resultsThrottle{rate: rate, start: now}
}

// wait holds line k back until its time, flushing what was written so the client
// sees the lines as they are paced. It reports false when the client went away.
func (t *resultsThrottle) wait(r *http.Request, w http.ResponseWriter, bw *bufio.Writer, k int, now func() time.Time) bool {
	due := t.start.Add(time.Duration(float64(k) / t.rate * float64(time.Second)))
	d := due.Sub(now())
	if d <= 0 {
		return true
	}
	if bw.Flush() != nil {
		return false
	}
	_ = http.NewResponseController(w).Flush()
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-r.Context().Done():
		return false
	case <-tm.C:
		return true
	}
}

// batchResultLine builds request i's result line.
func (s *Server) batchResultLine(snap *resultsSnapshot, i int, opt wire.ParseOptions) batchResultLine {
	it := &snap.items[i]
	line := batchResultLine{CustomID: it.customID}
	if i >= snap.done {
		line.Result.Type = snap.unprocessed
		if line.Result.Type == "" {
			line.Result.Type = "expired"
		}
		return line
	}
	var werr *wire.Error
	switch snap.outcomes[i] {
	case outValid:
		msg, err := s.batchMessage(snap, i, opt)
		if err == nil {
			line.Result = batchResult{Type: "succeeded", Message: msg}
			return line
		}
		werr = err // cannot happen: the same params validated before
	case outInvalid:
		werr = snap.errs[int32(i)]
	}
	if werr == nil {
		// outFailed (BatchItemErrorRate): a retryable error, overloaded_error for about
		// half the requests (fixed by the seed and the request), else api_error.
		werr = wire.Errorf(wire.APIError, "Internal server error")
		if itemRoll(^s.cfg.Seed, it) < 0.5 {
			werr = wire.Errorf(wire.Overloaded, "Overloaded")
		}
	}
	env := werr.Envelope(derivedID("req_", snap.idSeed, uint64(i)<<1|1))
	line.Result = batchResult{Type: "errored", Error: &env}
	return line
}

// batchMessage is the message for request i, generated as /v1/messages generates it
// but with the "batch" service tier, the cache usage decided at validation and ids
// derived from the batch, so it is the same at every download.
func (s *Server) batchMessage(snap *resultsSnapshot, i int, opt wire.ParseOptions) (*Message, *wire.Error) {
	p, werr := s.prepareBatchItem(snap.items[i].params, opt)
	if werr != nil {
		return nil, werr
	}
	cu, ok := snap.cache[int32(i)]
	if !ok {
		cu = cacheUsage{uncached: p.input.Total}
	}
	tc, werr := parseThinking(p.body, p.req, false, false)
	if werr == nil {
		werr = s.checkThinkingBlocks(p.body)
	}
	if werr == nil {
		werr = checkSurface(p.body)
	}
	if werr != nil {
		return nil, werr
	}
	g := s.generateWith(callable(p.req), p.body, tc, false)
	m := g.message(p.req.Model, g.usage(cu, "batch"))
	m.ID = derivedID("msg_", snap.idSeed, uint64(i)<<1)
	for j, blk := range m.Content {
		if tu, ok := blk.(ToolUseBlock); ok {
			tu.ID = derivedID("toolu_", ^snap.idSeed, uint64(i)<<16|uint64(j))
			m.Content[j] = tu
		}
	}
	return m, nil
}
