package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
	"github.com/clade-dev/clade/internal/wire"
)

// Message Batches and budgets. A batch created by a client whose key or team has
// a budget is admitted at its worst case at the batch price (each request's input
// estimate plus all of its max_tokens), counted against limit − spent − held by
// calls in flight − held by pending batches. Once upstream accepted it, its worst
// case is held in the store (clade_batch_hold), where every gateway on the store
// sees it and a restart keeps it. The reconciler (ReconcileBatches, run by Run)
// settles each hold once the batch ended: the cost of its succeeded results'
// usage at the batch price is added to every scope and the hold deleted, in one
// transaction that claims the row, so two gateways settle a batch once.

// DefaultBatchReconcile is how often Run reconciles the pending batch holds.
const DefaultBatchReconcile = 30 * time.Second

// batchHoldMaxAge is when a hold is released whatever upstream says: batches
// expire after 24 hours and their results are kept 29 days.
const batchHoldMaxAge = 29 * 24 * time.Hour

// maxBatchObject bounds the create response kept to read the batch's id.
const maxBatchObject = 1 << 20

// batchHeld is the pending batch holds as last read from the store, per scope:
// what calls' checks count (refreshed by each create and each reconcile).
type batchHeld struct {
	mu      sync.Mutex
	byScope map[string]spend.Micros
}

// batchHeldOf is what pending batches hold in scope (0 on nil).
func (b *budgets) batchHeldOf(scope string) spend.Micros {
	if b == nil {
		return 0
	}
	b.batch.mu.Lock()
	defer b.batch.mu.Unlock()
	return b.batch.byScope[scope]
}

// refreshBatchHeld reads the pending holds from the store; it returns them.
func (b *budgets) refreshBatchHeld(ctx context.Context) ([]jobs.BatchHold, error) {
	holds, err := b.store.BatchHolds(ctx)
	if err != nil {
		return nil, err
	}
	m := map[string]spend.Micros{}
	for _, h := range holds {
		for _, s := range h.Scopes {
			m[s] += h.Worst
		}
	}
	b.batch.mu.Lock()
	b.batch.byScope = m
	b.batch.mu.Unlock()
	return holds, nil
}

// batchWorst is the worst case of a batch create body at the batch price: the
// sum over its requests of the input estimate and all of max_tokens. A request
// of a model the catalog does not price counts 0, as a call of one does.
func (b *budgets) batchWorst(body []byte) (spend.Micros, error) {
	var req struct {
		Requests []struct {
			Params json.RawMessage `json:"params"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, fmt.Errorf("the batch body is not a JSON object with requests: %v", err)
	}
	if len(req.Requests) == 0 {
		return 0, errors.New("the batch has no requests")
	}
	var worst spend.Micros
	for i, r := range req.Requests {
		var p struct {
			Model     string `json:"model"`
			MaxTokens *int64 `json:"max_tokens"`
		}
		if err := json.Unmarshal(r.Params, &p); err != nil || p.MaxTokens == nil {
			return 0, fmt.Errorf("requests.%d.params: a Messages body with model and max_tokens is required to cost the batch against its budget", i)
		}
		m, err := b.cat.Resolve(p.Model)
		if err != nil {
			continue
		}
		worst += spend.WorstCase(b.cat, m, admit.EstimateInput(r.Params), max(*p.MaxTokens, 0), true)
	}
	return worst, nil
}

// createBatch is POST /v1/messages/batches: passed through as any batch call for a
// client without a budget; for one with a budget, admitted at the batch's worst
// case and, once created, held in the store until it ends.
func (g *Gateway) createBatch(w http.ResponseWriter, r *http.Request, team *Team) {
	const path = "/v1/messages/batches"
	c := g.cfg.Keys.lookup(clientKey(r))
	var scopes []scope
	if c != nil {
		scopes = scopesOf(c)
	}
	if g.budgets == nil || len(scopes) == 0 {
		g.pass(epBatches, maxBatchBody, path)(w, r, team)
		return
	}
	status := func(code int) { g.m.requests.WithLabelValues(team.Name, epBatches, statusLabel(code)).Inc() }
	if r.ContentLength > maxBatchBody {
		writeTooLarge(w, maxBatchBody)
		status(http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBatchBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeTooLarge(w, maxBatchBody)
			status(http.StatusRequestEntityTooLarge)
			return
		}
		writeError(w, http.StatusBadRequest, wire.InvalidRequest, "could not read the request body", nil)
		status(http.StatusBadRequest)
		return
	}
	b := g.budgets
	worst, err := b.batchWorst(body)
	if err != nil {
		// Refused here rather than passed on uncosted: a budgeted key must not
		// bypass its budget with a body the gateway cannot cost.
		writeError(w, http.StatusBadRequest, wire.InvalidRequest, "clade serve: "+err.Error(), nil)
		status(http.StatusBadRequest)
		return
	}
	// Held in memory first, as a call's hold, so that calls and batches checked at
	// the same time count it; released once the store holds it (or on refusal).
	h := &budgetHold{b: b, scopes: scopes, worst: worst}
	others := make([]spend.Micros, 0, 4)
	b.mu.Lock()
	for _, s := range scopes {
		for _, period := range jobs.Periods {
			if _, ok := s.budget[period]; ok {
				k := heldKey{s.name, period}
				others = append(others, b.held[k])
				b.held[k] += worst
			}
		}
	}
	b.mu.Unlock()
	defer h.release()
	if err := g.checkBatch(r.Context(), h, others); err != nil {
		status(g.refuseBudget(w, err))
		return
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	cw := &captureWriter{ResponseWriter: w}
	g.pass(epBatches, maxBatchBody, path)(cw, r, team)
	if cw.code/100 != 2 {
		return
	}
	var obj struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(cw.buf.Bytes(), &obj) != nil || obj.ID == "" {
		g.log.Error("batch created but its id could not be read: its cost is not held against the budget", "team", team.Name)
		return
	}
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = s.name
	}
	ctx := context.WithoutCancel(r.Context())
	if err := b.store.AddBatchHold(ctx, jobs.BatchHold{BatchID: obj.ID, Scopes: names, Worst: worst, Created: g.now().UTC()}); err != nil {
		g.log.Error("hold batch in the spend store: its cost is not held against the budget", "batch", obj.ID, "error", err)
		return
	}
	if _, err := b.refreshBatchHeld(ctx); err != nil {
		g.log.Warn("read batch holds", "error", err)
	}
}

// checkBatch is check for a batch: limit − spent − held by calls − held by
// pending batches (read from the store) against the batch's worst case.
func (g *Gateway) checkBatch(ctx context.Context, h *budgetHold, others []spend.Micros) error {
	b := g.budgets
	if _, err := b.refreshBatchHeld(ctx); err != nil {
		return err
	}
	now := b.now()
	i := 0
	for _, s := range h.scopes {
		for _, period := range jobs.Periods {
			limit, ok := s.budget[period]
			if !ok {
				continue
			}
			held := others[i]
			i++
			batches := b.batchHeldOf(s.name)
			// A batch is checked against a fresh read: it is rare, and large.
			spent, err := b.spentOf(ctx, s.name, period, now, func(spend.Micros) bool { return false })
			if err != nil {
				return err
			}
			resets := jobs.PeriodEnd(period, now).Format(time.RFC3339)
			switch left := limit - spent - held - batches; {
			case spent >= limit:
				return &refusal{fmt.Sprintf("%s: its %s budget of %s is spent (%s); it resets at %s",
					s.what, adjective[period], usd(limit), usd(spent), resets)}
			case h.worst > left:
				return &refusal{fmt.Sprintf("%s: its %s budget of %s has %s left (%s spent, %s held by calls in flight, %s by pending batches), less than this batch's worst case of %s (its requests' input and all of their max_tokens, at the batch price); it resets at %s",
					s.what, adjective[period], usd(limit), usd(max(left, 0)), usd(spent), usd(held), usd(batches), usd(h.worst), resets)}
			}
		}
	}
	return nil
}

// captureWriter keeps a copy of a 2xx answer's body (up to maxBatchObject).
type captureWriter struct {
	http.ResponseWriter
	code int
	buf  bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	if c.code/100 == 2 && c.buf.Len()+len(p) <= maxBatchObject {
		c.buf.Write(p)
	}
	return c.ResponseWriter.Write(p)
}

func (c *captureWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// reconcileBatches runs ReconcileBatches every interval (DefaultBatchReconcile
// when 0) until ctx ends or the returned stop is called.
func (g *Gateway) reconcileBatches(ctx context.Context, every time.Duration) (stop func()) {
	if g.budgets == nil {
		return func() {}
	}
	if every <= 0 {
		every = DefaultBatchReconcile
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if err := g.ReconcileBatches(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("reconcile batch holds", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// ReconcileBatches settles the pending batch holds whose batch ended upstream
// (its succeeded results' cost at the batch price added to its scopes, the hold
// deleted, in one transaction), releases those of batches upstream does not know
// (404) and those older than 29 days, and leaves the others. It returns the first
// error met; the other holds are still looked at.
func (g *Gateway) ReconcileBatches(ctx context.Context) error {
	b := g.budgets
	if b == nil {
		return nil
	}
	holds, err := b.refreshBatchHeld(ctx)
	if err != nil {
		return err
	}
	var first error
	for _, h := range holds {
		if err := g.reconcileBatch(ctx, h); err != nil && first == nil {
			first = err
		}
	}
	if _, err := b.refreshBatchHeld(ctx); err != nil && first == nil {
		first = err
	}
	return first
}

func (g *Gateway) reconcileBatch(ctx context.Context, h jobs.BatchHold) error {
	b := g.budgets
	if g.now().Sub(h.Created) > batchHoldMaxAge {
		if _, err := b.store.SettleBatchHold(ctx, h.BatchID, g.now(), 0); err != nil {
			return err
		}
		g.log.Warn("batch hold released: older than 29 days", "batch", h.BatchID)
		return nil
	}
	path := "/v1/messages/batches/" + h.BatchID
	if !batchID.MatchString(h.BatchID) {
		return fmt.Errorf("batch hold %q: not a batch id", h.BatchID)
	}
	resp, err := g.up.Proxy(ctx, upstream.ProxyRequest{Method: http.MethodGet, Path: path})
	if err != nil {
		return fmt.Errorf("batch %s: %w", h.BatchID, err)
	}
	obj, err := io.ReadAll(io.LimitReader(resp.Body, maxBatchObject))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		if _, err := b.store.SettleBatchHold(ctx, h.BatchID, g.now(), 0); err != nil {
			return err
		}
		g.log.Warn("batch hold released: the batch is unknown upstream (deleted?); its cost is not counted", "batch", h.BatchID)
		return nil
	case err != nil:
		return fmt.Errorf("batch %s: %w", h.BatchID, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("batch %s: upstream answered %d", h.BatchID, resp.StatusCode)
	}
	var st struct {
		Status string `json:"processing_status"`
	}
	if err := json.Unmarshal(obj, &st); err != nil {
		return fmt.Errorf("batch %s: %w", h.BatchID, err)
	}
	if st.Status != "ended" {
		return nil
	}
	cost, err := g.batchCost(ctx, path+"/results")
	if err != nil {
		return fmt.Errorf("batch %s results: %w", h.BatchID, err)
	}
	claimed, err := b.store.SettleBatchHold(ctx, h.BatchID, g.now(), cost)
	if err != nil {
		return err
	}
	if claimed {
		g.log.Info("batch settled", "batch", h.BatchID, "cost_usd", cost.USD(), "held_usd", h.Worst.USD())
	}
	return nil
}

// batchCost reads a batch's results JSONL and sums its succeeded results' usage
// at the batch price; errored, canceled and expired ones cost nothing.
func (g *Gateway) batchCost(ctx context.Context, path string) (spend.Micros, error) {
	resp, err := g.up.Proxy(ctx, upstream.ProxyRequest{Method: http.MethodGet, Path: path})
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, errors.New("upstream answered " + strconv.Itoa(resp.StatusCode))
	}
	b := g.budgets
	var sum spend.Micros
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxJSONResp)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var res struct {
			Result struct {
				Type    string `json:"type"`
				Message struct {
					Model string          `json:"model"`
					Usage *upstream.Usage `json:"usage"`
				} `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal(line, &res); err != nil {
			return 0, fmt.Errorf("a result line: %w", err)
		}
		if res.Result.Type != "succeeded" || res.Result.Message.Usage == nil {
			continue
		}
		m, err := b.cat.Resolve(res.Result.Message.Model)
		if err != nil {
			continue // a model without a price costs 0, as for a call
		}
		sum += spend.FromUSD(spend.Cost(b.cat, m, spend.Usage(*res.Result.Message.Usage), true))
	}
	return sum, sc.Err()
}
