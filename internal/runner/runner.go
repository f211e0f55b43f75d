package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
)

// ErrStopped is returned by Run when the API refused every request until a person
// acts (a spend cap, a bad key, billing): the run stopped cleanly and can resume.
var ErrStopped = errors.New("run stopped")

// stoppedError is ErrStopped with why, and the API's answer that stopped the run
// (an *upstream.APIError; nil for a budget stop), for callers that say what to do.
type stoppedError struct {
	why   string
	cause error
}

func (e *stoppedError) Error() string { return ErrStopped.Error() + ": " + e.why }

func (e *stoppedError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrStopped}
	}
	return []error{ErrStopped, e.cause}
}

// ErrLostStore is returned by Run when the store did not hear from this process
// for its dead-after window (jobs.DefaultDeadAfter): the store was unreachable,
// and other processes working the run take its jobs. Run the same command again
// to rejoin.
var ErrLostStore = errors.New("this process lost its place in the store (unreachable too long); the other processes on the run take its jobs")

// lostStopWait bounds how long a process the store lost waits for its workers
// to stop: their commits cannot reach the store.
const lostStopWait = 5 * time.Second

// closed is a channel that is always closed.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Config configures a Run. Store, Client and Input (in the Spec) are required;
// the Spec's Tier defaults to "auto" (learn the limits from the headers).
type Config struct {
	lifecycle.Spec
	// MaxConcurrency caps requests in flight, at most MaxConcurrency. Default 256.
	MaxConcurrency int
	// MaxAttempts is how many times a request is tried in all before it is errored.
	// Default 10.
	MaxAttempts int
	// Routing picks models; nil keeps each line's model (aliases resolved).
	Routing *Routing
	// CountTokens asks the API's count_tokens for exact input counts.
	CountTokens bool
	// BudgetHeld is held back from Budget, in micro-dollars, for spend the run does
	// not see while it works: the worst case of requests in open batches, whose
	// results the batch and hybrid modes read while realtime workers run. Default 0.
	BudgetHeld spend.Micros
	// ProgressEvery is the display period. Default 1 s.
	ProgressEvery time.Duration
	// Abort, when closed, cancels requests in flight (the second Ctrl-C); they return
	// to the queue. Cancelling Run's ctx only drains.
	Abort <-chan struct{}
	// Limiter, when set, is used instead of one built from Tier (tests, gateways).
	Limiter *admit.Limiter
	// StreamAbove sends a request whose max_tokens is above it as a stream
	// (upstream.Client.MessagesStream: no 10-minute limit, an idle timeout instead),
	// so long answers are not cut, retried and paid again. The result is the same.
	// Default 0: DefaultStreamAbove (21,333, the SDKs' rule); StreamNever (-1) and
	// StreamAlways (-2) send no request or every request as a stream.
	StreamAbove int64
	// CacheScheduleOff turns prompt-cache scheduling off: requests with a
	// cache_control prefix are sent in queue order at full concurrency, like the
	// others. Default false: one warming request per prefix first, the rest once
	// its answer has started (docs/run.md, "Prompt caching").
	CacheScheduleOff bool
	// Test holds hooks for tests; leave it zero.
	Test TestHooks
}

// TestHooks are the runner's hooks for tests (crash tests, fault injection).
type TestHooks struct {
	// BeforeCommit is passed to the jobs client: it runs before a result's
	// transaction commits, and an error there is a crash at that point.
	BeforeCommit func(ctx context.Context, job *jobs.Job) error
	// Heartbeat sets this process's heartbeat in the store (jobs.WithHeartbeat);
	// default jobs.DefaultHeartbeatInterval and DefaultDeadAfter.
	Heartbeat []jobs.WorkerOption
	// Now is the prompt-cache scheduler's clock (TTLs); default time.Now. With
	// one set, the prefixes' warmth is this process's only: the store's clock,
	// which processes share, cannot follow it.
	Now func() time.Time
	// CacheNotShared keeps the prefixes' warmth this process's only, as before
	// it was shared through the store (a baseline).
	CacheNotShared bool
	// OneWorkerPerSlot works MaxConcurrency jobs at once even with cacheable
	// prefixes, as before cacheWorkers (a baseline).
	OneWorkerPerSlot bool
	// UnboundedWarmers lets any number of warming requests wait for admission,
	// as before maxWarmersWaiting (a baseline).
	UnboundedWarmers bool
	// CachePoll and CacheClaimTimeout set how often a process waiting for
	// another's warming request reads the store, and how long a warming claim
	// lasts at most; defaults 100 ms and 2 minutes (cacheshare.go).
	CachePoll, CacheClaimTimeout time.Duration
}

// Summary is what a run did: the run's Totals (from the store) and this
// process's calls.
type Summary struct {
	lifecycle.Totals
	// Sent, RateLimited, Overloaded and Retried count HTTP calls of this process.
	Sent, RateLimited, Overloaded, Retried int64
	BatchCostUSD                           float64 // the run's usage at batch prices
	// Committed counts the results this process wrote; Others those that other
	// processes working the same run (several hosts on one store) wrote while
	// it ran.
	Committed, Others int64
	// CacheReadTokens, CacheWriteTokens and UncachedInputTokens split the input
	// tokens of this process's succeeded results (usage cache_read_input_tokens,
	// cache_creation_input_tokens, input_tokens).
	CacheReadTokens, CacheWriteTokens, UncachedInputTokens int64
	// CacheSavedUSD is what the prompt cache saved on those results against the
	// same input uncached (negative while writes outweigh reads).
	CacheSavedUSD float64
	// Warmed counts the prompt-cache warming requests this process sent (Rewarmed
	// of them for a prefix idle close to its TTL); CacheReads the requests sent
	// after a warm-up, expecting a cache read.
	Warmed, Rewarmed, CacheReads int64
}

// Common is the run's Totals; nil for a nil Summary.
func (s *Summary) Common() *lifecycle.Totals {
	if s == nil {
		return nil
	}
	return &s.Totals
}

// Lines describes the run for people.
func (s *Summary) Lines() []string {
	how := []string{fmt.Sprintf("sent %d calls in %s (%d rate-limited, %d overloaded, %d retries)",
		s.Sent, s.Elapsed.Round(time.Millisecond), s.RateLimited, s.Overloaded, s.Retried)}
	if s.Others > 0 {
		how = append(how, fmt.Sprintf("this process wrote %d results, other processes on the store %d", s.Committed, s.Others))
	}
	if s.CacheReadTokens+s.CacheWriteTokens > 0 {
		how = append(how, fmt.Sprintf("prompt cache: %d tokens read, %d written, %d uncached (saved $%.4f); %d prefixes warmed (%d again), %d requests sent warm",
			s.CacheReadTokens, s.CacheWriteTokens, s.UncachedInputTokens, s.CacheSavedUSD, s.Warmed, s.Rewarmed, s.CacheReads))
	}
	return s.Describe(fmt.Sprintf("(through batches: $%.4f)", s.BatchCostUSD), how...)
}

// Run imports cfg.Input (or resumes it) and works every pending request. It returns
// when every request has a result, when ctx is cancelled (after draining), or when
// the API stops the run (ErrStopped).
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	r, err := newRun(cfg)
	if err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// Worker is a runner started by Start: realtime workers inside a batch or
// hybrid run, which hands them requests in steps.
type Worker struct {
	until     chan struct{}
	untilOnce sync.Once
	done      chan struct{}
	sum       *Summary
	err       error
}

// Start runs cfg in the background, like Run, except that the workers keep
// going until Finish is called, instead of until every request has a result:
// the caller enqueues requests for them as it goes (the batch mode's retries,
// the hybrid mode's hand-over). cfg.Spec is usually the caller's Spec.Sharing.
func Start(ctx context.Context, cfg Config) *Worker {
	w := &Worker{until: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		r, err := newRun(cfg)
		if err != nil {
			w.err = err
			return
		}
		r.until = w.until
		w.sum, w.err = r.run(ctx)
	}()
	return w
}

// Finish lets the workers stop once the requests in flight are done (once; it
// does not wait: see Done).
func (w *Worker) Finish() { w.untilOnce.Do(func() { close(w.until) }) }

// Done is closed when the workers have stopped.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Result is the runner's summary and error, once Done is closed (nil, nil before).
func (w *Worker) Result() (*Summary, error) {
	select {
	case <-w.done:
		return w.sum, w.err
	default:
		return nil, nil
	}
}

type run struct {
	cfg     Config
	cat     *catalog.Catalog
	log     *slog.Logger
	lim     *admit.Limiter
	backoff upstream.Backoff
	retries *upstream.RetryBudget
	life    *lifecycle.Run
	out     *jobs.Output
	m       *metrics
	runID   int64
	start   time.Time
	// until, when set (Start), keeps the workers running until it is closed.
	until <-chan struct{}
	// streamAbove is the resolved Config.StreamAbove: -1 never streams.
	streamAbove int64

	// draining is closed when the run drains: requests not yet sent go back to the
	// queue instead of waiting for admission or a retry.
	draining  chan struct{}
	drainOnce sync.Once

	// stop is closed (once) when the API stops the run or the budget is reached.
	stop     chan struct{}
	stopOnce sync.Once
	stopWhy  atomic.Value // string
	stopErr  error        // what stopped it, set before stop is closed

	// counters for the display and summary
	sent, rateLimited, overloaded, retried atomic.Int64
	// inFlight counts the calls sent and not yet answered.
	inFlight           atomic.Int64
	succeeded, errored atomic.Int64
	// byClass counts calls and tokens by model class, for the display.
	byClass sync.Map // class name → *classCount
	// mine counts this process's results; doneAtStart the run's results
	// when it started.
	mine          atomic.Int64
	doneAtStart   int64
	inTok, outTok atomic.Int64
	// usd is the budget (Config.Budget; spend.NoLimit without one): the run's
	// cost, and the worst case of the requests in flight.
	usd *spend.Budget
	// sched is the prompt-cache scheduler; nil when Config.CacheScheduleOff.
	sched *cacheSched
	// this process's input tokens of succeeded results, by kind, and what the
	// prompt cache saved on them (micro-dollars; negative while writes outweigh reads)
	cacheRead, cacheWrite, uncached, cacheSaved atomic.Int64
}

func newRun(cfg Config) (*run, error) {
	if err := cfg.Check("runner"); err != nil {
		return nil, err
	}
	if cfg.Tier == "" {
		cfg.Tier = admit.TierAuto
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 256
	}
	if cfg.MaxConcurrency > MaxConcurrency {
		return nil, fmt.Errorf("runner: concurrency %d: at most %d requests in flight per process", cfg.MaxConcurrency, MaxConcurrency)
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = jobs.DefaultMaxAttempts
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.Routing != nil {
		if err := cfg.Routing.Validate(cfg.Catalog); err != nil {
			return nil, err
		}
	}
	streamAbove, err := streamThreshold(cfg.StreamAbove)
	if err != nil {
		return nil, err
	}
	lim := cfg.Limiter
	if lim == nil {
		var err error
		lim, err = admit.New(admit.Config{Catalog: cfg.Catalog, Tier: cfg.Tier, MaxConcurrency: cfg.MaxConcurrency})
		if err != nil {
			return nil, fmt.Errorf("limiter: %w", err)
		}
	}
	usd := spend.NewBudget(spend.NoLimit)
	if cfg.Budget > 0 {
		usd = spend.NewBudget(spend.FromUSD(cfg.Budget))
		usd.Force(cfg.BudgetHeld)
	}
	var sched *cacheSched
	if !cfg.CacheScheduleOff {
		now := cfg.Test.Now
		if now == nil {
			now = time.Now
		}
		sched = newCacheSched(now)
		if cfg.Test.UnboundedWarmers {
			sched.warmers = nil
		}
	}
	return &run{
		sched:    sched,
		cfg:      cfg,
		cat:      cfg.Catalog,
		log:      cfg.Logger,
		lim:      lim,
		backoff:  upstream.Backoff{MaxAttempts: cfg.MaxAttempts},
		retries:  upstream.NewRetryBudget(upstream.RetryBudgetConfig{Ratio: 0.2}),
		m:        newMetrics(cfg.Registry),
		usd:      usd,
		stop:     make(chan struct{}),
		draining: make(chan struct{}),

		streamAbove: streamAbove,
	}, nil
}

// MaxConcurrency is the most requests a run may have in flight (Config.MaxConcurrency):
// one job each, and a process works at most jobs.MaxWorkers jobs at once.
const MaxConcurrency = jobs.MaxWorkers

// cacheWorkers is how many jobs per slot of MaxConcurrency a run with prompt-cache
// scheduling works at once: a job waiting for its prefix's warming answer holds a
// worker but no admission slot, so with one worker per slot the waiting ones
// leave slots idle (a document's other questions wait about a time to first token
// while its warming request is answered). Admission still caps the calls in
// flight at MaxConcurrency, and a job holds its budget only once admitted.
const cacheWorkers = 4

// workers is how many jobs the run works at once: Config.MaxConcurrency, or
// cacheWorkers times that (at most jobs.MaxWorkers) when scheduling is on and some
// of the run's requests have a prefix.
func (r *run) workers(ctx context.Context) (int, error) {
	if r.sched == nil || r.cfg.Test.OneWorkerPerSlot {
		return r.cfg.MaxConcurrency, nil
	}
	has, err := r.cfg.Store.HasCachePrefixes(ctx, r.runID)
	if err != nil || !has {
		return r.cfg.MaxConcurrency, err
	}
	return max(r.cfg.MaxConcurrency, min(cacheWorkers*r.cfg.MaxConcurrency, jobs.MaxWorkers)), nil
}

// classCount is what a model class's calls sent and used.
type classCount struct{ sent, in, out atomic.Int64 }

// class returns m's class's counters.
func (r *run) class(m *catalog.Model) *classCount {
	name := r.cat.Class(m).Name
	if c, ok := r.byClass.Load(name); ok {
		return c.(*classCount)
	}
	c, _ := r.byClass.LoadOrStore(name, &classCount{})
	return c.(*classCount)
}

// halt stops the run for why; cause is the API's answer that stopped it (nil: the
// budget).
func (r *run) halt(why string, cause error) {
	r.stopOnce.Do(func() {
		r.stopErr = cause
		r.stopWhy.Store(why)
		close(r.stop)
	})
}

func (r *run) run(ctx context.Context) (_ *Summary, retErr error) {
	r.start = time.Now()
	life, err := lifecycle.Start(ctx, r.cfg.Spec, lifecycle.Import{MaxAttempts: r.cfg.MaxAttempts})
	if life == nil {
		return nil, err
	}
	r.life, r.runID = life, life.ID
	if err != nil { // Strict
		return r.summary(ctx), err
	}
	if err := life.OpenOutput(ctx); err != nil {
		return nil, err
	}
	defer func() { retErr = life.Finish(ctx, retErr) }()
	r.out = life.Out
	st, err := r.cfg.Store.Status(ctx, r.runID)
	if err != nil {
		return nil, err
	}
	r.succeeded.Store(st.Results[jobs.Succeeded])
	r.errored.Store(st.Results[jobs.Errored])
	r.doneAtStart = st.Requests - st.Pending
	r.usd.Spend(spend.FromUSD(st.CostUSD)) // this run's results so far, batches' too

	if st.Pending > 0 {
		if err := r.work(ctx, st.Pending); err != nil {
			return r.summary(context.WithoutCancel(ctx)), err
		}
	}
	sum := r.summary(context.WithoutCancel(ctx))
	if why, _ := r.stopWhy.Load().(string); why != "" {
		return sum, &stoppedError{why: why, cause: r.stopErr}
	}
	return sum, nil
}

// work runs the River client until every pending request is finished, the run is
// drained (ctx) or stopped.
func (r *run) work(ctx context.Context, pending int64) error {
	// This process heart-beats in the store while it works, so that the jobs it
	// holds come back to the others within seconds if it dies, and never while
	// it lives (several hosts on one store). Registering releases the jobs of
	// processes found dead (a crash, a SIGKILL).
	w, err := r.cfg.Store.Register(ctx, r.cfg.Test.Heartbeat...)
	if err != nil {
		return fmt.Errorf("register with the store: %w", err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			r.log.Warn("leave the store's workers (its row is dropped when found dead)", "err", err)
		}
	}()
	if r.sched != nil && r.cfg.Test.Now == nil && !r.cfg.Test.CacheNotShared {
		r.sched.share(r.cfg.Store, r.runID, w.ID(), r.cfg.Test.CachePoll, r.cfg.Test.CacheClaimTimeout, r.log)
	}
	workers, err := r.workers(ctx)
	if err != nil {
		return err
	}
	client, err := jobs.NewClient(r.cfg.Store, r.do, jobs.ClientConfig{
		MaxWorkers:   workers,
		BeforeCommit: r.cfg.Test.BeforeCommit,
		RetryDelay:   func(attempt int) time.Duration { return r.backoff.Delay(attempt, nil) },
		AfterCommit:  r.committed,
		Worker:       w,
	})
	if err != nil {
		return err
	}
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	if err := client.Start(workCtx); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	done := make(chan error, 1)
	if r.until != nil {
		go func() {
			select {
			case <-r.until:
				done <- nil
			case <-workCtx.Done():
				done <- workCtx.Err()
			}
		}()
	} else {
		go func() { done <- r.cfg.Store.Wait(workCtx, r.runID, 100*time.Millisecond) }()
	}

	var prog *progress
	if r.cfg.Progress != nil || r.cfg.Dashboard != nil {
		prog = newProgress(r, pending)
		go prog.loop(workCtx, r.cfg.ProgressEvery)
	}

	var waitErr error
	drained, lost := false, false
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		drained = true
		prog.say(fmt.Sprintf("stopping: %d calls in flight finish, the rest stay queued (Ctrl-C again to abort them)", r.inFlight.Load()))
	case <-r.stop:
	case <-w.Lost():
		// The store could not hear from this process for its dead-after window:
		// its jobs are (or will be) given to the others, and what it finishes
		// now would be dropped. Stop at once.
		lost = true
	}
	// Drain: stop fetching, let requests in flight finish (those waiting for admission
	// or a retry go back to the queue) — unless aborted.
	r.drainOnce.Do(func() { close(r.draining) })
	stopCtx, cancelStop := context.WithCancel(context.Background())
	defer cancelStop()
	stopped := make(chan error, 1)
	go func() { stopped <- client.Stop(stopCtx) }()
	abort := r.cfg.Abort
	stopWithin := context.Background()
	if lost {
		// The store is unreachable: stopping cannot wait for it to record what
		// the workers did (the other processes take those jobs anyway).
		abort = closed
		var cancel context.CancelFunc
		stopWithin, cancel = context.WithTimeout(stopWithin, lostStopWait)
		defer cancel()
	}
	select {
	case err = <-stopped:
	case <-abort:
		if !lost {
			prog.say(fmt.Sprintf("aborting: %d calls in flight are cancelled and go back to the queue", r.inFlight.Load()))
		}
		cancelStop()
		err = client.StopAndCancel(stopWithin)
		if lost {
			select {
			case <-stopped:
			case <-stopWithin.Done():
			}
			// River's goroutines may go on retrying the store after Run
			// returns: not into the caller's log, which may be gone by then.
			client.Detach()
		} else {
			<-stopped
		}
	}
	cancelWork()
	if prog != nil {
		prog.final()
	}
	if lost {
		return ErrLostStore
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("stop workers: %w", err)
	}
	if waitErr != nil && !drained && !errors.Is(waitErr, context.Canceled) {
		return waitErr
	}
	return nil
}

// committed runs after a result's transaction commits.
func (r *run) committed(job *jobs.Job, res jobs.Result) {
	switch res.Type {
	case jobs.Succeeded:
		r.succeeded.Add(1)
	case jobs.Errored:
		r.errored.Add(1)
	}
	r.mine.Add(1)
	r.m.results.WithLabelValues(string(res.Type)).Inc()
	r.out.AppendResult(job.Request.CustomID, res)
}

func (r *run) summary(ctx context.Context) *Summary {
	s := &Summary{
		Sent: r.sent.Load(), RateLimited: r.rateLimited.Load(),
		Overloaded: r.overloaded.Load(), Retried: r.retried.Load(),
	}
	if r.life != nil {
		s.Totals = r.life.Totals(ctx)
	}
	s.Elapsed = time.Since(r.start)
	if why, _ := r.stopWhy.Load().(string); why != "" {
		s.Stopped = why
	}
	s.BatchCostUSD = s.CostUSD * r.cat.Pricing.Batch
	s.Committed = r.mine.Load()
	s.CacheReadTokens, s.CacheWriteTokens, s.UncachedInputTokens = r.cacheRead.Load(), r.cacheWrite.Load(), r.uncached.Load()
	s.CacheSavedUSD = float64(r.cacheSaved.Load()) / 1e6
	if r.sched != nil {
		s.Warmed, s.Rewarmed, s.CacheReads = r.sched.warmed.Load(), r.sched.rewarmed.Load(), r.sched.reads.Load()
	}
	if r.life != nil && s.Requests > 0 {
		s.Others = max(s.Requests-s.Pending-r.doneAtStart-s.Committed, 0)
	}
	return s
}
