package admit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// Reservation is an admitted call: one request, the estimated input and the expected
// output taken from its class's buckets, and a concurrency slot. Finish it exactly once
// with the method that matches what happened to the call; each form without At uses
// Config.Now. Finishing a finished or zero Reservation does nothing and returns nil, so
// `defer r.Cancel()` after Wait is safe.
//
// A Reservation belongs to one goroutine; it is a small value and costs no allocation.
type Reservation struct {
	l     *Limiter
	c     *class
	cost  Cost
	start time.Time
}

// OK reports whether r is live: admitted and not yet finished.
func (r *Reservation) OK() bool { return r.l != nil }

// Cost is what r took from the buckets.
func (r *Reservation) Cost() Cost { return r.cost }

// Class is r's model class.
func (r *Reservation) Class() string {
	if r.c == nil {
		return ""
	}
	return r.c.name
}

// Commit is CommitAt at the current time.
func (r *Reservation) Commit(u Usage, h http.Header) error {
	if r.l == nil {
		return nil
	}
	return r.CommitAt(u, h, r.l.cfg.Now())
}

// CommitAt finishes a call that succeeded: it charges the actual usage in place of the
// reservation (the difference is refunded or charged, and the held output released),
// then resyncs with the response's headers h (nil if none), taken as observed at now.
// Committing before resyncing keeps the call from being counted twice: the server's
// remaining already includes its actual usage.
//
// A stream's headers arrive before its output: resync them on arrival with
// Limiter.ResyncAt, and pass nil here, since the buckets have refilled since.
func (r *Reservation) CommitAt(u Usage, h http.Header, now time.Time) error {
	l, c := r.l, r.c
	if l == nil {
		return nil
	}
	actual := Cost{Requests: 1, InputTokens: c.inputCost(u), OutputTokens: u.OutputTokens}
	var err error
	if e := l.be.Settle(context.Background(), c.name, r.cost, actual, now); e != nil {
		err = fmt.Errorf("commit %s: %w", c.name, e)
	}
	r.finish(Success, now)
	c.wake() // a refund, or released held output, may let the next call in
	if h != nil {
		p := wire.ParseRateLimitHeadersAt(h, now)
		err = errors.Join(err, l.resync(c, &p, now))
	}
	return err
}

// Cancel is CancelAt at the current time.
func (r *Reservation) Cancel() error {
	if r.l == nil {
		return nil
	}
	return r.CancelAt(r.l.cfg.Now())
}

// CancelAt finishes a call that was never sent: everything reserved is refunded.
func (r *Reservation) CancelAt(now time.Time) error {
	return r.refund(Neutral, nil, now)
}

// RateLimited is RateLimitedAt at the current time.
func (r *Reservation) RateLimited(h http.Header) error {
	if r.l == nil {
		return nil
	}
	return r.RateLimitedAt(h, r.l.cfg.Now())
}

// RateLimitedAt finishes a call refused with 429: the server charged nothing, so
// everything is refunded; the buckets resync with h; and, if h carries a retry-after,
// the class pauses until then plus jitter. A 429 without retry-after is the spend cap
// (enforced_spend_limit_reached): nothing pauses, and the caller should stop, as no
// retry succeeds before the month ends. Concurrency is not touched: quota is not load.
func (r *Reservation) RateLimitedAt(h http.Header, now time.Time) error {
	l, c := r.l, r.c
	if l == nil {
		return nil
	}
	if h == nil {
		return r.refund(Neutral, nil, now)
	}
	p := wire.ParseRateLimitHeadersAt(h, now)
	err := r.refund(Neutral, &p, now)
	if p.HasRetryAfter {
		err = errors.Join(err, l.pause(c, p.RetryAfter, now))
	}
	return err
}

// Overloaded is OverloadedAt at the current time.
func (r *Reservation) Overloaded(h http.Header) error {
	if r.l == nil {
		return nil
	}
	return r.OverloadedAt(h, r.l.cfg.Now())
}

// OverloadedAt finishes a call refused with 529 overloaded_error: everything is
// refunded (an overloaded call charges no bucket) and the class's concurrency limit
// shrinks (AIMD). The buckets resync with h if given.
func (r *Reservation) OverloadedAt(h http.Header, now time.Time) error {
	if h == nil {
		return r.refund(Overload, nil, now)
	}
	p := wire.ParseRateLimitHeadersAt(h, now)
	return r.refund(Overload, &p, now)
}

// Fail is FailAt at the current time.
func (r *Reservation) Fail(h http.Header) error {
	if r.l == nil {
		return nil
	}
	return r.FailAt(h, r.l.cfg.Now())
}

// FailAt finishes a call that was sent and failed otherwise (a 5xx other than 529, a
// dropped connection, a stream cut short) with no usage to commit. The reservation
// stays charged, since the server may have counted the call; the buckets resync with
// h if given.
func (r *Reservation) FailAt(h http.Header, now time.Time) error {
	l, c := r.l, r.c
	if l == nil {
		return nil
	}
	var err error
	if e := l.be.Settle(context.Background(), c.name, r.cost, r.cost, now); e != nil {
		err = fmt.Errorf("settle %s: %w", c.name, e)
	}
	r.finish(Neutral, now)
	c.wake() // released held output
	if h != nil {
		p := wire.ParseRateLimitHeadersAt(h, now)
		err = errors.Join(err, l.resync(c, &p, now))
	}
	return err
}

// refund gives back the whole reservation, finishes r with o and resyncs with h.
func (r *Reservation) refund(o Outcome, h *wire.RateLimitHeaders, now time.Time) error {
	l, c := r.l, r.c
	if l == nil {
		return nil
	}
	var err error
	if e := l.be.Settle(context.Background(), c.name, r.cost, Cost{}, now); e != nil {
		err = fmt.Errorf("refund %s: %w", c.name, e)
	}
	r.finish(o, now)
	c.wake()
	if h != nil {
		err = errors.Join(err, l.resync(c, h, now))
	}
	return err
}

// finish returns r's concurrency slots and in-flight counts and marks r finished.
func (r *Reservation) finish(o Outcome, now time.Time) {
	l, c := r.l, r.c
	c.reqs.Add(-1)
	c.in.Add(-r.cost.InputTokens)
	c.out.Add(-r.cost.OutputTokens)
	c.aimd.Release(o, r.start, now)
	l.releaseGlobal()
	r.l = nil
}

// wake tells the waiter at c's gate, if any, to look at the buckets again.
func (c *class) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
