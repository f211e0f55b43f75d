package admit

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/clade-dev/clade/internal/cacheprefix"
)

// Call is one Messages call as admission sees it: its model class and what it is
// expected to use, estimated once from its body (Prepare). Each attempt to send it
// is admitted with Admit and settled from its answer with the Attempt's methods.
// This is the admission loop of Middleware, of clade serve and of clade run: one
// estimate, one wait, one table from an answer to what the buckets are charged.
type Call struct {
	l     *Limiter
	class string
	model string
	est   int64 // EstimateInput of the body, for calibration
	need  Need
	base  int64 // the input estimate of the whole prompt (need's before ExpectCacheRead)
	// cacheReads: the class counts cache reads toward ITPM (cache_reads_count_itpm).
	cacheReads bool
	// prefix is the body's cacheable prefix (cachewarm.go); zero for none.
	prefix cacheprefix.Prefix
}

// Prepare estimates a Messages request body for admission. It reports false for a
// call admission does not pace, to be sent as it is: a body that is not JSON or has
// no model, a model the catalog does not know (newer than it, or misspelt: the API
// answers). A body with a cacheable prefix reserves less once the prefix is warm
// (see Need).
func (l *Limiter) Prepare(body []byte) (*Call, bool) {
	var p struct {
		Model     string `json:"model"`
		MaxTokens int64  `json:"max_tokens"`
	}
	if json.Unmarshal(body, &p) != nil || p.Model == "" {
		return nil, false
	}
	return l.PrepareBody(body, p.Model, p.MaxTokens, EstimateInput(body))
}

// PrepareBody is Prepare for a caller that has read the body already: its model,
// max_tokens and EstimateInput estimate est. body is read only when it contains
// "cache_control", for its prompt-cache prefix.
func (l *Limiter) PrepareBody(body []byte, model string, maxTokens, est int64) (*Call, bool) {
	c, ok := l.PrepareFor(model, maxTokens, est)
	if ok && !c.cacheReads {
		c.prefix = cachePrefix(model, l.cfg.Catalog.Classes[c.class].MinCacheTokens, body)
	}
	return c, ok
}

// PrepareFor is PrepareBody without the body: the call has no prompt-cache prefix
// the limiter knows of. A caller that knows when its prefixes are warm (clade run's
// scheduler) says so with ExpectCacheRead.
func (l *Limiter) PrepareFor(model string, maxTokens, est int64) (*Call, bool) {
	m, err := l.cfg.Catalog.Resolve(model)
	if err != nil {
		return nil, false
	}
	e := l.cfg.Estimator
	in := e.Input(model, est)
	cc := l.cfg.Catalog.Class(m)
	return &Call{l: l, class: m.Class, model: model, est: est, base: in, cacheReads: cc != nil && cc.CacheReadsCountITPM,
		need: Need{InputTokens: in, OutputTokens: e.Output(model, max(maxTokens, 0))}}, true
}

// Class is the call's model class.
func (c *Call) Class() string { return c.class }

// Need is what the next attempt reserves. For input it is the estimate of the whole
// prompt, except: when the body's prompt-cache prefix is warm in this Limiter (an
// answer to a call with it has started within its TTL, and the class does not count
// cache reads toward ITPM), the estimate less the prefix; after ExpectCacheRead, what
// it set.
func (c *Call) Need() Need {
	n := c.need
	if c.prefix.Tokens > 0 && c.l.warm.warm(c.prefix.Key, c.l.cfg.Now()) {
		n.InputTokens = c.lessRead(c.prefix.Tokens)
	}
	return n
}

// SetInputTokens replaces the input estimate by a count known to be exact (the
// API's count_tokens); calibration still uses the body's estimate.
func (c *Call) SetInputTokens(n int64) {
	c.base = max(n, 0)
	c.need.InputTokens = c.base
}

// ExpectCacheRead sets what each attempt reserves for input to the estimate less a
// prefix of tokens (counted as EstimateInput counts; the Estimator calibrates it as
// it does the whole prompt) that the caller expects the API to read from the prompt
// cache, as cache reads take no ITPM. On a class marked cache_reads_count_itpm, or
// for tokens 0, the whole estimate is reserved. Settling corrects a wrong guess with
// the answer's usage.
func (c *Call) ExpectCacheRead(tokens int64) { c.need.InputTokens = c.lessRead(tokens) }

// Admit waits under ctx until the buckets have room for one attempt (Limiter.Wait:
// ErrDeadline at once when the wait would pass ctx's deadline) and returns it, to
// be settled exactly once.
func (c *Call) Admit(ctx context.Context) (*Attempt, error) {
	var need func() Need
	if c.prefix.Tokens > 0 {
		need = c.Need // the prefix may turn warm while the call waits
	}
	r, err := c.l.wait(ctx, c.class, c.Need(), need)
	if err != nil {
		return nil, err
	}
	return &Attempt{c: c, r: r}, nil
}

// Attempt is one admitted attempt of a Call. Settle it once, with the method that
// matches what happened; later calls do nothing. Methods on a nil *Attempt do
// nothing, so a call admission does not pace can go through the same code.
type Attempt struct {
	c       *Call
	r       Reservation
	once    sync.Once
	started sync.Once // StreamStarted
}

// Cost is what the attempt reserved.
func (a *Attempt) Cost() Cost {
	if a == nil {
		return Cost{}
	}
	return a.r.Cost()
}

// Cancel settles an attempt that was never sent: everything is refunded.
func (a *Attempt) Cancel() {
	if a == nil {
		return
	}
	a.once.Do(func() { a.c.l.settled(a.c.class, a.r.Cancel()) })
}

// Settle settles the attempt from its answer: status 0 when there was none (a
// dropped connection, a timeout), h the answer's headers (nil if none), u its usage
// when status is 2xx and the answer was read whole (nil otherwise). The table:
//
//	2xx with usage      commit the usage (and calibrate the estimates with it)
//	2xx without usage   keep the charge (an answer cut short or unreadable)
//	429                 refund; a retry-after pauses the class for every caller
//	529                 refund; the class's concurrency shrinks
//	other 4xx           one request, no tokens (refused before generating)
//	5xx, or no answer   keep the charge (the API may have counted the call)
//
// Every answer's headers resync the buckets.
func (a *Attempt) Settle(status int, h http.Header, u *Usage) {
	if a == nil {
		return
	}
	a.once.Do(func() {
		l, r := a.c.l, &a.r
		var err error
		switch {
		case status == http.StatusTooManyRequests:
			err = r.RateLimited(h)
		case status == 529:
			err = r.Overloaded(h)
		case status >= 500 || status == 0:
			err = r.Fail(h)
		case status >= 400:
			err = r.Commit(Usage{}, h)
		case u != nil:
			a.c.cached(r.start, *u)
			err = r.Commit(*u, h)
			l.cfg.Estimator.Observe(a.c.model, a.c.est, u.InputTokens+u.CacheCreationInputTokens+u.CacheReadInputTokens, u.OutputTokens)
		default:
			err = r.Fail(h)
		}
		l.settled(a.c.class, err)
	})
}

// SettleStream settles a streamed answer with what its events showed (su): a
// complete stream commits its usage and calibrates the estimates; one cut short
// after it started commits its input and at least the output reserved (the API
// charged what it generated up to the cut, which the last usage seen may not
// include); one that never started keeps the charge. Resync the stream's headers
// when they arrive (Limiter.Resync): the buckets have refilled since.
func (a *Attempt) SettleStream(su *StreamUsage) {
	if a == nil {
		return
	}
	if su.Complete() {
		u := su.Usage()
		a.Settle(http.StatusOK, nil, &u)
		return
	}
	a.once.Do(func() {
		a.StreamStarted(su)
		a.c.l.settled(a.c.class, su.Settle(&a.r))
	})
}

// StreamStarted tells the attempt that its stream su may have begun: once su has
// seen message_start, the call's prompt-cache prefix is warm (or forgotten, if the
// answer neither wrote nor read it) from then on, not only when the stream is
// settled. Call it after each event passed on; it acts once, and costs nothing for
// a call without a prefix.
func (a *Attempt) StreamStarted(su *StreamUsage) {
	if a == nil || a.c.prefix.Tokens == 0 || !su.Started() {
		return
	}
	a.started.Do(func() { a.c.cached(a.r.start, su.Usage()) })
}

// Response settles the attempt from an answer that is being passed on: an error
// answer at once (its body untouched), a 2xx as its body is read: a JSON answer's
// usage when the body reaches its end, a stream's as its events pass (its headers
// resync the buckets now). The returned response, whose body must be read and
// closed as usual, is resp with that body.
func (a *Attempt) Response(resp *http.Response) *http.Response {
	if a == nil {
		return resp
	}
	switch {
	case resp.StatusCode >= 300 || resp.StatusCode < 200:
		a.Settle(resp.StatusCode, resp.Header, nil)
	case isEventStream(resp.Header):
		a.c.l.settled(a.c.class, a.c.l.Resync(a.c.class, resp.Header))
		resp.Body = &streamTap{a: a, rc: resp.Body}
	default:
		resp.Body = &jsonTap{a: a, rc: resp.Body, header: resp.Header}
	}
	return resp
}
