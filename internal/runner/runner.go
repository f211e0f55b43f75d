package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
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

// ErrStrict is returned by Run when the input had bad lines and Config.Strict is set.
var ErrStrict = jobs.ErrBadLines

// Config configures a Run. Store, Client and Input are required.
type Config struct {
	// Store holds the run. Run does not close it.
	Store *jobs.Store
	// Client sends the requests.
	Client *upstream.Client
	// Catalog supplies model classes and prices. Default catalog.Default().
	Catalog *catalog.Catalog
	// Input is the JSONL file; Output, when set, the results file written as results
	// arrive (rebuilt from the store at start, so a resumed run writes each result once).
	Input  string
	Output string
	// Out, when set, is the results file to append to instead of opening Output
	// (the hybrid mode shares one between realtime and batch). Run does not close it.
	Out *jobs.Output
	// Ordered writes the output in input order at the end instead of as results arrive.
	Ordered bool
	// Force re-imports a changed input (its earlier results are dropped).
	Force bool
	// Strict aborts before any request when the input has a bad line.
	Strict bool
	// Options is stored with a new run (the CLI's flags), opaque.
	Options json.RawMessage
	// Tier is the catalog tier whose limits apply, or "auto" (learn from headers).
	// Default "auto".
	Tier string
	// MaxConcurrency caps requests in flight. Default 256.
	MaxConcurrency int
	// MaxAttempts is how many times a request is tried in all before it is errored.
	// Default 10.
	MaxAttempts int
	// Routing picks models; nil keeps each line's model (aliases resolved).
	Routing *Routing
	// CountTokens asks the API's count_tokens for exact input counts.
	CountTokens bool
	// Budget, when positive, stops the run before its cost in USD exceeds it.
	Budget float64
	// BudgetHeld is held back from Budget, in micro-dollars, for spend the run does
	// not see while it works: the worst case of requests in open batches, whose
	// results the batch and hybrid modes read while realtime workers run. Default 0.
	BudgetHeld spend.Micros
	// Progress receives the live display and the summary; nil for none.
	Progress io.Writer
	// ProgressEvery is the display period. Default 1 s.
	ProgressEvery time.Duration
	// Registry, when set, receives the run's Prometheus metrics.
	Registry prometheus.Registerer
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Abort, when closed, cancels requests in flight (the second Ctrl-C); they return
	// to the queue. Cancelling Run's ctx only drains.
	Abort <-chan struct{}
	// Limiter, when set, is used instead of one built from Tier (tests, gateways).
	Limiter *admit.Limiter
	// Until, when set, keeps the workers running until it is closed, instead of
	// until every request has a result: the hybrid mode hands requests to realtime
	// in steps, and closes it when the run is complete.
	Until <-chan struct{}
	// BeforeCommit is passed to the jobs client (crash tests).
	BeforeCommit func(ctx context.Context, job *jobs.Job) error
	// StreamAbove sends a request whose max_tokens is above it as a stream
	// (upstream.Client.MessagesStream: no 10-minute limit, an idle timeout instead),
	// so long answers are not cut, retried and paid again. The result is the same.
	// Default 0: DefaultStreamAbove (21,333, the SDKs' rule); StreamNever (-1) and
	// StreamAlways (-2) send no request or every request as a stream.
	StreamAbove int64
}

// Summary is what a run did.
type Summary struct {
	RunID     int64
	Requests  int64 // valid requests in the input
	Problems  int64 // bad lines skipped
	Succeeded int64
	Errored   int64
	Pending   int64 // not finished (drained, aborted or stopped)
	// Sent, RateLimited, Overloaded and Retried count HTTP calls of this process.
	Sent, RateLimited, Overloaded, Retried int64
	InputTokens, OutputTokens              int64
	CostUSD                                float64
	BatchCostUSD                           float64 // the same usage at batch prices
	Elapsed                                time.Duration
	Stopped                                string // why the API stopped the run, if it did
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

type run struct {
	cfg     Config
	cat     *catalog.Catalog
	log     *slog.Logger
	lim     *admit.Limiter
	est     *admit.Estimator
	backoff upstream.Backoff
	retries *upstream.RetryBudget
	out     *jobs.Output
	m       *metrics
	runID   int64
	start   time.Time
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
	succeeded, errored                     atomic.Int64
	inTok, outTok                          atomic.Int64
	// usd is the budget (Config.Budget; spend.NoLimit without one): the run's
	// cost, and the worst case of the requests in flight.
	usd *spend.Budget
}

func newRun(cfg Config) (*run, error) {
	if cfg.Store == nil || cfg.Client == nil || cfg.Input == "" {
		return nil, errors.New("runner: Store, Client and Input are required")
	}
	if cfg.Catalog == nil {
		cfg.Catalog = catalog.Default()
	}
	if cfg.Tier == "" {
		cfg.Tier = admit.TierAuto
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = 256
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = jobs.DefaultMaxAttempts
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
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
	return &run{
		cfg:      cfg,
		cat:      cfg.Catalog,
		log:      cfg.Logger,
		lim:      lim,
		est:      lim.Estimator(), // the one the limiter calibrates
		backoff:  upstream.Backoff{MaxAttempts: cfg.MaxAttempts},
		retries:  upstream.NewRetryBudget(upstream.RetryBudgetConfig{Ratio: 0.2}),
		m:        newMetrics(cfg.Registry),
		usd:      usd,
		stop:     make(chan struct{}),
		draining: make(chan struct{}),

		streamAbove: streamAbove,
	}, nil
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
	runRec, stats, err := r.cfg.Store.ImportReporting(ctx, jobs.ImportOptions{
		Path: r.cfg.Input, Options: r.cfg.Options, Force: r.cfg.Force, MaxAttempts: r.cfg.MaxAttempts,
	}, r.cfg.Progress)
	if err != nil {
		return nil, err
	}
	r.runID = runRec.ID
	// An input imported before (a resume, or realtime joining a batch or hybrid run)
	// is not news: debug level.
	level := slog.LevelInfo
	if stats.NoOp {
		level = slog.LevelDebug
	}
	r.log.Log(ctx, level, "input imported", "run_id", runRec.ID, "requests", runRec.Requests, "problems", runRec.Problems,
		"resumed", stats.Resumed, "unchanged", stats.NoOp)
	if r.cfg.Strict && runRec.Problems > 0 {
		return r.summary(ctx), fmt.Errorf("%w: %d bad lines (see `clade status`)", ErrStrict, runRec.Problems)
	}

	r.out = r.cfg.Out
	if r.out == nil && r.cfg.Output != "" {
		out, err := jobs.OpenOutput(ctx, r.cfg.Store, r.runID, r.cfg.Output, r.cfg.Ordered)
		if err != nil {
			return nil, err
		}
		r.out = out
		defer func() {
			// A results file that could not be written (a full disk) fails the run,
			// whatever else happened: its results are in the store.
			if err := out.Close(); err != nil && retErr == nil {
				retErr = err
			}
		}()
	}
	st, err := r.cfg.Store.Status(ctx, r.runID)
	if err != nil {
		return nil, err
	}
	r.succeeded.Store(st.Results[jobs.Succeeded])
	r.errored.Store(st.Results[jobs.Errored])
	r.usd.Spend(spend.FromUSD(st.CostUSD)) // this run's results so far, batches' too

	if st.Pending > 0 {
		if err := r.work(ctx, st.Pending); err != nil {
			return r.summary(context.WithoutCancel(ctx)), err
		}
	}
	sum := r.summary(context.WithoutCancel(ctx))
	if r.out != nil && r.cfg.Out == nil && r.cfg.Ordered && sum.Pending == 0 {
		if err := r.out.ExportOrdered(context.WithoutCancel(ctx), r.cfg.Store, r.runID); err != nil {
			return sum, err
		}
	}
	if why, _ := r.stopWhy.Load().(string); why != "" {
		return sum, &stoppedError{why: why, cause: r.stopErr}
	}
	return sum, nil
}

// work runs the River client until every pending request is finished, the run is
// drained (ctx) or stopped.
func (r *run) work(ctx context.Context, pending int64) error {
	// Release jobs left "running" by a crashed process (single-process stores).
	if _, err := r.cfg.Store.ReleaseRunning(ctx); err != nil {
		return fmt.Errorf("release stuck jobs: %w", err)
	}
	client, err := jobs.NewClient(r.cfg.Store, r.do, jobs.ClientConfig{
		MaxWorkers:   r.cfg.MaxConcurrency,
		BeforeCommit: r.cfg.BeforeCommit,
		RetryDelay:   func(attempt int) time.Duration { return r.backoff.Delay(attempt, nil) },
		AfterCommit:  r.committed,
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
	if r.cfg.Until != nil {
		go func() {
			select {
			case <-r.cfg.Until:
				done <- nil
			case <-workCtx.Done():
				done <- workCtx.Err()
			}
		}()
	} else {
		go func() { done <- r.cfg.Store.Wait(workCtx, r.runID, 100*time.Millisecond) }()
	}

	var prog *progress
	if r.cfg.Progress != nil {
		prog = newProgress(r, pending)
		go prog.loop(workCtx, r.cfg.ProgressEvery)
	}

	var waitErr error
	drained := false
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		drained = true
	case <-r.stop:
	}
	// Drain: stop fetching, let requests in flight finish (those waiting for admission
	// or a retry go back to the queue) — unless aborted.
	r.drainOnce.Do(func() { close(r.draining) })
	stopCtx, cancelStop := context.WithCancel(context.Background())
	defer cancelStop()
	stopped := make(chan error, 1)
	go func() { stopped <- client.Stop(stopCtx) }()
	abort := r.cfg.Abort
	select {
	case err = <-stopped:
	case <-abort:
		cancelStop()
		err = client.StopAndCancel(context.Background())
		<-stopped
	}
	cancelWork()
	if prog != nil {
		prog.final()
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
	r.m.results.WithLabelValues(string(res.Type)).Inc()
	r.out.AppendResult(job.Request.CustomID, res)
}

func (r *run) summary(ctx context.Context) *Summary {
	s := &Summary{
		RunID: r.runID, Sent: r.sent.Load(), RateLimited: r.rateLimited.Load(),
		Overloaded: r.overloaded.Load(), Retried: r.retried.Load(), Elapsed: time.Since(r.start),
	}
	if why, _ := r.stopWhy.Load().(string); why != "" {
		s.Stopped = why
	}
	st, err := r.cfg.Store.Status(ctx, r.runID)
	if err != nil {
		r.log.Warn("the summary lacks the run's counts: reading them failed (clade status shows them)", "err", err)
		return s
	}
	s.Requests, s.Problems, s.Pending = st.Requests, st.Problems, st.Pending
	s.Succeeded, s.Errored = st.Results[jobs.Succeeded], st.Results[jobs.Errored]
	s.InputTokens = st.Usage.InputTokens + st.Usage.CacheWrite5mTokens + st.Usage.CacheWrite1hTokens + st.Usage.CacheReadTokens
	s.OutputTokens = st.Usage.OutputTokens
	s.CostUSD = st.CostUSD
	s.BatchCostUSD = st.CostUSD * r.cat.Pricing.Batch
	return s
}
