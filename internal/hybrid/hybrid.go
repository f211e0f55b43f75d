// Package hybrid runs a workload against a deadline at the lowest cost: requests go
// to Message Batches (half price) first, and realtime workers take over what is
// left when the deadline comes close.
//
// The rule, re-evaluated every tick as batches progress:
//
//	lead = Safety × T_rt(remaining) + Slack
//	spill when  now ≥ deadline − (lead + clamp(lead/10, 1 s, 30 s))
//
// where T_rt is the sustained realtime time of the requests without a result at
// the tier's limits (plan.Sustained: no burst credit, expected output from
// max_tokens), plus the slowest class's latency, and the last term is the
// hand-over: how long realtime may wait for a cancelled batch (takeoverWait).
// Until then only batches work
// (package batch's dispatcher). The spill is recorded in the store (a resumed run
// goes on in realtime), no new batch is created, and the realtime runner (package
// runner) starts on the requests in no batch. Open batches are then handed over
// one at a time, the most recent first, while realtime's queue is short: the batch
// is cancelled, what it already did comes back as results when it ends (a running
// batch shows none), and only then are its other requests sent, from its last
// line back. So nothing a batch did is paid again, unless a cancelled batch takes
// longer than takeoverWait to end. A worker skips a request that got a result
// meanwhile. When every request has a result, the batches still open are
// cancelled.
//
// If realtime alone cannot finish in the window, the spill is due at once: the
// first batches are created (within FillGrace), realtime works from the back and
// the API from the front, and whatever the batches finish before realtime reaches
// them is paid at half price.
package hybrid

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/display"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/plan"
	"github.com/clade-dev/clade/internal/runner"
)

// Defaults.
const (
	DefaultSafety = 1.25
	// endWait is how long a finished run waits for its cancelled batches to end.
	endWait = time.Minute
	// maxSlack caps the fixed margin added to the realtime estimate.
	maxSlack = 5 * time.Minute
)

// Config configures Run. Store, Client, Input and Tier (in the Spec) and Deadline
// are required. The Spec's results file is shared by realtime and batch; its
// Tier is the catalog tier whose realtime and batch limits apply (the plan needs
// numbers, so "auto" is not allowed); its Budget, when positive, stops the run
// before its cost could exceed it; its Progress receives the plan, re-plans and
// both modes' progress: on a terminal one block, realtime's rows (the run's total,
// read from the store, and each model class) above the batches'.
type Config struct {
	lifecycle.Spec
	// Deadline is when every request should have its result.
	Deadline time.Time
	// DeadlineSpec, when set, is the --deadline text Deadline was computed from as
	// a duration from now ("3h"). The first run records the deadline with it; a
	// resumed run given the same text keeps the recorded deadline instead of
	// counting the duration again from its own start. Leave it empty for a clock
	// time, which means the same instant whenever it is given.
	DeadlineSpec string
	// Safety multiplies the realtime estimate. Default DefaultSafety (1.25).
	Safety float64
	// Slack is added to the realtime estimate. Default 5% of the window at start,
	// at most 5 minutes.
	Slack time.Duration
	// MinBatchWindow: with less time than this to the deadline at start, no batch
	// is used. Default 0: a batch is always tried (it costs nothing for what it does
	// not process, and cancelling it returns what it did).
	MinBatchWindow time.Duration
	// FillGrace is how long a due spill waits for the first batches to be created.
	// Default 5% of the window, at most 10 s.
	FillGrace time.Duration
	// Output assumption of the estimate. Zero: plan.DefaultOutputRatio.
	OutputAssumption plan.OutputAssumption
	// Realtime and Batch carry the runner's and the dispatcher's own settings
	// (concurrency, routing, batch size, polling, Progress, Registry, ...); their
	// Spec is this Config's (lifecycle.Spec.Sharing).
	Realtime runner.Config
	Batch    batch.Config
	// Tick is how often the plan is re-made. Default 1% of the window, within
	// [200 ms, 5 s].
	Tick time.Duration
}

// Summary is what a hybrid run did: the run's Totals (from the store) and how
// the work was shared between batches and realtime.
type Summary struct {
	lifecycle.Totals
	// Spilled says whether realtime took part, and when.
	Spilled   bool
	SpilledAt time.Time
	// RealtimeSent counts the realtime calls of this process; RealtimeRateLimited
	// those answered 429.
	RealtimeSent, RealtimeRateLimited int64
	// Batches created; BatchesCanceled because realtime had done their work.
	Batches, BatchesCanceled int64
	// WarmedPrefixes counts the prompt-cache prefixes warmed by a realtime call
	// before their batch (Batch.CacheWarm), WarmCostUSD what those calls cost.
	WarmedPrefixes int64
	WarmCostUSD    float64
	Finished       time.Time
	// Deadline is the deadline the run worked to (a resumed run's may be the one
	// recorded at its first start: Config.DeadlineSpec).
	Deadline time.Time
	// Late is how long after the deadline the last result came (0: in time).
	Late time.Duration
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
	how := fmt.Sprintf("%d batches created (%d canceled for realtime to take over)", s.Batches, s.BatchesCanceled)
	if s.Spilled {
		how += fmt.Sprintf("; realtime from %s: %d calls", s.SpilledAt.Local().Format("15:04:05"), s.RealtimeSent)
	} else {
		how += "; no realtime needed"
	}
	if s.WarmedPrefixes > 0 {
		how += fmt.Sprintf("; %d prompt-cache prefixes warmed in realtime before their batch ($%.4f)", s.WarmedPrefixes, s.WarmCostUSD)
	}
	how += fmt.Sprintf("; in %s", s.Elapsed.Round(time.Millisecond))
	at := s.Deadline.Local().Format("15:04:05")
	var met string
	switch {
	case s.Pending > 0:
		met = fmt.Sprintf("deadline %s: not finished", at)
	case s.Late > 0:
		met = fmt.Sprintf("deadline %s: missed by %s", at, s.Late.Round(time.Second))
	default:
		met = fmt.Sprintf("deadline %s: met with %s to spare", at, s.Deadline.Sub(s.Finished).Round(time.Second))
	}
	return s.Describe("", how, met)
}

// Run imports the input (or resumes its run) and works it to the deadline.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	h, err := newHybrid(cfg)
	if err != nil {
		return nil, err
	}
	return h.run(ctx)
}

type hybrid struct {
	cfg   Config
	log   *slog.Logger
	tier  *catalog.Tier
	start time.Time
	runID int64
	life  *lifecycle.Run

	spilled   atomic.Bool
	spilledAt time.Time
	canceled  map[string]bool // batch ids asked to cancel
	nCanceled int64

	// Realtime: startRealtime starts rt (once), finish lets it stop when the run
	// is complete; takeover holds the batches cancelled for realtime (clade_batch
	// row → when), lowWater the queue depth under which it takes another.
	startRealtime func() error
	rt            *runner.Worker
	takeover      map[int64]time.Time
	lowWater      int64
	// nudge asks the dispatcher to poll its batches now.
	nudge chan struct{}
	// yield, closed at the spill, stops the dispatcher's realtime workers (the
	// warm calls of batch.CacheWarmRealtime), and yielded is closed once they
	// are down: realtime starts after that, so one set of workers has the run.
	yield, yielded chan struct{}
	// rtProgress is the realtime part of the screen (Config.Progress is the
	// batches' and the events'); nil without Progress.
	rtProgress io.Writer
}

func newHybrid(cfg Config) (*hybrid, error) {
	if err := cfg.Check("hybrid"); err != nil {
		return nil, err
	}
	if cfg.Deadline.IsZero() {
		return nil, errors.New("hybrid: a deadline is required")
	}
	tier, err := cfg.Catalog.Tier(cfg.Tier)
	if err != nil {
		return nil, fmt.Errorf("hybrid needs the account's limits to plan: %w", err)
	}
	if cfg.Safety <= 0 {
		cfg.Safety = DefaultSafety
	}
	return &hybrid{cfg: cfg, log: cfg.Logger, tier: tier, canceled: map[string]bool{},
		takeover: map[int64]time.Time{}, nudge: make(chan struct{}, 1), yield: make(chan struct{}), yielded: make(chan struct{})}, nil
}

func (h *hybrid) printf(format string, args ...any) {
	if h.cfg.Progress != nil {
		fmt.Fprintf(h.cfg.Progress, format+"\n", args...)
	}
}

func (h *hybrid) run(ctx context.Context) (_ *Summary, retErr error) {
	h.start = time.Now()
	if h.cfg.Progress != nil {
		// One screen for both modes: realtime's block (with the run's total, read
		// from the store) on top, the batches' below, without their total once
		// realtime draws; before the spill only the batches draw.
		board := display.NewBoard(h.cfg.Progress, 2)
		h.rtProgress, h.cfg.Progress = board.Part(0), board.Part(1)
	}
	st := h.cfg.Store
	life, err := lifecycle.Start(ctx, h.cfg.Spec, lifecycle.Import{NoJobs: true})
	if life == nil {
		return nil, err
	}
	h.life, h.runID = life, life.ID
	if err != nil { // Strict
		return h.summary(ctx, nil), err
	}
	if err := st.PrepareBatches(ctx); err != nil {
		return nil, err
	}
	// One dispatcher per run, realtime and batch together.
	ctx, release, err := life.HoldLease(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := life.OpenOutput(ctx); err != nil {
		return nil, err
	}
	defer func() { retErr = life.Finish(ctx, retErr) }()
	if err := st.PrepareHybrid(ctx); err != nil {
		return nil, err
	}
	if err := h.settleDeadline(ctx, life.Stats.Reset); err != nil {
		return nil, err
	}
	window := time.Until(h.cfg.Deadline)
	if h.cfg.Slack <= 0 {
		h.cfg.Slack = min(max(window/20, 0), maxSlack)
	}
	if h.cfg.FillGrace <= 0 {
		h.cfg.FillGrace = min(max(window/20, 0), 10*time.Second)
	}
	if h.cfg.Tick <= 0 {
		h.cfg.Tick = min(max(window/100, 200*time.Millisecond), 5*time.Second)
	}
	// A run that already moved work to realtime (a resumed one) goes on in realtime.
	if at, err := st.SpilledAt(ctx, h.runID); err != nil {
		return nil, err
	} else if !at.IsZero() {
		h.spilled.Store(true)
		h.spilledAt = at
	}
	noBatch := window < h.cfg.MinBatchWindow

	est, err := h.estimate(ctx)
	if err != nil {
		return nil, err
	}
	h.printPlan(est, window, noBatch)

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var wg sync.WaitGroup
	var batchSum *batch.Summary
	var batchErr error
	batchDone := make(chan struct{})
	if noBatch {
		close(batchDone)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(batchDone)
			bc := h.cfg.Batch
			bc.Spec = h.cfg.Sharing(bc.Spec, life.Out)
			bc.Progress = h.cfg.Progress // batch events are the run's
			bc.KeepJobs, bc.Nudge, bc.Leased = true, h.nudge, true
			bc.MayFill = func() bool { return !h.spilled.Load() }
			if bc.CacheWarm == batch.CacheWarmRealtime {
				// The warm calls go through the dispatcher's own realtime workers
				// until the spill, which stops them before this run's start.
				bc.Realtime = h.cfg.Realtime
				bc.Realtime.Registry = nil                                                 // the run's workers register clade_run_* once they start
				bc.StopRealtime, bc.RealtimeStopped = h.yield, func() { close(h.yielded) } // called once
			}
			batchSum, batchErr = batch.Run(runCtx, bc)
		}()
	}

	var rtSum *runner.Summary
	var rtErr error
	rtDone := make(chan struct{})
	h.startRealtime = func() error {
		if err := h.awaitWarmWorkers(ctx, batchDone); err != nil {
			return err
		}
		h.lowWater = h.realtimeLead(est)
		if _, err := h.handOver(ctx); err != nil {
			return err
		}
		rc := h.cfg.Realtime
		rc.Spec = h.cfg.Sharing(rc.Spec, life.Out)
		if h.rtProgress != nil {
			rc.Progress = h.rtProgress
		}
		if h.cfg.Budget > 0 {
			// Requests in open batches may still be billed, at batch price: hold
			// their worst case back from what realtime may spend.
			held, err := batch.HeldWorstCase(ctx, st, h.cfg.Catalog, h.runID)
			if err != nil {
				return err
			}
			rc.BudgetHeld = held
		}
		h.rt = runner.Start(runCtx, rc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(rtDone)
			<-h.rt.Done()
			rtSum, rtErr = h.rt.Result()
		}()
		return nil
	}
	if h.spilled.Load() {
		if err := h.startRealtime(); err != nil {
			return h.summary(ctx, nil), err
		}
	}

	err = h.watch(ctx, batchDone, rtDone)
	if lifecycle.LeaseLost(ctx) {
		err = lifecycle.ErrLeaseLost
	}
	h.finish()
	cancelRun()
	wg.Wait()
	sum := h.summary(context.WithoutCancel(ctx), batchSum)
	if rtSum != nil {
		sum.Stopped, sum.RealtimeSent, sum.RealtimeRateLimited = rtSum.Stopped, rtSum.Sent, rtSum.RateLimited
	}
	if err == nil {
		err = errors.Join(ignoreCanceled(batchErr), ignoreCanceled(rtErr))
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // interrupted: the store holds where the run is; the next Run resumes
	}
	return sum, err
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// settleDeadline keeps the deadline a resumed run recorded when it is given the
// same duration again, and records the deadline otherwise (a new input, reset by
// --force, is a new run).
func (h *hybrid) settleDeadline(ctx context.Context, reset bool) error {
	st := h.cfg.Store
	if spec := h.cfg.DeadlineSpec; spec != "" && !reset {
		was, at, err := st.RunDeadline(ctx, h.runID)
		if err != nil {
			return err
		}
		if was == spec && !at.IsZero() {
			if !at.Equal(h.cfg.Deadline) {
				h.printf("deadline %s kept from this run's first start (--deadline %s); give a clock time to change it",
					at.Local().Format("2006-01-02 15:04:05"), spec)
			}
			h.cfg.Deadline = at
			return nil
		}
	}
	return st.SetRunDeadline(ctx, h.runID, h.cfg.DeadlineSpec, h.cfg.Deadline)
}

// awaitWarmWorkers, with prompt-cache warm calls on (Batch.CacheWarm), stops the
// dispatcher's realtime workers and waits until they are down (or the dispatcher
// has ended), so that the run's realtime workers start alone.
func (h *hybrid) awaitWarmWorkers(ctx context.Context, batchDone <-chan struct{}) error {
	if h.cfg.Batch.CacheWarm != batch.CacheWarmRealtime {
		return nil
	}
	select {
	case <-h.yield:
	default:
		close(h.yield)
	}
	select {
	case h.nudge <- struct{}{}:
	default:
	}
	select {
	case <-h.yielded:
	case <-batchDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// finish lets the realtime workers stop (once).
func (h *hybrid) finish() {
	if h.rt != nil {
		h.rt.Finish()
	}
}

// watch re-plans every tick until every request has a result (and the batches
// left are cancelled and read), ctx ends, or a part fails.
func (h *hybrid) watch(ctx context.Context, batchDone, rtDone <-chan struct{}) error {
	t := time.NewTicker(h.cfg.Tick)
	defer t.Stop()
	lastPrint := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-batchDone:
			batchDone = nil
			if h.spilled.Load() {
				continue // realtime goes on
			}
			// Batches finished everything (or the dispatcher failed).
			if left, err := h.unfinished(ctx); err != nil || left == 0 {
				return err
			}
			if err := h.spill(ctx, "batch dispatch stopped with work left"); err != nil {
				return err
			}
			if err := h.startRealtime(); err != nil {
				return err
			}
		case <-rtDone:
			// Realtime stopped (its budget, the API) before the run was complete.
			return h.endBatches(ctx, batchDone)
		case <-t.C:
		}
		if h.spilled.Load() {
			left, err := h.unfinished(ctx)
			if err != nil {
				return err
			}
			if left == 0 {
				return h.endBatches(ctx, batchDone)
			}
			if err := h.cancelOpen(ctx, true); err != nil {
				h.log.Warn("cancel covered batches", "err", err)
			}
			if _, err := h.handOver(ctx); err != nil {
				return err
			}
			continue
		}
		est, err := h.estimate(ctx)
		if err != nil {
			return err
		}
		spillAt := h.spillTime(est)
		now := time.Now()
		if time.Since(lastPrint) >= 30*time.Second || now.Sub(lastPrint) >= time.Until(spillAt)/2 && time.Since(lastPrint) >= 5*time.Second {
			lastPrint = now
			h.printf("re-plan: %d requests left (%d in batches); realtime would need %s; %s",
				est.requests, est.inBatch, round(est.realtime), h.spillPhrase(spillAt))
		}
		if now.Before(spillAt) {
			continue
		}
		if est.requests-est.inBatch > 0 && now.Sub(h.start) < h.cfg.FillGrace {
			continue // let the first batches be created before realtime takes the rest
		}
		if err := h.spill(ctx, fmt.Sprintf("%d requests left, realtime needs about %s, the deadline is in %s",
			est.requests, round(est.realtime), round(time.Until(h.cfg.Deadline)))); err != nil {
			return err
		}
		if err := h.startRealtime(); err != nil {
			return err
		}
	}
}

// endBatches cancels the batches still open (the run no longer needs them) and
// waits a while for the dispatcher to read what they did.
func (h *hybrid) endBatches(ctx context.Context, batchDone <-chan struct{}) error {
	h.finish()
	if err := h.cancelOpen(ctx, false); err != nil {
		h.log.Warn("cancel batches", "err", err)
	}
	if batchDone == nil {
		return nil
	}
	select {
	case <-batchDone:
	case <-ctx.Done():
	case <-time.After(endWait):
		h.printf("batches still canceling after %s; the next run of this command reads them", endWait)
	}
	return nil
}

// handOver gives realtime its next requests. Requests in no open batch are
// enqueued at once. Open batches are taken over one at a time, the most recent
// first, while realtime's queue holds less than lowWater requests: the batch is
// cancelled first, so that what it already did comes back as results (a running
// batch shows none), and its requests are enqueued once it has ended and been
// read, or takeoverWait after the cancel if it has not. It returns how many
// requests it enqueued.
func (h *hybrid) handOver(ctx context.Context) (int64, error) {
	st := h.cfg.Store
	queued, err := st.Unfinished(ctx, h.runID)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	var ready []int64
	var taking int64
	for row, at := range h.takeover {
		if now.Sub(at) >= h.takeoverWait() {
			ready = append(ready, row)
		}
	}
	open, err := st.Batches(ctx, h.runID, jobs.BatchCreated)
	if err != nil {
		return 0, err
	}
	for _, b := range open {
		if _, ok := h.takeover[b.Row]; ok {
			taking += b.Requests
		}
	}
	slices.SortFunc(open, func(a, b jobs.BatchRecord) int { return cmp.Compare(b.Row, a.Row) })
	nudge := false
	for _, b := range open {
		if queued+taking >= h.lowWater {
			break
		}
		if _, ok := h.takeover[b.Row]; ok || h.canceled[b.BatchID] {
			continue
		}
		if _, err := h.cfg.Client.CancelBatch(ctx, b.BatchID); err != nil {
			h.log.Warn("cancel batch for realtime", "batch_id", b.BatchID, "err", err)
			continue
		}
		h.canceled[b.BatchID] = true
		h.nCanceled++
		h.takeover[b.Row] = now
		taking += b.Requests
		nudge = true
		h.printf("batch %s canceled: realtime takes over its unprocessed requests", b.BatchID)
	}
	if nudge {
		select {
		case h.nudge <- struct{}{}:
		default:
		}
	}
	n, err := st.EnqueueUnfinished(ctx, h.runID, h.cfg.Realtime.MaxAttempts, ready)
	if n > 0 {
		h.printf("%d requests handed to realtime", n)
	}
	return n, err
}

// takeoverWait is how long realtime waits for a cancelled batch to end before it
// sends the batch's requests anyway: a tenth of the time left, within [1 s, 30 s].
// A batch that ends sooner is handed over as soon as it has been read.
func (h *hybrid) takeoverWait() time.Duration {
	return min(30*time.Second, max(time.Until(h.cfg.Deadline)/10, time.Second))
}

// realtimeLead is how many requests realtime's queue should hold ahead of it: 30 s
// of work at the rate the estimate implies, and at least its concurrency.
func (h *hybrid) realtimeLead(e estimate) int64 {
	conc := int64(h.cfg.Realtime.MaxConcurrency)
	if conc <= 0 {
		conc = 256
	}
	if e.realtime <= 0 {
		return max(e.requests, conc)
	}
	perSec := float64(e.requests) / e.realtime.Seconds()
	return max(int64(perSec*30), conc)
}

// spill moves the run to realtime, for good: the store records it before anything
// else, so a resumed run goes on in realtime.
func (h *hybrid) spill(ctx context.Context, why string) error {
	h.spilled.Store(true)
	h.spilledAt = time.Now()
	if err := h.cfg.Store.MarkSpilled(ctx, h.runID, h.spilledAt); err != nil {
		return err
	}
	h.printf("spill to realtime: %s", why)
	return nil
}

// cancelOpen cancels the run's open batches: with coveredOnly, those whose every
// request already has a result; else all of them (the run is over).
func (h *hybrid) cancelOpen(ctx context.Context, coveredOnly bool) error {
	st := h.cfg.Store
	var bs []jobs.BatchRecord
	var err error
	if coveredOnly {
		bs, err = st.CoveredBatches(ctx, h.runID)
	} else {
		bs, err = st.Batches(ctx, h.runID, jobs.BatchCreated)
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range bs {
		if h.canceled[b.BatchID] {
			continue
		}
		if _, err := h.cfg.Client.CancelBatch(ctx, b.BatchID); err != nil {
			errs = append(errs, fmt.Errorf("cancel batch %s: %w", b.BatchID, err))
			continue
		}
		h.canceled[b.BatchID] = true
		h.nCanceled++
		h.printf("batch %s canceled: realtime did its remaining work", b.BatchID)
	}
	return errors.Join(errs...)
}

// unfinished counts the run's requests without a result.
func (h *hybrid) unfinished(ctx context.Context) (int64, error) {
	st, err := h.cfg.Store.Status(ctx, h.runID)
	if err != nil {
		return 0, err
	}
	return st.Pending, nil
}

func (h *hybrid) summary(ctx context.Context, bs *batch.Summary) *Summary {
	s := &Summary{Totals: h.life.Totals(ctx), Spilled: h.spilled.Load(), SpilledAt: h.spilledAt, BatchesCanceled: h.nCanceled,
		Deadline: h.cfg.Deadline}
	now := time.Now()
	s.Elapsed, s.Finished = now.Sub(h.start), now
	if bs != nil {
		s.Batches, s.WarmedPrefixes, s.WarmCostUSD = bs.Batches, bs.WarmedPrefixes, bs.WarmCostUSD
	}
	if s.Pending == 0 && now.After(h.cfg.Deadline) {
		s.Late = now.Sub(h.cfg.Deadline)
	}
	return s
}
