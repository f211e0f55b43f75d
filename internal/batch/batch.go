package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/upstream"
)

// ErrStrict is returned by Run when the input had bad lines and Config.Strict is set.
var ErrStrict = jobs.ErrBadLines

// errLeaseLost stops a dispatcher whose lease on the run was taken or ran out.
var errLeaseLost = errors.New("lost the run's lease (another process took it, or the store was unreachable); stopped dispatching")

// Defaults.
const (
	DefaultTier            = "start"
	DefaultMaxRounds       = 5
	DefaultPollMin         = time.Second
	DefaultPollMax         = time.Minute
	DefaultReconcileWindow = 10 * time.Minute
	// importPoll is how often a fill is tried while the input is still imported.
	importPoll = 50 * time.Millisecond
	// pendingPage is how many pending requests one store query returns.
	pendingPage = 1000
	// resultFlush is how many result lines one store transaction writes.
	resultFlush = 500
)

// Clock is the time source of the dispatcher: tests inject one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures Run. Store, Client and Input are required.
type Config struct {
	// Store holds the run. Run does not close it.
	Store *jobs.Store
	// Client calls the Message Batches API.
	Client *upstream.Client
	// Catalog supplies tiers and prices. Default catalog.Default().
	Catalog *catalog.Catalog
	// Input is the JSONL file; Output, when set, the results file (rebuilt from the
	// store at start, then appended to as results are written).
	Input  string
	Output string
	// Out, when set, is the results file to append to instead of opening Output
	// (the hybrid mode shares one between realtime and batch). Run does not close it.
	Out *jobs.Output
	// Ordered writes the output in input order when every request has a result,
	// instead of as results are read.
	Ordered bool
	// Force re-imports a changed input; Strict aborts when the input has a bad line.
	Force, Strict bool
	// Options is stored with a new run, opaque.
	Options json.RawMessage
	// Tier names the catalog tier whose batch limits apply. Default DefaultTier.
	Tier string
	// MaxRequests caps the requests of one batch. Default: the tier's max_requests
	// (100,000).
	MaxRequests int
	// MaxBytes caps the create body in bytes. Default upstream.MaxBatchCreateBytes
	// (256 MB).
	MaxBytes int
	// QueueLimit caps this run's requests in open batches. Default: the tier's queue.
	QueueLimit int64
	// RPM caps batch-endpoint calls per minute. Default: 90% of the tier's batch rpm.
	RPM float64
	// MaxRounds is how many batches a request may go in before an expired, canceled
	// or retryably errored line is its final result. Default DefaultMaxRounds (5).
	MaxRounds int
	// RetryVia says where a request goes whose line is expired, canceled or a
	// retryable error: RetryBatch (the default) into a later batch, up to
	// MaxRounds; RetryRealtime to realtime workers at once, at full price (see
	// realtime.go).
	RetryVia string
	// Realtime carries the realtime workers' own settings for RetryRealtime
	// (concurrency, attempts, limiter); the store, client, catalog, input, results
	// file, tier, routing and budget are this Config's.
	Realtime runner.Config
	// PollMin and PollMax bound the wait between two polls of a running batch, which
	// is a fortieth of the batch's age; polls also keep to half the batch RPM.
	// Defaults 1 s and 1 min.
	PollMin, PollMax time.Duration
	// ReconcileWindow is the clock skew allowed when matching an unrecorded intent
	// against the API's batches: batches created from the intent's time less this
	// are candidates. Default 10 min.
	ReconcileWindow time.Duration
	// Clock is the time source. Default: the real clock.
	Clock Clock
	// Registry, when set, receives the run's Prometheus metrics (clade_batch_*),
	// read from the store when scraped.
	Registry prometheus.Registerer
	// Progress receives one line per batch event, and a status line every
	// ProgressEvery (default 30 s); nil for none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Routing picks each request's model (--model, --routing), as clade run does;
	// nil keeps each line's model, clade's aliases resolved.
	Routing *runner.Routing
	// Budget, when positive, stops creating batches before the run's cost could
	// exceed it: each request counts at batch prices with its estimated input and
	// whole max_tokens until its result is read. Open batches are still read.
	Budget float64
	// OwnQueueOnly counts only this run's requests against the tier's processing
	// queue. By default the organisation's other batches in progress (listed at
	// most once a minute) count too, as the API counts them.
	OwnQueueOnly bool
	// MayFill, when set, is asked before each new batch is filled; false creates
	// none (open batches are still polled and read). The hybrid mode stops batch
	// work this way once realtime takes over.
	MayFill func() bool
	// Nudge, when it receives, makes every open batch be polled at once (the
	// hybrid mode, after it cancels batches).
	Nudge <-chan struct{}
	// Leased says the caller holds the run's lease (jobs.Store.AcquireLease), as
	// the hybrid mode does; by default Run takes it, and fails with jobs.ErrLeased
	// if another process holds it.
	Leased bool
	// KeepJobs keeps the run's River jobs: a hybrid run's realtime workers own the
	// requests that have one. By default they are deleted, as batch dispatch owns
	// every request.
	KeepJobs bool
	// AfterCreate, when set, runs after a create call returns and before its id is
	// recorded; an error stops Run there, as a crash would (crash tests).
	AfterCreate func(b *upstream.Batch) error
}

// Summary is what a batch run did.
type Summary struct {
	RunID     int64
	Requests  int64 // valid requests in the input
	Problems  int64 // bad lines skipped
	Succeeded int64
	Errored   int64
	Expired   int64 // final after MaxRounds
	Canceled  int64 // final after MaxRounds
	Pending   int64
	// Batches counts batches this process created (or adopted); Resubmitted the
	// result lines that sent their request to a later batch (or to realtime).
	Batches, Resubmitted int64
	// Realtime counts the requests this process handed to realtime workers
	// (RetryRealtime), RealtimeSent their calls.
	Realtime, RealtimeSent int64
	InputTokens            int64
	OutputTokens           int64
	CostUSD                float64 // at batch prices; realtime retries at full price
	Elapsed                time.Duration
	// Stopped says why batch creation stopped with requests left (the budget).
	Stopped string
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.Store == nil || out.Client == nil || out.Input == "" {
		return out, errors.New("batch: Store, Client and Input are required")
	}
	if out.Catalog == nil {
		out.Catalog = catalog.Default()
	}
	if out.Tier == "" {
		out.Tier = DefaultTier
	}
	tier, err := out.Catalog.Tier(out.Tier)
	if err != nil {
		return out, fmt.Errorf("batch: %w", err)
	}
	if out.Routing != nil {
		if err := out.Routing.Validate(out.Catalog); err != nil {
			return out, fmt.Errorf("batch: %w", err)
		}
	}
	bl := catalog.BatchLimits{RPM: 50, Queue: 100_000, MaxRequests: 100_000}
	if tier.Batch != nil {
		bl = *tier.Batch
	}
	if out.MaxRequests <= 0 {
		out.MaxRequests = int(bl.MaxRequests)
	}
	if out.MaxBytes <= 0 {
		out.MaxBytes = upstream.MaxBatchCreateBytes
	}
	if out.QueueLimit <= 0 {
		out.QueueLimit = bl.Queue
	}
	if out.RPM <= 0 {
		out.RPM = 0.9 * float64(bl.RPM)
	}
	if out.MaxRounds <= 0 {
		out.MaxRounds = DefaultMaxRounds
	}
	switch out.RetryVia {
	case "":
		out.RetryVia = RetryBatch
	case RetryBatch, RetryRealtime:
	default:
		return out, fmt.Errorf("batch: RetryVia %q: want %q or %q", out.RetryVia, RetryBatch, RetryRealtime)
	}
	if out.RetryVia == RetryRealtime && out.MayFill != nil {
		return out, errors.New("batch: RetryVia realtime is not for the hybrid mode, which has its own realtime workers")
	}
	if out.PollMin <= 0 {
		out.PollMin = DefaultPollMin
	}
	if out.PollMax < out.PollMin {
		out.PollMax = max(DefaultPollMax, out.PollMin)
	}
	if out.ReconcileWindow <= 0 {
		out.ReconcileWindow = DefaultReconcileWindow
	}
	if out.Clock == nil {
		out.Clock = realClock{}
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	if out.ProgressEvery <= 0 {
		out.ProgressEvery = 30 * time.Second
	}
	return out, nil
}

// Run imports cfg.Input (or resumes its run) and works every pending request through
// Message Batches. It returns when every request has a result, or when ctx ends: the
// batches in flight stay recorded and the next Run picks them up.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &dispatcher{cfg: c, log: c.Logger, start: c.Clock.Now(), polls: map[int64]*pollState{}, canceling: map[int64]bool{}}
	burst := max(1, int(c.RPM/60))
	d.lim = rate.NewLimiter(rate.Limit(c.RPM/60), burst)
	return d.run(ctx)
}

type dispatcher struct {
	cfg   Config
	log   *slog.Logger
	lim   *rate.Limiter
	out   *outputFile
	runID int64
	start time.Time
	polls map[int64]*pollState // by clade_batch row
	// canceling holds the rows of batches last seen canceling.
	canceling map[int64]bool
	// importing is set while the input is imported in the background (startImport);
	// importErr then receives its end. stopImport cancels it.
	importing  bool
	importErr  chan error
	stopImport context.CancelFunc
	// drained is set when a fill found no request left to send; only a batch that
	// ends (or a create that fails) can make requests pending again. It spares a
	// scan of the whole run on every loop.
	drained bool
	// handDue asks the loop to hand requests to realtime (RetryRealtime): set at
	// start and when a batch has ended.
	handDue bool
	// stopped, once set, says why no more batches are created (the budget).
	stopped string
	// others counts other batches' requests in the processing queue, at othersAt.
	others   int64
	othersAt time.Time
	// nextStatus is when the next status line is due.
	nextStatus time.Time
	// fillAfter holds fill back after a 429 or a failed create.
	fillAfter time.Time
	failures  int

	// rt is the realtime workers of RetryRealtime, once started (the latest, when
	// a budget stop was lifted); rtHanded counts the requests handed to realtime,
	// rtSent the calls of earlier runners.
	rt               *realtime
	rtHanded, rtSent int64

	// batches and resubmitted are read by the metrics collector too.
	batches, resubmitted atomic.Int64
	doneAtStart          int64
}

type pollState struct {
	next time.Time
}

// pollInterval is the wait before the next poll of a batch recorded at attempted:
// a fortieth of its age, within [pollFloor, PollMax], so a batch's end is seen at
// most about 2.5% of its running time late, and old batches are not polled more
// than they need. (request_counts give no progress while a batch runs: every
// request stays processing until the batch ends, anthropic-api.md 4.)
func (d *dispatcher) pollInterval(attempted, now time.Time) time.Duration {
	return min(max(now.Sub(attempted)/40, d.pollFloor()), d.cfg.PollMax)
}

// pollFloor is the shortest wait between two polls of a batch: PollMin, or more
// when polling every open batch that often would take over half the batch RPM
// (creates and result downloads need the rest).
func (d *dispatcher) pollFloor() time.Duration {
	share := time.Duration(float64(max(len(d.polls), 1)) * 2 * float64(time.Minute) / d.cfg.RPM)
	return min(max(d.cfg.PollMin, share), d.cfg.PollMax)
}

func (d *dispatcher) run(ctx context.Context) (_ *Summary, retErr error) {
	st := d.cfg.Store
	runRec, err := d.startImport(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if d.importing { // stopped early: end the background import first
			d.stopImport()
			<-d.importErr
			d.importing = false
		}
	}()
	d.runID = runRec.ID
	if !d.cfg.Leased {
		// One dispatcher per run: two would both create batches for the same
		// requests.
		lease, err := st.AcquireLease(ctx, d.runID, 0)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := lease.Release(); err != nil { // it runs out by itself
				d.log.Warn("release the run's lease (it runs out in 30 s)", "err", err)
			}
		}()
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			select {
			case <-lease.Lost():
				cancel(errLeaseLost)
			case <-ctx.Done():
			}
		}()
	}
	if d.cfg.Strict && runRec.Problems > 0 { // Strict imports before anything else
		return d.summary(ctx), fmt.Errorf("%w: %d bad lines (see `clade status`)", ErrStrict, runRec.Problems)
	}
	if err := st.PrepareBatches(ctx); err != nil {
		return nil, err
	}
	if !d.cfg.KeepJobs && d.cfg.RetryVia != RetryRealtime {
		if _, err := st.DropRequestJobs(ctx, d.runID); err != nil {
			return nil, fmt.Errorf("drop realtime jobs: %w", err)
		}
	}
	if o := d.cfg.Out; o != nil {
		d.out = &outputFile{o}
	} else if d.cfg.Output != "" {
		o, err := jobs.OpenOutput(ctx, st, d.runID, d.cfg.Output, d.cfg.Ordered)
		if err != nil {
			return nil, err
		}
		d.out = &outputFile{o}
		defer func() {
			if err := o.Close(); err != nil && retErr == nil {
				retErr = err // a full disk: the results are in the store
			}
		}()
	}
	if s, err := st.Status(ctx, d.runID); err == nil {
		d.doneAtStart = s.Requests - s.Pending
	}
	if d.cfg.Registry != nil {
		c := &collector{d: d}
		if err := d.cfg.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("batch metrics: %w", err)
		}
		defer d.cfg.Registry.Unregister(c)
	}
	if err := d.reconcileAll(ctx); err != nil {
		return d.summary(context.WithoutCancel(ctx)), err
	}
	defer d.closeRealtime()
	d.handDue = true // a resumed run may have requests for realtime
	err = d.loop(ctx)
	if err == nil {
		err = d.awaitRealtime(ctx)
	}
	d.closeRealtime()
	sum := d.summary(context.WithoutCancel(ctx))
	if err == nil && d.cfg.Out == nil && d.out != nil && d.cfg.Ordered && sum.Pending == 0 {
		err = d.out.o.ExportOrdered(context.WithoutCancel(ctx), st, d.runID)
	}
	if cause := context.Cause(ctx); errors.Is(cause, errLeaseLost) {
		return sum, cause
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return sum, nil // interrupted: the batches in flight stay recorded
	}
	return sum, err
}

// startImport imports the input. Unless Strict (which must see every line before
// sending any), it returns as soon as the run exists and goes on importing in the
// background: the first batch is created while the rest of a large file is read
// (the loop takes only full batches until the import ends). d.importErr reports
// its end.
func (d *dispatcher) startImport(ctx context.Context) (*jobs.Run, error) {
	opt := jobs.ImportOptions{Path: d.cfg.Input, Options: d.cfg.Options, Force: d.cfg.Force, NoJobs: true}
	if d.cfg.Strict {
		run, _, err := d.cfg.Store.ImportReporting(ctx, opt, d.cfg.Progress)
		return run, err
	}
	started := make(chan *jobs.Run, 1)
	opt.OnRun = func(r *jobs.Run) { started <- r }
	type result struct {
		run *jobs.Run
		err error
	}
	done := make(chan result, 1)
	importCtx, cancel := context.WithCancel(ctx)
	d.stopImport = cancel
	go func() {
		run, _, err := d.cfg.Store.ImportReporting(importCtx, opt, d.cfg.Progress)
		done <- result{run, err}
	}()
	select {
	case r := <-done: // nothing to import (done before), or failed at once
		cancel()
		return r.run, r.err
	case r := <-started:
		d.importing = true
		d.importErr = make(chan error, 1)
		go func() {
			r := <-done
			d.importErr <- r.err
		}()
		return r, nil
	}
}

// importEnded reports whether the background import is over, and its error.
func (d *dispatcher) importEnded() (bool, error) {
	if !d.importing {
		return true, nil
	}
	select {
	case err := <-d.importErr:
		d.importing = false
		d.drained = false // new rows may be pending
		return true, err
	default:
		return false, nil
	}
}

// loop polls, ingests and fills until no request is pending and no batch is open.
func (d *dispatcher) loop(ctx context.Context) error {
	st := d.cfg.Store
	for {
		if _, err := d.importEnded(); err != nil {
			return err
		}
		open, err := st.Batches(ctx, d.runID, jobs.BatchCreated)
		if err != nil {
			return err
		}
		now := d.cfg.Clock.Now()
		for _, b := range open {
			ps := d.polls[b.Row]
			if ps == nil {
				ps = &pollState{next: now}
				d.polls[b.Row] = ps
			}
			if now.Before(ps.next) {
				continue
			}
			ended, err := d.poll(ctx, b)
			if err != nil {
				return err
			}
			now = d.cfg.Clock.Now()
			if ended {
				delete(d.polls, b.Row)
				delete(d.canceling, b.Row)
				d.drained = false // its expired or retryable requests are pending again
				d.handDue = true
				continue
			}
			ps.next = now.Add(d.pollInterval(b.AttemptedAt, now))
			if d.canceling[b.Row] {
				ps.next = now.Add(d.cfg.PollMin)
			}
		}
		if d.handDue && !d.importing {
			if err := d.handOver(ctx); err != nil {
				return err
			}
			d.handDue = false
		}
		if !now.Before(d.fillAfter) && (d.cfg.MayFill == nil || d.cfg.MayFill()) {
			if err := d.fill(ctx); err != nil {
				return err
			}
		}
		openN, err := st.OpenBatchRequests(ctx, d.runID)
		if err != nil {
			return err
		}
		if d.cfg.Progress != nil && !now.Before(d.nextStatus) {
			d.nextStatus = now.Add(d.cfg.ProgressEvery)
			d.status(ctx, openN)
		}
		if openN == 0 && !d.importing {
			// A run canceled meanwhile (clade batch cancel) ends here: what is left
			// gets its final canceled line.
			if err := d.settleCanceled(ctx); err != nil {
				return err
			}
			if d.drained || d.stopped != "" {
				return nil
			}
			left, err := d.pendingForBatch(ctx, 0, 1)
			if err != nil {
				return err
			}
			if len(left) == 0 {
				return nil
			}
		}
		// Sleep until the next poll, or the end of a fill backoff. Fill creates
		// batches until the queue is full or nothing is pending, so only a poll (a
		// batch that ended) or a backoff's end can give it more to do.
		var wake time.Time
		if now.Before(d.fillAfter) {
			wake = d.fillAfter
		}
		if openN > 0 && len(d.polls) == 0 {
			wake = now // a batch was just created: poll it now (its state is set above next round)
		}
		for _, ps := range d.polls {
			if wake.IsZero() || ps.next.Before(wake) {
				wake = ps.next
			}
		}
		if wake.IsZero() {
			// Nothing scheduled: the pending requests are not batch dispatch's to
			// send (MayFill said no). Look again later.
			wake = now.Add(d.cfg.PollMin)
		}
		if d.importing && wake.After(now.Add(importPoll)) {
			wake = now.Add(importPoll) // more rows: maybe a full batch
		}
		if wait := wake.Sub(d.cfg.Clock.Now()); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-d.cfg.Clock.After(wait):
			case <-d.cfg.Nudge:
				for _, ps := range d.polls {
					ps.next = time.Time{}
				}
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// pace waits for the batch RPM limiter.
func (d *dispatcher) pace(ctx context.Context) error {
	now := d.cfg.Clock.Now()
	r := d.lim.ReserveN(now, 1)
	if !r.OK() {
		return errors.New("batch rpm limiter: burst too small")
	}
	if wait := r.DelayFrom(now); wait > 0 {
		select {
		case <-ctx.Done():
			r.CancelAt(now)
			return ctx.Err()
		case <-d.cfg.Clock.After(wait):
		}
	}
	return nil
}

// poll retrieves one batch and ingests it if it has ended.
func (d *dispatcher) poll(ctx context.Context, b jobs.BatchRecord) (ended bool, err error) {
	if err := d.pace(ctx); err != nil {
		return false, err
	}
	got, err := d.cfg.Client.GetBatch(ctx, b.BatchID)
	var ae *upstream.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		// Deleted outside clade: its requests without a result are pending again.
		d.log.Warn("batch not found; its requests are sent again", "batch_id", b.BatchID, "requests", b.Requests)
		if err := d.cfg.Store.FinishBatch(ctx, b.Row, d.cfg.Clock.Now()); err != nil {
			return false, err
		}
		d.resubmitted.Add(b.Requests)
		return true, nil
	}
	if err != nil {
		if upstream.Classify(err).Retryable() {
			d.log.Warn("poll batch failed; will retry", "batch_id", b.BatchID, "err", err)
			return false, nil
		}
		return false, fmt.Errorf("poll batch %s: %w", b.BatchID, err)
	}
	if got.ProcessingStatus != upstream.BatchEnded {
		if got.ProcessingStatus == upstream.BatchCanceling {
			d.canceling[b.Row] = true // ends soon: poll it at the shortest interval
		}
		return false, nil
	}
	if err := d.ingest(ctx, b, got); err != nil {
		if ctx.Err() == nil && upstream.Classify(err).Retryable() {
			d.log.Warn("read batch results failed; will read again", "batch_id", b.BatchID, "err", err)
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// status prints where the run is: results, requests in batches in flight, those
// waiting for a batch, cost so far and the results' rate.
func (d *dispatcher) status(ctx context.Context, inFlight int64) {
	st, err := d.cfg.Store.Status(ctx, d.runID)
	if err != nil || st.Requests == 0 {
		return
	}
	done := st.Requests - st.Pending
	elapsed := d.cfg.Clock.Now().Sub(d.start)
	prices := "at batch prices"
	if d.cfg.RetryVia == RetryRealtime {
		prices = "so far"
	}
	line := fmt.Sprintf("status: %d/%d done (%.1f%%), %d in batches in flight, %d waiting; $%.4f %s; %s",
		done, st.Requests, 100*float64(done)/float64(st.Requests), inFlight, max(st.Pending-inFlight, 0), st.CostUSD, prices, elapsed.Round(time.Second))
	if n := done - d.doneAtStart; n > 0 && elapsed > 0 {
		line += fmt.Sprintf(" (%.0f results/min)", float64(n)/elapsed.Minutes())
	}
	if d.rt != nil {
		if q, err := d.cfg.Store.Unfinished(ctx, d.runID); err == nil {
			line += fmt.Sprintf("; realtime: %d of %d retries left", q, d.rtHanded)
		}
	}
	fmt.Fprintln(d.cfg.Progress, line)
}

func (d *dispatcher) summary(ctx context.Context) *Summary {
	s := &Summary{RunID: d.runID, Batches: d.batches.Load(), Resubmitted: d.resubmitted.Load(), Elapsed: d.cfg.Clock.Now().Sub(d.start), Stopped: d.stopped}
	s.Realtime, s.RealtimeSent = d.rtHanded, d.rtSent
	if d.rt != nil && d.rt.sum != nil {
		s.RealtimeSent += d.rt.sum.Sent
		if s.Stopped == "" {
			s.Stopped = d.rt.sum.Stopped
		}
	}
	st, err := d.cfg.Store.Status(ctx, d.runID)
	if err != nil {
		d.log.Warn("the summary lacks the run's counts: reading them failed (clade status shows them)", "err", err)
		return s
	}
	s.Requests, s.Problems, s.Pending = st.Requests, st.Problems, st.Pending
	s.Succeeded, s.Errored = st.Results[jobs.Succeeded], st.Results[jobs.Errored]
	s.Expired, s.Canceled = st.Results[jobs.Expired], st.Results[jobs.Canceled]
	s.InputTokens = st.Usage.InputTokens + st.Usage.CacheWrite5mTokens + st.Usage.CacheWrite1hTokens + st.Usage.CacheReadTokens
	s.OutputTokens = st.Usage.OutputTokens
	s.CostUSD = st.CostUSD
	return s
}
