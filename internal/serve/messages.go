package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/internal/upstream"
	"github.com/clade-dev/clade/internal/wire"
)

// call is one Messages call on its way through the gateway.
type call struct {
	team     *Team
	prio     int         // in the team's fair queue (see Gateway.priority)
	adm      *admit.Call // nil when admission does not pace it (an unknown model)
	class    string      // adm's class, or ""
	body     []byte
	deadline time.Time    // end of the admission budget (MaxWait)
	budget   *budgetHold  // nil when no USD budget counts the call
	access   *accessEntry // nil when calls are not logged
	// after settles the call once its answer has gone (set by the relays with
	// settleLater, run by handleMessages): it owns the call's attempt and budget
	// hold from then on.
	after func()
}

// settleLater makes f the call's settle, run once its answer has gone
// (Gateway.settleAfter), and tells the budgets its hold is on its way out.
func (c *call) settleLater(f func()) {
	c.budget.handOff()
	c.after = f
}

// handleMessages admits, sends and relays POST /v1/messages.
func (g *Gateway) handleMessages(w http.ResponseWriter, r *http.Request, team *Team) {
	code, after := g.messages(w, r, team)
	if after != nil {
		g.settleAfter(after)
	}
	g.answered(team.Name, code) // dashboard.go
	if code == statusCut {
		g.m.requests.WithLabelValues(team.Name, epMessages, statusLabel(http.StatusBadGateway)).Inc()
		// Abort the response, so the client sees the stream cut off (no final chunk).
		panic(http.ErrAbortHandler)
	}
	g.m.requests.WithLabelValues(team.Name, epMessages, statusLabel(code)).Inc()
}

// settleAfter runs f in the background: a call's settle (the limiter's commit,
// a Redis round trip with shared limits; the spend store's write with budgets),
// once its answer has gone, so that neither the answer's end nor the next
// request on its connection waits for them; or the limiter's reading of a
// stream's headers, beside its first events. Until a call's settle has run,
// its reservation and its budget hold stay in place, so a later call never sees
// less used than there was (budgets: a refusal waits for the settles pending,
// budgetHold.handOff). Run waits for every settle before it returns.
func (g *Gateway) settleAfter(f func()) {
	g.settling.Add(1)
	go func() {
		defer g.settling.Done()
		f()
	}()
}

// WaitSettled returns once every call answered so far has settled: its
// reservation committed to the limiter, its cost added to the spend store.
// A call settles just after its answer has gone (settleAfter); Run waits for
// this before it returns, and a program serving the Gateway as an http.Handler
// of its own calls it after its server's Shutdown, before it closes the
// limiter's backend or the spend store.
func (g *Gateway) WaitSettled() { g.settling.Wait() }

// messages answers the call, and returns its status and, when the call is to be
// settled after its answer has gone, the settle (settleAfter).
func (g *Gateway) messages(w http.ResponseWriter, r *http.Request, team *Team) (int, func()) {
	if r.ContentLength > maxMessageBody {
		writeTooLarge(w, maxMessageBody)
		return http.StatusRequestEntityTooLarge, nil
	}
	cb := &clientBody{r: http.MaxBytesReader(w, r.Body, maxMessageBody)}
	body, err := io.ReadAll(cb)
	if err != nil {
		return g.proxyFailed(w, r, cb.failed()), nil
	}
	c := &call{team: team, body: body, deadline: g.now().Add(g.cfg.MaxWait), access: accessOf(r)}
	if c.prio, err = g.priority(r); err != nil {
		writeError(w, http.StatusBadRequest, wire.InvalidRequest, "clade serve: "+err.Error(), nil)
		return http.StatusBadRequest, nil
	}
	code := g.send(w, r, c)
	return code, c.after
}

// send admits and sends c, and relays its answer.
func (g *Gateway) send(w http.ResponseWriter, r *http.Request, c *call) int {
	// The body is read once for admission and the budgets: its model, max_tokens
	// and input estimate (and, by PrepareBody, its prompt-cache prefix).
	var p struct {
		Model     string `json:"model"`
		MaxTokens int64  `json:"max_tokens"`
		Stream    bool   `json:"stream"`
	}
	var est int64
	body := c.body
	parsed := json.Unmarshal(body, &p) == nil
	if parsed && c.access != nil {
		c.access.model, c.access.stream = p.Model, p.Stream
	}
	if parsed && p.Model != "" {
		est = admit.EstimateInput(body)
		if adm, ok := g.lim.PrepareBody(body, p.Model, p.MaxTokens, est); ok {
			c.adm, c.class = adm, adm.Class()
		}
	}
	// The USD budgets first: a call they refuse does not wait for admission. The
	// hold is settled with the call's cost where its usage is read (relayJSON,
	// relayStream), and released on every other path.
	if g.budgets != nil {
		if c.adm != nil {
			est = max(est, c.adm.Need().InputTokens)
		}
		h, err := g.budgets.hold(r.Context(), g.cfg.Keys.lookup(clientKey(r)), p.Model, p.MaxTokens, est)
		if err != nil {
			return g.refuseBudget(w, err)
		}
		c.budget = h
		defer func() {
			if c.after == nil {
				h.release()
			}
		}()
	}
	// A body the gateway cannot read, or a model the catalog does not know, goes
	// upstream unadmitted: the API answers it (a 400 or 404, or a model newer than
	// the catalog), and the gateway does not reject what the API may accept.
	ctx := r.Context()
	// Every attempt is settled on every path below; should one be missed (a panic),
	// it fails here rather than stay charged and in flight for good (settling a
	// settled attempt does nothing).
	var att *admit.Attempt
	defer func() {
		if c.after == nil {
			att.Settle(0, nil, nil)
		}
	}()
	for attempt := 1; ; attempt++ {
		var (
			code int
			ok   bool
		)
		att, code, ok = g.admit(w, r, c)
		if !ok {
			return code
		}
		g.m.inFlight.Inc()
		resp, err := g.up.Proxy(ctx, upstream.ProxyRequest{
			Method: http.MethodPost, Path: "/v1/messages", RawQuery: r.URL.RawQuery, Body: bytes.NewReader(c.body),
			ContentLength: int64(len(c.body)), Header: r.Header,
		})
		if err != nil {
			g.m.inFlight.Dec()
			att.Settle(0, nil, nil)
			return g.proxyFailed(w, r, err)
		}
		if resp.StatusCode/100 == 2 {
			defer g.m.inFlight.Dec()
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				return g.relayStream(w, r, c, att, resp)
			}
			return g.relayJSON(w, c, att, resp)
		}
		g.m.inFlight.Dec()
		ae := g.up.ReadAPIError(resp)
		class := upstream.Classify(ae)
		// Rate limit or spend cap: the API charged nothing, and a retry-after pauses
		// the class; 529: concurrency shrinks; another 4xx: one request, no tokens;
		// a 5xx: the API may have counted the call (admit.Attempt.Settle).
		switch {
		case ae.Status == http.StatusTooManyRequests:
			g.throttled(c, "429")
		case class == upstream.Overloaded:
			g.throttled(c, "529")
		}
		att.Settle(ae.Status, ae.Header, nil)
		if class == upstream.RateLimited || class == upstream.Overloaded {
			g.log.Info("upstream refused a call", "status", ae.Status, "class", c.class, "attempt", attempt,
				"retry_after", ae.RetryAfter, "request_id", ae.RequestID)
			if attempt < g.cfg.MaxAttempts && g.now().Before(c.deadline) {
				// A 429 of an admitted call waits out its class's pause in admission;
				// a 529, or a 429 of a call the limiter does not pace, backs off here
				// (at least the retry-after).
				if class == upstream.Overloaded || c.class == "" {
					d := min(g.cfg.Backoff.Delay(attempt, ae), c.deadline.Sub(g.now()))
					if err := sleepCtx(ctx, d); err != nil {
						return 499
					}
				}
				g.m.retries.WithLabelValues(class.String()).Inc()
				continue
			}
		}
		if ae.Status == http.StatusUnauthorized {
			return g.keyRefused(w, ae)
		}
		writeAPIError(w, ae)
		return ae.Status
	}
}

// keyRefused answers a call the API refused for the gateway's own key (401):
// the client's key was fine, so the client gets a 502 that says so, and the operator
// a log line.
func (g *Gateway) keyRefused(w http.ResponseWriter, ae *upstream.APIError) int {
	g.log.Error("the upstream API refused the gateway's key", "status", ae.Status, "type", ae.Type, "request_id", ae.RequestID)
	writeError(w, http.StatusBadGateway, wire.APIError,
		fmt.Sprintf("clade serve: the upstream API refused the gateway's key (%d %s); tell the gateway's operator", ae.Status, ae.Type), nil)
	return http.StatusBadGateway
}

// admit waits for c's turn in its class's fair queue and then for the limiter, up to
// c.deadline. It answers the client itself when it gives up (ok false, with the
// status written). A call of no known class is not admitted (zero Reservation).
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, c *call) (*admit.Attempt, int, bool) {
	if c.adm == nil {
		return nil, 0, true
	}
	ctx, cancel := context.WithDeadline(r.Context(), c.deadline)
	defer cancel()
	fq := g.queue(c.class)
	start := g.now()
	size := int64(len(c.body))
	g.mu.Lock()
	full := g.queued >= g.cfg.MaxQueue
	fullBytes := g.qbytes+size > g.cfg.MaxQueueBytes
	g.mu.Unlock()
	if full || fullBytes {
		msg := fmt.Sprintf("clade serve: more than %d calls are waiting for the organisation's rate limits; try again later", g.cfg.MaxQueue)
		if !full {
			msg = fmt.Sprintf("clade serve: the calls waiting for the organisation's rate limits hold more than %d MiB of requests; try again later", g.cfg.MaxQueueBytes>>20)
		}
		writeError(w, http.StatusTooManyRequests, wire.RateLimit, msg, retryAfterHeader(10*time.Second))
		return nil, http.StatusTooManyRequests, false
	}
	depth := g.m.depth.WithLabelValues(c.team.Name)
	onQueue := func(d int) {
		depth.Add(float64(d))
		g.mu.Lock()
		g.queued += d
		g.qbytes += int64(d) * size
		g.mu.Unlock()
	}
	need := c.adm.Need()
	release, err := fq.acquire(ctx, c.team, c.prio, need, onQueue)
	var res *admit.Attempt
	if err == nil {
		res, err = c.adm.Admit(ctx)
		release(err == nil)
	}
	waited := g.now().Sub(start)
	g.m.wait.WithLabelValues(c.team.Name).Observe(waited.Seconds())
	g.dash.wait(c.team.Name, waited) // dashboard.go
	if c.access != nil {
		c.access.wait += waited
		c.access.attempts++
	}
	if err == nil {
		return res, 0, true
	}
	switch {
	case r.Context().Err() != nil:
		return res, 499, false
	case errors.Is(err, context.DeadlineExceeded):
		// Waited out --max-wait, or admission saw that the limits have no room for
		// the call before it would pass (admit.ErrDeadline: refused at once).
		msg := fmt.Sprintf("clade serve: waited %s for the organisation's rate limits (--max-wait); try again later", g.cfg.MaxWait)
		if errors.Is(err, admit.ErrDeadline) {
			msg = fmt.Sprintf("clade serve: the organisation's rate limits have no room for this call within %s (--max-wait); try again later", c.deadline.Sub(start).Round(time.Second))
		}
		writeError(w, http.StatusTooManyRequests, wire.RateLimit, msg, retryAfterHeader(g.cfg.MaxWait/10))
		return res, http.StatusTooManyRequests, false
	}
	g.log.Error("admission failed", "class", c.class, "error", err)
	writeError(w, http.StatusServiceUnavailable, wire.APIError, "clade serve: admission failed; try again later", nil)
	return res, http.StatusServiceUnavailable, false
}

// queue returns class's fair queue.
func (g *Gateway) queue(class string) *fairQueue {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := g.queues[class]
	if q == nil {
		q = g.newFairQueue(class)
		g.queues[class] = q
	}
	return q
}

func (g *Gateway) window(class string) *rateWindow {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.windows[class]
	if w == nil {
		w = &rateWindow{}
		g.windows[class] = w
	}
	return w
}

func (g *Gateway) throttled(c *call, code string) {
	g.m.throttled.WithLabelValues(c.class, code).Inc()
	g.window(c.class).add(g.now(), func(s *rateSlot) {
		if code == "429" {
			s.throttled++
		} else {
			s.overloaded++
		}
	})
}

// spendFailed logs a failure to record a call's cost in the spend store.
func (g *Gateway) spendFailed(err error) {
	g.log.Error("record spend", "error", err)
}

// settle logs a limiter error; the call's answer does not depend on it.
func (g *Gateway) settle(err error) {
	if err != nil {
		g.log.Warn("settle reservation", "error", err)
	}
}

// writeAPIError passes an upstream error on: its status, retry hints and envelope
// (the key scrubbed from it by ReadAPIError).
func writeAPIError(w http.ResponseWriter, ae *upstream.APIError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if ae.RequestID != "" {
		h.Set("request-id", ae.RequestID)
	}
	if ae.HasRetryAfter {
		h.Set("retry-after", fmt.Sprintf("%d", int64((ae.RetryAfter+time.Second-1)/time.Second)))
	}
	switch ae.ShouldRetry {
	case 1:
		h.Set("x-should-retry", "true")
	case -1:
		h.Set("x-should-retry", "false")
	}
	w.WriteHeader(ae.Status)
	w.Write(ae.Body)
}

// relayJSON passes a non-streaming answer on and commits its usage.
func (g *Gateway) relayJSON(w http.ResponseWriter, c *call, att *admit.Attempt, resp *http.Response) int {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONResp+1))
	if err != nil || len(b) > maxJSONResp {
		att.Settle(resp.StatusCode, resp.Header, nil)
		g.log.Warn("upstream answer unreadable", "class", c.class, "request_id", string(g.up.Scrub([]byte(resp.Header.Get("request-id")))), "error", err)
		writeError(w, http.StatusBadGateway, wire.APIError, "clade serve: the upstream answer could not be read", nil)
		return http.StatusBadGateway
	}
	copyHeaders(w.Header(), resp.Header, true)
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
	// The body is parsed once, for the limiter's usage and the budget's cost.
	cu, ok := upstream.MessageUsage(b)
	if !ok {
		att.Settle(resp.StatusCode, resp.Header, nil)
		return resp.StatusCode
	}
	u := admit.Usage{InputTokens: cu.InputTokens, OutputTokens: cu.OutputTokens,
		CacheCreationInputTokens: cu.CacheCreationInputTokens, CacheReadInputTokens: cu.CacheReadInputTokens}
	g.done(c, u)
	cost := c.budget.cost(cu)
	status, header := resp.StatusCode, resp.Header
	c.settleLater(func() {
		att.Settle(status, header, &u)
		c.budget.settle(context.Background(), cost, g.spendFailed)
	})
	return resp.StatusCode
}

// done counts a finished call's usage (its attempt is settled by then).
func (g *Gateway) done(c *call, u admit.Usage) {
	if c.access != nil {
		c.access.usage = &u
	}
	t := c.team.Name
	g.m.tokens.WithLabelValues(t, "input").Add(float64(u.InputTokens))
	g.m.tokens.WithLabelValues(t, "output").Add(float64(u.OutputTokens))
	g.m.tokens.WithLabelValues(t, "cache_read").Add(float64(u.CacheReadInputTokens))
	g.m.tokens.WithLabelValues(t, "cache_write").Add(float64(u.CacheCreationInputTokens))
	if c.class != "" {
		g.window(c.class).add(g.now(), func(s *rateSlot) {
			s.req++
			s.in += u.InputTokens + u.CacheCreationInputTokens
			s.out += u.OutputTokens
		})
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
