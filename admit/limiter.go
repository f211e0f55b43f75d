package admit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/wire"
)

// ErrBusy is returned by ReserveAt when the concurrency limits (Config.MaxConcurrency
// or the class's AIMD limit) are reached: try again when another reservation ends.
var ErrBusy = errors.New("admit: concurrency limit reached")

// ErrDeadline is returned by Wait (and so by Middleware and Transport) at once when
// the wait for admission would pass the context's deadline: the call could not be
// sent in time, so it is not waited for. The error also matches
// context.DeadlineExceeded with errors.Is.
var ErrDeadline = errors.New("admit: the wait for admission would pass the deadline")

// deadlineError is ErrDeadline with the wait that was needed.
type deadlineError struct{ wait, left time.Duration }

func (e *deadlineError) Error() string {
	return fmt.Sprintf("%v: %v needed, %v left", ErrDeadline, e.wait.Round(time.Millisecond), e.left.Round(time.Millisecond))
}

func (e *deadlineError) Is(target error) bool {
	return target == ErrDeadline || target == context.DeadlineExceeded
}

// Slack of the reported remaining counts (see Reading).
const (
	requestSlack = 1   // requests-remaining is rounded down
	tokenSlack   = 500 // token remaining counts are rounded to the nearest 1,000
)

// Limiter admits calls to the Messages API per model class. It is safe for concurrent
// use. See the package documentation for the model.
type Limiter struct {
	cfg    Config
	be     Backend
	tier   *catalog.Tier // the fixed tier; nil in auto mode
	start  *catalog.Tier // the tier a new class starts from
	global *semaphore.Weighted
	inUse  atomic.Int64 // slots of global taken

	mu      sync.Mutex // serialises adding classes
	classes atomic.Pointer[map[string]*class]

	randMu sync.Mutex // guards cfg.Rand

	warm warmPrefixes // the prompt-cache prefixes known to be warm (cachewarm.go)
}

// class is the limiter's local state for one model class; the buckets are in the
// backend.
type class struct {
	name       string
	cacheReads bool   // cache reads count toward ITPM (the † classes)
	ceiling    Limits // fixed mode: the tier's limits, which headers cannot raise
	gate       chan struct{}
	kick       chan struct{} // a refund may let the waiter at the gate in sooner
	aimd       *AIMD
	// In flight: reservations not yet finished, and what they hold.
	reqs, in, out atomic.Int64
}

// New returns a Limiter for cfg, with defaults applied to its zero fields.
func New(cfg Config) (*Limiter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("admit config: %w", err)
	}
	l := &Limiter{cfg: cfg, be: cfg.Backend, global: semaphore.NewWeighted(int64(cfg.MaxConcurrency))}
	l.start, _ = cfg.Catalog.Tier(cfg.StartTier)
	if cfg.Tier != TierAuto {
		l.tier, _ = cfg.Catalog.Tier(cfg.Tier)
		l.start = l.tier
	}
	empty := map[string]*class{}
	l.classes.Store(&empty)
	return l, nil
}

// Estimator is the Estimator of Config.Estimator: the one Prepare estimates with and
// settled attempts calibrate.
func (l *Limiter) Estimator() *Estimator { return l.cfg.Estimator }

// class returns the local state of name, creating it (and the backend's buckets, from
// the start tier) on first use.
func (l *Limiter) class(name string) (*class, error) {
	if c, ok := (*l.classes.Load())[name]; ok {
		return c, nil
	}
	return l.addClass(name)
}

func (l *Limiter) addClass(name string) (*class, error) {
	cc, ok := l.cfg.Catalog.Classes[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownClass, name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.classes.Load()
	if c, ok := old[name]; ok {
		return c, nil
	}
	cl := l.start.ClassLimits(name)
	lim := Limits{RPM: cl.RPM, ITPM: cl.ITPM, OTPM: cl.OTPM}
	spec := Spec{Limits: lim, Burst: l.cfg.Burst, Headroom: l.cfg.Headroom}
	if err := l.be.Init(context.Background(), name, spec, l.cfg.Now()); err != nil {
		return nil, fmt.Errorf("init class %s: %w", name, err)
	}
	a, err := NewAIMD(l.cfg.AIMD)
	if err != nil {
		return nil, err
	}
	c := &class{
		name: name, cacheReads: cc.CacheReadsCountITPM, aimd: a,
		gate: make(chan struct{}, 1), kick: make(chan struct{}, 1),
	}
	if l.tier != nil {
		c.ceiling = lim
	}
	next := make(map[string]*class, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = c
	l.classes.Store(&next)
	return c, nil
}

// ClassOf returns the model class of a model id or clade alias, for Reserve and Wait.
func (l *Limiter) ClassOf(model string) (string, error) {
	m, err := l.cfg.Catalog.Resolve(model)
	if err != nil {
		return "", err
	}
	return m.Class, nil
}

// Need is what one call is expected to use. Every call also takes one request.
type Need struct {
	// InputTokens is the estimate of the tokens that count toward ITPM: uncached input
	// and cache writes, and cache reads on the classes that count them. When unsure
	// whether a prefix will be read from the cache, count it; Commit refunds.
	InputTokens int64
	// OutputTokens is the output expected, not max_tokens: OTPM counts only generated
	// tokens, and Commit charges or refunds the difference. Reserving it keeps the
	// output of calls in flight, which the server has not counted yet, out of the
	// budget the limiter hands to the next call.
	OutputTokens int64
}

func (n Need) cost() (Cost, error) {
	if n.InputTokens < 0 || n.OutputTokens < 0 {
		return Cost{}, fmt.Errorf("admit: negative need %+v", n)
	}
	return Cost{Requests: 1, InputTokens: n.InputTokens, OutputTokens: n.OutputTokens}, nil
}

// Usage is a response's usage, the fields that count toward the limits.
type Usage struct {
	InputTokens              int64
	CacheCreationInputTokens int64
	CacheReadInputTokens     int64
	OutputTokens             int64
}

// InputCost returns what u charges to class's ITPM bucket: input and cache writes,
// and cache reads only on the classes that count them (the † models).
func (l *Limiter) InputCost(class string, u Usage) (int64, error) {
	c, err := l.class(class)
	if err != nil {
		return 0, err
	}
	return c.inputCost(u), nil
}

func (c *class) inputCost(u Usage) int64 {
	n := u.InputTokens + u.CacheCreationInputTokens
	if c.cacheReads {
		n += u.CacheReadInputTokens
	}
	return n
}

// Reserve is ReserveAt at the current time.
func (l *Limiter) Reserve(class string, n Need) (Reservation, time.Duration, error) {
	return l.ReserveAt(class, n, l.cfg.Now())
}

// ReserveAt admits a call to class at now without blocking. If it fits, it returns a
// live Reservation and a zero wait; the caller sends the call and then finishes the
// reservation (Commit, Cancel, RateLimited, Overloaded or Fail). If the buckets (or a
// pause) refuse it, it returns a zero Reservation and how long until it would fit:
// sleep that long and try again. If the concurrency limits refuse it, it returns
// ErrBusy. ReserveAt does not queue; Wait does.
func (l *Limiter) ReserveAt(class string, n Need, now time.Time) (Reservation, time.Duration, error) {
	c, err := l.class(class)
	if err != nil {
		return Reservation{}, 0, err
	}
	cost, err := n.cost()
	if err != nil {
		return Reservation{}, 0, err
	}
	if !l.global.TryAcquire(1) {
		return Reservation{}, 0, ErrBusy
	}
	l.inUse.Add(1)
	if !c.aimd.TryAcquire() {
		l.releaseGlobal()
		return Reservation{}, 0, ErrBusy
	}
	wait, err := l.be.Reserve(context.Background(), c.name, cost, now)
	if err != nil || wait > 0 {
		c.aimd.Release(Neutral, now, now)
		l.releaseGlobal()
		if err != nil {
			err = fmt.Errorf("reserve %s: %w", c.name, err)
		}
		return Reservation{}, wait, err
	}
	return l.admitted(c, cost, now), 0, nil
}

// Wait admits a call to class, blocking until it fits or ctx ends. When ctx has a
// deadline that the wait would pass, Wait returns ErrDeadline at once instead of
// waiting for it (a call that waits in the queue behind others returns it when its
// turn comes). Waiters of one class queue in FIFO order and only the first waits on the buckets, sleeping until
// they would admit it (or a refund arrives) rather than polling; so after a pause
// waiters leave one at a time, each re-checking the buckets, not as a herd.
// The first waiter holds its concurrency slots while it waits for tokens.
func (l *Limiter) Wait(ctx context.Context, class string, n Need) (Reservation, error) {
	return l.wait(ctx, class, n, nil)
}

// wait is Wait; with need non-nil, the first waiter takes the call's Need from it
// each time it looks at the buckets (Call.Admit: a prompt-cache prefix that turned
// warm meanwhile takes less), and n is only checked.
func (l *Limiter) wait(ctx context.Context, class string, n Need, need func() Need) (Reservation, error) {
	c, err := l.class(class)
	if err != nil {
		return Reservation{}, err
	}
	cost, err := n.cost()
	if err != nil {
		return Reservation{}, err
	}
	select {
	case c.gate <- struct{}{}:
	default:
		select {
		case c.gate <- struct{}{}:
		case <-ctx.Done():
			return Reservation{}, ctx.Err()
		}
	}
	r, err := l.waitAtGate(ctx, c, cost, need)
	<-c.gate
	return r, err
}

func (l *Limiter) waitAtGate(ctx context.Context, c *class, cost Cost, need func() Need) (Reservation, error) {
	if err := ctx.Err(); err != nil {
		return Reservation{}, err
	}
	if !l.global.TryAcquire(1) {
		if err := l.global.Acquire(ctx, 1); err != nil {
			return Reservation{}, err
		}
	}
	l.inUse.Add(1)
	if !c.aimd.TryAcquire() {
		if err := c.aimd.Acquire(ctx); err != nil {
			l.releaseGlobal()
			return Reservation{}, err
		}
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if need != nil {
			cost, _ = need().cost() // a Call's Need is never negative
		}
		now := l.cfg.Now()
		wait, err := l.be.Reserve(ctx, c.name, cost, now)
		if err == nil && wait == 0 {
			return l.admitted(c, cost, now), nil
		}
		if dl, ok := ctx.Deadline(); err == nil && ok && now.Add(wait).After(dl) {
			err = &deadlineError{wait: wait, left: dl.Sub(now)}
		}
		if err == nil {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
				continue
			case <-c.kick:
				continue
			case <-ctx.Done():
				err = ctx.Err()
			}
		} else {
			err = fmt.Errorf("reserve %s: %w", c.name, err)
		}
		c.aimd.Release(Neutral, now, now)
		l.releaseGlobal()
		return Reservation{}, err
	}
}

func (l *Limiter) releaseGlobal() {
	l.inUse.Add(-1)
	l.global.Release(1)
}

func (l *Limiter) admitted(c *class, cost Cost, now time.Time) Reservation {
	c.reqs.Add(1)
	c.in.Add(cost.InputTokens)
	c.out.Add(cost.OutputTokens)
	return Reservation{l: l, c: c, cost: cost, start: now}
}

// Pause is PauseAt at the current time.
func (l *Limiter) Pause(class string, retryAfter time.Duration) error {
	return l.PauseAt(class, retryAfter, l.cfg.Now())
}

// PauseAt refuses class until now + retryAfter + a random jitter in [0,
// Config.PauseJitter). Reservation.RateLimited calls it; call it directly for a 429 seen
// outside a reservation.
func (l *Limiter) PauseAt(class string, retryAfter time.Duration, now time.Time) error {
	c, err := l.class(class)
	if err != nil {
		return err
	}
	return l.pause(c, retryAfter, now)
}

func (l *Limiter) pause(c *class, retryAfter time.Duration, now time.Time) error {
	var jitter time.Duration
	if l.cfg.PauseJitter > 0 {
		l.randMu.Lock()
		jitter = time.Duration(l.cfg.Rand.Int64N(int64(l.cfg.PauseJitter)))
		l.randMu.Unlock()
	}
	if err := l.be.Pause(context.Background(), c.name, now.Add(max(retryAfter, 0)+jitter)); err != nil {
		return fmt.Errorf("pause %s: %w", c.name, err)
	}
	return nil
}

// Resync is ResyncAt at the current time.
func (l *Limiter) Resync(class string, h http.Header) error {
	return l.ResyncAt(class, h, l.cfg.Now())
}

// ResyncAt applies a response's anthropic-ratelimit-* headers h, received at now, to class: limits
// are adopted (auto mode) or lowered (fixed tier), and each level is lowered to what
// the server reports plus its rounding when that is lower (see Reading). The
// Reservation methods call it with the response's headers; call it directly only for
// responses outside a reservation.
func (l *Limiter) ResyncAt(class string, h http.Header, now time.Time) error {
	c, err := l.class(class)
	if err != nil || h == nil {
		return err
	}
	p := wire.ParseRateLimitHeadersAt(h, now)
	return l.resync(c, &p, now)
}

func (l *Limiter) resync(c *class, h *wire.RateLimitHeaders, now time.Time) error {
	if h == nil {
		return nil
	}
	r := Report{
		Requests:     reading(h.Requests, c.ceiling.RPM, requestSlack),
		InputTokens:  reading(h.InputTokens, c.ceiling.ITPM, tokenSlack),
		OutputTokens: reading(h.OutputTokens, c.ceiling.OTPM, tokenSlack),
	}
	if !r.Requests.Valid && !r.InputTokens.Valid && !r.OutputTokens.Valid {
		return nil
	}
	if err := l.be.Sync(context.Background(), c.name, r, now); err != nil {
		return fmt.Errorf("sync %s: %w", c.name, err)
	}
	return nil
}

// reading converts one reported limit; ceiling (fixed mode) caps the limit adopted.
func reading(s wire.LimitState, ceiling, slack int64) Reading {
	if !s.Valid {
		return Reading{}
	}
	lim := s.Limit
	if ceiling > 0 && (lim <= 0 || lim > ceiling) {
		lim = ceiling
	}
	return Reading{Valid: true, Limit: lim, Remaining: max(s.Remaining, 0), Slack: slack}
}
