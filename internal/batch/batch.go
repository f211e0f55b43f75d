package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/display"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/upstream"
)

// Defaults.
const (
	DefaultTier = "start"
	// TierAuto (Config's Tier) takes the catalog's most cautious tier's batch limits.
	TierAuto               = "auto"
	DefaultMaxRounds       = 5
	DefaultPollMin         = time.Second
	DefaultPollMax         = time.Minute
	DefaultReconcileWindow = 10 * time.Minute
	// importPoll is how often a fill is tried while the input is still imported.
	importPoll = 50 * time.Millisecond
	// pendingPage is how many request rows (with their params) one store query loads.
	pendingPage = 1000
	// pendingOrder is how many pending requests a fill puts in order at a time
	// (jobs.Store.BatchPending), read pendingPage rows at a time.
	pendingOrder = 20000
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

// Config configures Run. Store, Client and Input (in the Spec) are required;
// the Spec's Tier names the catalog tier whose batch limits apply (default
// DefaultTier), its Progress receives one line per batch event and a status line
// every ProgressEvery, and its Budget, when positive, stops creating batches
// before the run's cost could exceed it: each request counts at batch prices
// with its estimated input and whole max_tokens until its result is read (open
// batches are still read). Its Registry receives the clade_batch_* metrics, read
// from the store when scraped.
type Config struct {
	lifecycle.Spec
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
	// CacheWarm says whether a prompt-cache prefix's lines wait for one of them to
	// be answered through realtime first, so that the batch reads the prefix
	// instead of writing it on several lines (warm.go): CacheWarmOff (the
	// default) or CacheWarmRealtime, for the prefixes where that pays.
	CacheWarm string
	// CacheWarmGroup is the best-effort batch cache the warm rule assumes: a
	// batch's requests are cached in groups of this many processed together, so
	// a cold prefix is written by its lines in its first group (warmSaving).
	// Default DefaultCacheWarmGroup (4), as the emulator's.
	CacheWarmGroup int
	// Realtime carries the realtime workers' own settings for RetryRealtime
	// (concurrency, attempts, limiter, Progress, Registry); the store, client,
	// catalog, input, results file, tier and budget are this Config's
	// (lifecycle.Spec.Sharing), and so is the routing unless it has its own.
	// CacheWarmRealtime's warm calls go through the same workers.
	Realtime runner.Config
	// PollMin and PollMax bound the wait between two polls of a running batch, which
	// is a fortieth of the batch's age; polls also keep to half the batch RPM.
	// Defaults 1 s and 1 min.
	PollMin, PollMax time.Duration
	// ReconcileWindow is the clock skew allowed when matching an unrecorded intent
	// against the API's batches: batches created from the intent's time less this
	// are candidates. Default 10 min.
	ReconcileWindow time.Duration
	// ProgressEvery is the period of the status line. Default 30 s.
	ProgressEvery time.Duration
	// Routing picks each request's model (--model, --routing), as clade run does;
	// nil keeps each line's model, clade's aliases resolved.
	Routing *runner.Routing
	// ResumeCanceled sends again the requests of a run stopped by Cancel (clade
	// batch cancel): their canceled results are deleted first. Without it, a
	// canceled run reads its batches and sends nothing again.
	ResumeCanceled bool
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
	// StopRealtime, once closed, stops the realtime workers the dispatcher started
	// for CacheWarmRealtime's warm calls at its next turn (send a Nudge to make it
	// now), and none starts again; RealtimeStopped is then called, once, when
	// they are down (at once when there were none). The hybrid mode closes it as
	// it spills, so that its own workers, with the spill's budget, are the only
	// ones of the run: the warm calls still queued are theirs. Both nil: the
	// dispatcher's workers run until Run ends.
	StopRealtime    <-chan struct{}
	RealtimeStopped func()
	// Leased says the caller holds the run's lease (jobs.Store.AcquireLease), as
	// the hybrid mode does; by default Run takes it, and fails with jobs.ErrLeased
	// if another process holds it.
	Leased bool
	// KeepJobs keeps the run's River jobs: a hybrid run's realtime workers own the
	// requests that have one. By default they are deleted, as batch dispatch owns
	// every request.
	KeepJobs bool
	// Test holds hooks for tests; leave it zero.
	Test TestHooks
}

// TestHooks are the dispatcher's hooks for tests.
type TestHooks struct {
	// AfterCreate, when set, runs after a create call returns and before its id
	// is recorded; an error stops Run there, as a crash would (crash tests).
	AfterCreate func(b *upstream.Batch) error
	// Clock is the time source. Default: the real clock.
	Clock Clock
	// AfterWarm, when set, runs when a fill's warm calls (CacheWarmRealtime)
	// have all been answered, before its batch is created; an error stops
	// Run there, as a crash would.
	AfterWarm func() error
}

// Summary is what a batch run did: the run's Totals (from the store; its cost
// at batch prices, realtime retries at full price) and this process's batches.
type Summary struct {
	lifecycle.Totals
	// Batches counts batches this process created (or adopted); Resubmitted the
	// result lines that sent their request to a later batch (or to realtime).
	Batches, Resubmitted int64
	// Realtime counts the requests this process handed to realtime workers
	// (RetryRealtime), RealtimeSent their calls.
	Realtime, RealtimeSent int64
	// CacheReadTokens, CacheWriteTokens and BatchInputTokens are the prompt-cache
	// reads, writes and all input tokens (uncached, written and read) of the
	// succeeded batch results this process read (realtime retries not included):
	// the cache read share is CacheReadTokens / BatchInputTokens.
	CacheReadTokens, CacheWriteTokens, BatchInputTokens int64
	// WarmedPrefixes counts the prompt-cache prefixes this process warmed with a
	// realtime call before their batch (CacheWarmRealtime), WarmCostUSD what
	// those calls cost (at full price); WarmSkipped the prefixes where warming
	// did not pay.
	WarmedPrefixes, WarmSkipped int64
	WarmCostUSD                 float64
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
	how := []string{fmt.Sprintf("%d batches created, %d requests resubmitted, in %s", s.Batches, s.Resubmitted, s.Elapsed.Round(time.Millisecond))}
	prices := "at batch prices"
	if s.Realtime > 0 {
		how = append(how, fmt.Sprintf("%d requests retried in realtime (%d calls)", s.Realtime, s.RealtimeSent))
		prices = "at batch and realtime prices"
	}
	if s.WarmedPrefixes > 0 || s.WarmSkipped > 0 {
		how = append(how, fmt.Sprintf("prompt cache: %d prefixes warmed in realtime before their batch ($%.4f at full price), %d where warming did not pay",
			s.WarmedPrefixes, s.WarmCostUSD, s.WarmSkipped))
		if s.WarmedPrefixes > 0 {
			prices = "at batch and realtime prices"
		}
	}
	if s.CacheReadTokens+s.CacheWriteTokens > 0 && s.BatchInputTokens > 0 {
		how = append(how, fmt.Sprintf("prompt cache: reads %s of batch input tokens (%d read, %d written, of %d)",
			percent(s.CacheReadTokens, s.BatchInputTokens), s.CacheReadTokens, s.CacheWriteTokens, s.BatchInputTokens))
	}
	return s.Describe(prices, how...)
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if err := out.Check("batch"); err != nil {
		return out, err
	}
	switch out.Tier {
	case "":
		out.Tier = DefaultTier
	case TierAuto:
		// Batch limits are not in response headers: auto is the most cautious
		// tier's, as realtime's auto starts from.
		out.Tier = out.Catalog.CautiousTier()
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
	switch out.CacheWarm {
	case "":
		out.CacheWarm = CacheWarmOff
	case CacheWarmOff, CacheWarmRealtime:
	default:
		return out, fmt.Errorf("batch: CacheWarm %q: want %q or %q", out.CacheWarm, CacheWarmOff, CacheWarmRealtime)
	}
	if out.CacheWarmGroup <= 0 {
		out.CacheWarmGroup = DefaultCacheWarmGroup
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
	if out.Test.Clock == nil {
		out.Test.Clock = realClock{}
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
	if c.Progress != nil {
		if _, ok := c.Progress.(display.Screen); !ok {
			// Everything written to Progress (the import's skipped lines, events)
			// is said above the display's block.
			c.Progress = display.NewBoard(c.Progress, 1).Part(0)
		}
	}
	d := &dispatcher{cfg: c, log: c.Logger, clock: c.Test.Clock, start: c.Test.Clock.Now(), polls: map[int64]*pollState{}, canceling: map[int64]bool{}}
	if c.Progress != nil {
		d.screen = display.New(c.Progress)
	}
	burst := max(1, int(c.RPM/60))
	d.lim = rate.NewLimiter(rate.Limit(c.RPM/60), burst)
	return d.run(ctx)
}

type dispatcher struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	lim   *rate.Limiter
	life  *lifecycle.Run // the run: its import and results file
	out   *outputFile
	runID int64
	start time.Time
	polls map[int64]*pollState // by clade_batch row
	// screen shows the progress (progress.go); nil without Progress. shown is
	// what the loop publishes for its terminal display.
	screen display.Screen
	shown  shown
	// canceling holds the rows of batches last seen canceling.
	canceling map[int64]bool
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
	// nextDashboard is when the dashboard is next given the counts (dashboard.go).
	nextDashboard time.Time
	// fillAfter holds fill back after a 429 or a failed create.
	fillAfter time.Time
	failures  int

	// rt is the realtime workers of RetryRealtime, once started (the latest, when
	// a budget stop was lifted); rtHanded counts the requests handed to realtime,
	// rtSent the calls of earlier runners.
	rt               *realtime
	rtHanded, rtSent int64
	yielded          bool  // Config.StopRealtime was seen: no workers of its own from then on
	warmQueued       int64 // warm calls queued for the realtime workers (CacheWarmRealtime)

	// warm is each prompt-cache prefix's warming (CacheWarmRealtime, warm.go);
	// warmed the requests of the warm calls that cached their prefix, warmSkipped
	// the prefixes where warming did not pay; warmWake when fill looks again at
	// warm calls that have not started answering.
	warm        map[warmID]*warmState
	warmed      []int64
	warmSkipped int64
	warmWake    time.Time
	// warmStarted and warmSaving are the warm calls queued in this warmUp and
	// what they are expected to save, for its progress line.
	warmStarted int
	warmSaving  float64

	// batches and resubmitted are read by the metrics collector too.
	batches, resubmitted atomic.Int64
	// cacheRead, cacheWrite and cacheInput sum the succeeded results' prompt-cache
	// reads, writes and all input tokens over the batches this process read.
	cacheRead, cacheWrite, cacheInput atomic.Int64
	doneAtStart                       int64
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
	// Unless Strict (which must see every line before sending any), the import
	// goes on in the background: the first batch is created while the rest of a
	// large file is read (the loop takes only full batches until it ends).
	life, err := lifecycle.Start(ctx, d.cfg.Spec, lifecycle.Import{NoJobs: true, Background: true})
	if life == nil {
		return nil, err
	}
	d.life, d.runID = life, life.ID
	defer func() { retErr = life.Finish(ctx, retErr) }()
	if err != nil { // Strict
		return d.summary(ctx), err
	}
	if !d.cfg.Leased {
		// One dispatcher per run: two would both create batches for the same
		// requests.
		leased, release, err := life.HoldLease(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
		ctx = leased
	}
	if err := st.PrepareBatches(ctx); err != nil {
		return nil, err
	}
	if err := d.prepareCanceled(ctx); err != nil {
		return nil, err
	}
	if !d.cfg.KeepJobs && d.cfg.RetryVia != RetryRealtime {
		if _, err := st.DropRequestJobs(ctx, d.runID); err != nil {
			return nil, fmt.Errorf("drop realtime jobs: %w", err)
		}
	}
	if err := life.OpenOutput(ctx); err != nil {
		return nil, err
	}
	if life.Out != nil {
		d.out = &outputFile{life.Out}
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
	stopLive := func() {}
	if d.screen != nil && d.screen.Live() {
		liveCtx, cancel := context.WithCancel(ctx)
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			d.drawLive(liveCtx)
		}()
		stopLive = sync.OnceFunc(func() { cancel(); <-ended })
		defer stopLive()
	}
	d.handDue = true // a resumed run may have requests for realtime
	err = d.loop(ctx)
	if err == nil {
		err = d.awaitRealtime(ctx)
	}
	d.closeRealtime()
	d.publish()
	stopLive()                                        // its last frame: the run's end
	d.feedDashboard(context.WithoutCancel(ctx), true) // and the dashboard's
	sum := d.summary(context.WithoutCancel(ctx))
	if lifecycle.LeaseLost(ctx) {
		return sum, context.Cause(ctx)
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return sum, nil // interrupted: the batches in flight stay recorded
	}
	return sum, err
}

// prepareCanceled handles a run stopped by Cancel: with ResumeCanceled it
// reopens the run (its canceled results are deleted, so those requests are sent
// again); without, it says what this run will do.
func (d *dispatcher) prepareCanceled(ctx context.Context) error {
	at, err := d.cfg.Store.BatchRunCanceled(ctx, d.runID)
	if err != nil || at.IsZero() {
		return err
	}
	if d.cfg.ResumeCanceled {
		n, err := d.cfg.Store.ReopenCanceledRun(ctx, d.runID)
		if err != nil {
			return err
		}
		d.progress("run %d resumed after its cancel: %d canceled requests will be sent again", d.runID, n)
		return nil
	}
	d.progress("run %d was canceled at %s: reading its batches, nothing is sent again (--resume-canceled sends the canceled requests)",
		d.runID, at.Local().Format(time.DateTime))
	return nil
}

// importEnded reports whether the background import is over, and its error.
func (d *dispatcher) importEnded() (bool, error) {
	was := d.life.Importing()
	ended, err := d.life.ImportEnded()
	if was && ended {
		d.drained = false // new rows may be pending
	}
	return ended, err
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
		now := d.clock.Now()
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
			now = d.clock.Now()
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
		if d.handDue && !d.life.Importing() {
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
		d.yieldRealtime() // realtime.go
		openN, err := st.OpenBatchRequests(ctx, d.runID)
		if err != nil {
			return err
		}
		d.feedDashboard(ctx, false) // dashboard.go
		d.publish()                 // progress.go
		if d.screen != nil && !now.Before(d.nextStatus) {
			d.nextStatus = now.Add(d.cfg.ProgressEvery)
			d.status(ctx)
		}
		if openN == 0 && !d.life.Importing() {
			// A run canceled meanwhile (clade batch cancel) ends here: what is left
			// gets its final canceled line.
			if err := d.settleCanceled(ctx); err != nil {
				return err
			}
			if d.drained || d.stopped != "" {
				return nil
			}
			left, err := d.pendingForBatch(ctx, jobs.BatchCursor{}, 1)
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
		if !d.warmWake.IsZero() && (wake.IsZero() || d.warmWake.Before(wake)) {
			wake = d.warmWake // a warm call may have started answering
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
		if d.life.Importing() && wake.After(now.Add(importPoll)) {
			wake = now.Add(importPoll) // more rows: maybe a full batch
		}
		if wait := wake.Sub(d.clock.Now()); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-d.clock.After(wait):
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
	now := d.clock.Now()
	r := d.lim.ReserveN(now, 1)
	if !r.OK() {
		return errors.New("batch rpm limiter: burst too small")
	}
	if wait := r.DelayFrom(now); wait > 0 {
		select {
		case <-ctx.Done():
			r.CancelAt(now)
			return ctx.Err()
		case <-d.clock.After(wait):
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
		if err := d.cfg.Store.FinishBatch(ctx, b.Row, d.clock.Now()); err != nil {
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

func (d *dispatcher) summary(ctx context.Context) *Summary {
	s := &Summary{Batches: d.batches.Load(), Resubmitted: d.resubmitted.Load()}
	s.Totals = d.life.Totals(ctx)
	s.Elapsed, s.Stopped = d.clock.Now().Sub(d.start), d.stopped
	s.Realtime, s.RealtimeSent = d.rtHanded, d.rtSent
	s.CacheReadTokens, s.CacheWriteTokens, s.BatchInputTokens = d.cacheRead.Load(), d.cacheWrite.Load(), d.cacheInput.Load()
	s.WarmedPrefixes, s.WarmCostUSD = d.warmReport(ctx)
	s.WarmSkipped = d.warmSkipped
	if d.rt != nil {
		if rs, _ := d.rt.w.Result(); rs != nil {
			s.RealtimeSent += rs.Sent
			if s.Stopped == "" {
				s.Stopped = rs.Stopped
			}
		}
	}
	return s
}
