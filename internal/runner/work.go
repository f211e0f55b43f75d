package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
	"github.com/clade-dev/clade/internal/wire"
)

// do is the jobs.WorkFunc: one request, tried until it has a result or must wait.
func (r *run) do(jobCtx context.Context, job *jobs.Job) (jobs.Result, error) {
	req := job.Request
	// ctx also ends when the run drains: a request that has not been sent yet goes
	// back to the queue (Snooze does not count the attempt); one in flight finishes.
	ctx, cancel := context.WithCancel(jobCtx)
	defer cancel()
	go func() {
		select {
		case <-r.draining:
			cancel()
		case <-ctx.Done():
		}
	}()
	requeue := func(err error) (jobs.Result, error) {
		if jobCtx.Err() != nil {
			return jobs.Result{}, jobCtx.Err() // shutdown: River puts the job back
		}
		if ctx.Err() != nil {
			return jobs.Result{}, jobs.Snooze(0) // drained
		}
		return jobs.Result{}, err
	}
	select {
	case <-r.stop:
		return jobs.Result{}, jobs.Snooze(2 * time.Second)
	default:
	}
	model, params, err := r.route(req)
	if err != nil {
		return errored(wire.InvalidRequest, err.Error()), nil
	}
	estIn, exact := req.EstInputTokens, int64(0)
	if r.cfg.CountTokens {
		if n, err := r.countTokens(ctx, params); err == nil {
			estIn, exact = n, n
		}
	}
	// Stop before the budget could be exceeded: once admitted, hold this request's
	// worst case (its estimate, with its whole max_tokens as output) while it is in
	// flight and until it has a result (a job waiting for admission or for its
	// prefix's warming answer holds none).
	var hold *spend.Hold
	defer func() {
		if hold != nil {
			hold.Release() // a no-op once succeeded1 settled it
		}
	}()

	overloads := 0 // 529s in a row, for the fallback model
	failures := 0  // failed attempts that count toward MaxAttempts (not 429 waits)
	var lastErr error
	r.retries.Request()
	call, err := r.prepare(model, req, exact)
	if err != nil {
		return errored(wire.InvalidRequest, err.Error()), nil
	}
	for calls := 0; ; calls++ {
		if failures > 0 || calls > 0 {
			if failures >= r.cfg.MaxAttempts || calls >= 10*r.cfg.MaxAttempts {
				return errorResult(lastErr), nil
			}
			r.retried.Add(1)
		}
		tk, att, err := r.admit(ctx, model, req, call)
		if err != nil {
			return requeue(err) // drained or shut down: back to the queue
		}
		if hold == nil {
			if hold, err = r.usd.Hold(spend.WorstCase(r.cat, model, r.lim.Estimator().Input(model.ID, estIn), req.MaxTokens, false)); err != nil {
				att.Cancel()
				tk.finish(errNotSent)
				r.halt(fmt.Sprintf("the budget of $%.2f would be exceeded", r.cfg.Budget), nil)
				return jobs.Result{}, jobs.Snooze(2 * time.Second)
			}
		}
		r.sent.Add(1)
		r.class(model).sent.Add(1)
		// Once sent, a request finishes even when the run drains; only an abort
		// (the job's own context) cuts it.
		r.inFlight.Add(1)
		resp, err := r.call(tk.trace(jobCtx), params, req.MaxTokens, tk.warms())
		r.inFlight.Add(-1)
		tk.finish(err)
		if err == nil {
			u := admit.Usage{
				InputTokens: resp.Usage.InputTokens, CacheCreationInputTokens: resp.Usage.CacheCreationInputTokens,
				CacheReadInputTokens: resp.Usage.CacheReadInputTokens, OutputTokens: resp.Usage.OutputTokens,
			}
			att.Settle(resp.Status, resp.Header, &u) // commits and calibrates
			return r.succeeded1(model, resp, hold), nil
		}
		lastErr = err
		var ae *upstream.APIError
		errors.As(err, &ae)
		class := upstream.Classify(err)
		// The answer settles the attempt (admit's one table: a 429 pauses the class
		// until retry-after plus jitter, a 529 shrinks concurrency, another 4xx takes
		// one request, a 5xx or no answer keeps the charge), except a call cut off
		// by the run's own abort, which never counted.
		if class == upstream.Canceled {
			att.Cancel()
		} else if ae != nil {
			att.Settle(ae.Status, ae.Header, nil)
		} else {
			att.Settle(0, nil, nil)
		}
		switch class {
		case upstream.Canceled:
			return requeue(err)
		case upstream.RateLimited:
			r.rateLimited.Add(1)
			r.m.rateLimited.Inc()
		case upstream.Overloaded:
			failures++
			r.overloaded.Add(1)
			r.m.overloaded.Inc()
			overloads++
			if fb := r.fallback(overloads); fb != nil && fb.ID != model.ID {
				p, perr := wire.SetTopLevelString(params, "model", fb.ID)
				if perr == nil {
					if c, err := r.prepare(fb, req, exact); err == nil {
						r.log.Info("fallback model", "custom_id", req.CustomID, "from", model.ID, "to", fb.ID)
						model, params, call = fb, p, c
					}
				}
			}
			if !r.retryWait(ctx, failures, err) {
				return requeue(fmt.Errorf("retry budget spent: %w", err))
			}
		case upstream.Retry:
			failures++
			if !r.retryWait(ctx, failures, err) {
				return requeue(fmt.Errorf("retry budget spent: %w", err))
			}
		case upstream.Stop:
			r.halt(stopReason(err), err)
			return jobs.Result{}, jobs.Snooze(2 * time.Second)
		default: // Final
			return errorResult(err), nil
		}
	}
}

// admit waits until call, req sent to model, may go. A request with a cacheable
// prefix first waits for the prefix's warming request to start answering, or
// warms it (tk: its place in the prefix's schedule; nil without a prefix), and
// reserves for a cache read when it is warm; then admission, after which the
// ticket settles how it is sent (ticket.settle: a read whose prefix went cold
// while it waited warms it, admitted again for the whole prompt).
func (r *run) admit(ctx context.Context, model *catalog.Model, req jobs.Request, call *admit.Call) (*ticket, *admit.Attempt, error) {
	var tk *ticket
	if prefix, cached := r.cachePrefix(model, req.Cache); cached {
		var err error
		if tk, err = r.sched.acquire(ctx, model.ID, prefix); err != nil {
			return nil, nil, err
		}
		r.reserve(call, prefix, tk)
	}
	att, err := call.Admit(ctx)
	if err == nil {
		tk.admitted()
		att, err = tk.settle(ctx, call, att)
	}
	if err != nil {
		tk.finish(errNotSent)
		return nil, nil, err
	}
	return tk, att, nil
}

// prepare makes the admission Call of req sent to m, from what the import read of it
// (max_tokens, the input estimate); exact, when positive, is the API's count of its
// input tokens (--count-tokens) and replaces the estimate.
func (r *run) prepare(m *catalog.Model, req jobs.Request, exact int64) (*admit.Call, error) {
	call, ok := r.lim.PrepareFor(m.ID, req.MaxTokens, req.EstInputTokens)
	if !ok {
		return nil, fmt.Errorf("params.model: %s is not in the limiter's catalog", m.ID)
	}
	if exact > 0 {
		call.SetInputTokens(exact)
	}
	return call, nil
}

// retryWait sleeps before retry number failures, within the retry budget. It
// reports false when the budget is spent or ctx ended; the job then goes back to
// River, which retries it later.
func (r *run) retryWait(ctx context.Context, failures int, err error) bool {
	if failures >= r.cfg.MaxAttempts {
		return true // the loop turns it into an errored result
	}
	if !r.retries.Allow() {
		return false
	}
	return sleep(ctx, r.backoff.Delay(failures, err))
}

// route returns the model a request uses and its params with that model set.
func (r *run) route(req jobs.Request) (*catalog.Model, []byte, error) {
	name := r.cfg.Routing.Pick(req.CustomID, req.Model, req.EstInputTokens)
	m, err := r.cat.Resolve(name)
	if err != nil {
		return nil, nil, fmt.Errorf("model: %v", err)
	}
	params := []byte(req.Params)
	if m.ID != req.Model {
		if params, err = wire.SetTopLevelString(params, "model", m.ID); err != nil {
			return nil, nil, fmt.Errorf("params: %v", err)
		}
	}
	return m, params, nil
}

func (r *run) fallback(overloads int) *catalog.Model {
	rt := r.cfg.Routing
	if rt == nil || rt.Fallback == "" {
		return nil
	}
	after := rt.FallbackAfter
	if after <= 0 {
		after = 3
	}
	if overloads < after {
		return nil
	}
	m, err := r.cat.Resolve(rt.Fallback)
	if err != nil {
		return nil
	}
	return m
}

// countTokens asks count_tokens for params' exact input tokens. Fields count_tokens
// does not take are left out of the body it gets.
func (r *run) countTokens(ctx context.Context, params []byte) (int64, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(params, &top); err != nil {
		return 0, err
	}
	for _, k := range []string{"max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata", "service_tier", "container", "inference_geo"} {
		delete(top, k)
	}
	body, err := json.Marshal(top)
	if err != nil {
		return 0, err
	}
	tc, err := r.cfg.Client.CountTokens(ctx, body)
	if err != nil {
		return 0, err
	}
	return tc.InputTokens, nil
}

// succeeded1 is the result of a successful response, whose cost settles hold.
func (r *run) succeeded1(m *catalog.Model, resp *upstream.Response, hold *spend.Hold) jobs.Result {
	cu := spend.Usage(resp.Usage)
	cost := spend.Cost(r.cat, m, cu, false)
	in := cu.InputTokens + cu.CacheWrite5mTokens + cu.CacheWrite1hTokens + cu.CacheReadTokens
	r.inTok.Add(in)
	r.outTok.Add(cu.OutputTokens)
	r.cacheRead.Add(cu.CacheReadTokens)
	r.cacheWrite.Add(cu.CacheWrite5mTokens + cu.CacheWrite1hTokens)
	r.uncached.Add(cu.InputTokens)
	if cu.CacheReadTokens+cu.CacheWrite5mTokens+cu.CacheWrite1hTokens > 0 {
		plain := spend.Cost(r.cat, m, catalog.Usage{InputTokens: in, OutputTokens: cu.OutputTokens}, false)
		r.cacheSaved.Add(int64(spend.FromUSD(plain - cost)))
	}
	cc := r.class(m)
	cc.in.Add(in)
	cc.out.Add(cu.OutputTokens)
	hold.Settle(spend.FromUSD(cost))
	r.m.tokens.WithLabelValues("input").Add(float64(cu.InputTokens + cu.CacheWrite5mTokens + cu.CacheWrite1hTokens + cu.CacheReadTokens))
	r.m.tokens.WithLabelValues("output").Add(float64(cu.OutputTokens))
	r.m.cost.Add(cost)
	return jobs.Result{Type: jobs.Succeeded, Message: resp.Body, Usage: cu, CostUSD: cost}
}

func errored(errType, msg string) jobs.Result {
	return jobs.Result{Type: jobs.Errored, Error: jobs.ErrorEnvelope(errType, msg, "")}
}

// errorResult turns a final error into an errored result with the API's envelope.
func errorResult(err error) jobs.Result {
	var ae *upstream.APIError
	if errors.As(err, &ae) && len(ae.Body) > 0 {
		return jobs.Result{Type: jobs.Errored, Error: ae.Body}
	}
	if err == nil {
		return errored(wire.APIError, "request failed")
	}
	return errored(wire.APIError, err.Error())
}

func stopReason(err error) string {
	var ae *upstream.APIError
	if errors.As(err, &ae) {
		if ae.ErrorCode != "" {
			return fmt.Sprintf("%d %s (%s): %s", ae.Status, ae.Type, ae.ErrorCode, ae.Message)
		}
		return fmt.Sprintf("%d %s: %s", ae.Status, ae.Type, ae.Message)
	}
	return err.Error()
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
