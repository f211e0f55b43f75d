// Package lifecycle is the life of a run that every mode shares: clade run
// (realtime), clade batch and the hybrid mode each start with the same prologue
// and end with the same epilogue, written here once.
//
//	spec.Check("runner")                  // required fields, documented defaults
//	r, err := lifecycle.Start(ctx, spec, lifecycle.Import{...})
//	                                      // import or resume the input; Strict
//	ctx, release, err := r.HoldLease(ctx) // batch and hybrid: one dispatcher per run
//	err = r.OpenOutput(ctx)               // the results file, rebuilt from the store
//	...                                   // the mode's own work
//	t := r.Totals(ctx)                    // what the store says the run is
//	err = r.Finish(ctx, err)              // ordered export, close the results file
//
// A mode that runs inside another (realtime workers inside a batch or hybrid
// run) takes its parent's Spec with Spec.Sharing, so it works the same run,
// store and results file.
package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/dashboard"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/upstream"
)

// ErrStrict is returned when the input has bad lines and Spec.Strict is set.
var ErrStrict = jobs.ErrBadLines

// ErrLeaseLost stops a run whose lease was taken by another process or ran out
// (the store was unreachable): two dispatchers would both create batches.
var ErrLeaseLost = errors.New("lost the run's lease (another process took it, or the store was unreachable); stopped")

// Spec is what every mode of a run is given. Store, Client and Input are required.
type Spec struct {
	// Store holds the run. No mode closes it.
	Store *jobs.Store
	// Client calls the API.
	Client *upstream.Client
	// Catalog supplies tiers, model classes and prices. Default catalog.Default().
	Catalog *catalog.Catalog
	// Input is the JSONL file; Output, when set, the results file (rebuilt from
	// the store at start, then appended to as results are written).
	Input, Output string
	// Out, when set, is the results file to append to instead of opening Output
	// (a mode working inside another shares its parent's). It is not closed.
	Out *jobs.Output
	// Ordered writes the output in input order when every request has a result,
	// instead of as results arrive.
	Ordered bool
	// Force re-imports a changed input (its earlier results are dropped).
	Force bool
	// Strict aborts before any request when the input has a bad line.
	Strict bool
	// Options is stored with a new run (the CLI's flags), opaque.
	Options json.RawMessage
	// AutoCacheBreakpoints adds prompt-cache breakpoints where lines share a long
	// prefix (jobs.ImportOptions.AutoCacheBreakpoints; --cache-breakpoints auto).
	AutoCacheBreakpoints bool
	// Tier names the catalog tier whose limits apply. Each mode documents its
	// default ("auto" for realtime; batch and hybrid need a named tier).
	Tier string
	// Budget, when positive, stops the run before its cost in USD could exceed it.
	Budget float64
	// Progress receives the live display and events; nil for none.
	Progress io.Writer
	// Dashboard, when set, receives the live display's numbers for the dashboard
	// page (clade run --dashboard); nil for none.
	Dashboard *dashboard.Feed
	// Registry, when set, receives the run's Prometheus metrics.
	Registry prometheus.Registerer
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
}

// Check reports a missing required field, naming the mode (who), and fills in
// the documented defaults.
func (s *Spec) Check(who string) error {
	if s.Store == nil || s.Client == nil || s.Input == "" {
		return fmt.Errorf("%s: Store, Client and Input are required", who)
	}
	if s.Budget < 0 {
		return fmt.Errorf("%s: Budget %v: want ≥ 0 (0: no budget)", who, s.Budget)
	}
	if s.Catalog == nil {
		s.Catalog = catalog.Default()
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Sharing is the Spec of a mode that works inside the run of s (realtime
// workers inside a batch or hybrid run): s's store, client, catalog, input,
// options, tier and budget, results going to out, and no import choices of its
// own (the parent imported). The child keeps its own Progress, Dashboard and Registry, and
// its Logger if it has one.
func (s Spec) Sharing(child Spec, out *jobs.Output) Spec {
	log := child.Logger
	if log == nil {
		log = s.Logger
	}
	return Spec{
		Store: s.Store, Client: s.Client, Catalog: s.Catalog, Input: s.Input, Out: out,
		Options: s.Options, Tier: s.Tier, Budget: s.Budget,
		Progress: child.Progress, Dashboard: child.Dashboard, Registry: child.Registry, Logger: log,
	}
}

// Import says how a mode imports its input.
type Import struct {
	// NoJobs records the requests without River jobs (batch dispatch owns them).
	NoJobs bool
	// MaxAttempts is the attempts of each request's job (jobs.ImportOptions).
	MaxAttempts int
	// Background returns as soon as the run exists and goes on importing
	// (batch: the first batch is created while the rest of a large file is
	// read); Run.ImportEnded says when it is over. Ignored with Strict, which
	// must see every line before anything is sent.
	Background bool
}

// Run is a run started by Start: its record in the store and its results file.
type Run struct {
	spec Spec
	// ID is the run's id in the store; Record as imported (Problems counts the
	// bad lines), Stats what this import did (zero for a background import).
	ID     int64
	Record *jobs.Run
	Stats  jobs.ImportStats
	// Out is the results file (Spec.Out, or the one OpenOutput opened); nil
	// without one.
	Out *jobs.Output
	// Began is when Start was called.
	Began time.Time

	ownsOut   bool
	importing bool
	importErr chan error
	stopImp   context.CancelFunc
}

// Start imports spec.Input or resumes its run. With spec.Strict and bad lines
// it returns the run and an error matching ErrStrict: nothing was sent.
func Start(ctx context.Context, spec Spec, imp Import) (*Run, error) {
	r := &Run{spec: spec, Out: spec.Out, Began: time.Now()}
	opt := jobs.ImportOptions{Path: spec.Input, Options: spec.Options, Force: spec.Force,
		NoJobs: imp.NoJobs, MaxAttempts: imp.MaxAttempts}
	if spec.AutoCacheBreakpoints {
		opt.AutoCacheBreakpoints = func(model string) (int64, bool) {
			m, err := spec.Catalog.Resolve(model)
			if err != nil || spec.Catalog.Class(m) == nil {
				return 0, false
			}
			return spec.Catalog.Class(m).MinCacheTokens, true
		}
	}
	if imp.Background && !spec.Strict {
		rec, err := r.startBackground(ctx, opt)
		if err != nil {
			return nil, err
		}
		r.ID, r.Record = rec.ID, rec
		return r, nil
	}
	var rec *jobs.Run
	var stats jobs.ImportStats
	var err error
	if _, serr := os.Stat(spec.Input); errors.Is(serr, fs.ErrNotExist) && !spec.Force {
		// Not on this host: join the run another host imports from it.
		rec, err = joinWithoutInput(ctx, spec)
		stats.NoOp = true
	} else {
		rec, stats, err = importJoining(ctx, spec, opt)
	}
	if err != nil {
		return nil, err
	}
	r.ID, r.Record, r.Stats = rec.ID, rec, stats
	// An input imported before (a resume, or realtime joining a batch or hybrid
	// run) is not news: debug level.
	level := slog.LevelInfo
	if stats.NoOp {
		level = slog.LevelDebug
	}
	spec.Logger.Log(ctx, level, "input imported", "run_id", rec.ID, "requests", rec.Requests, "problems", rec.Problems,
		"resumed", stats.Resumed, "unchanged", stats.NoOp)
	if spec.Strict && rec.Problems > 0 {
		return r, fmt.Errorf("%w: %d bad lines (see `clade status`)", ErrStrict, rec.Problems)
	}
	return r, nil
}

// joinPoll is how long a process waits before it tries again to import a run
// another process is importing.
const joinPoll = 250 * time.Millisecond

// importJoining imports the input; when another process is importing the same
// run (several hosts started at once on one store), it waits and tries again,
// so it goes on from where the other got to, or finds the run imported: every
// host joins the one run, and the import is not done twice.
func importJoining(ctx context.Context, spec Spec, opt jobs.ImportOptions) (*jobs.Run, jobs.ImportStats, error) {
	said := false
	for {
		rec, stats, err := spec.Store.ImportReporting(ctx, opt, spec.Progress)
		if !errors.Is(err, jobs.ErrConcurrentImport) {
			return rec, stats, err
		}
		if !said {
			spec.Logger.Info("another process is importing this run; joining it", "input", spec.Input)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, stats, ctx.Err()
		case <-time.After(joinPoll):
		}
	}
}

// NoInputError is returned by Start when the input is not on this host and the
// store has no run imported from that path: a host joins a run without its input
// only once another host, given the same path, has started it.
type NoInputError struct{ Path, Name string }

func (e *NoInputError) Error() string {
	return fmt.Sprintf("input %s: no such file, and the store has no run of %s to join", e.Path, e.Name)
}

// joinWithoutInput finds the run named after spec.Input in the store, and waits
// until its import (by the host that has the file) is over.
func joinWithoutInput(ctx context.Context, spec Spec) (*jobs.Run, error) {
	name, err := jobs.RunName(spec.Input)
	if err != nil {
		return nil, err
	}
	said := false
	for {
		rec, err := spec.Store.RunByName(ctx, name)
		switch {
		case errors.Is(err, jobs.ErrNoRun):
			return nil, &NoInputError{Path: spec.Input, Name: name}
		case err != nil:
			return nil, err
		case rec.Imported:
			spec.Logger.Info("joined the run of another host", "run_id", rec.ID, "requests", rec.Requests)
			return rec, nil
		}
		if !said {
			spec.Logger.Info("the input is not on this host; waiting for the host that has it to import it", "run_id", rec.ID)
			said = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(joinPoll):
		}
	}
}

func (r *Run) startBackground(ctx context.Context, opt jobs.ImportOptions) (*jobs.Run, error) {
	started := make(chan *jobs.Run, 1)
	opt.OnRun = func(rec *jobs.Run) { started <- rec }
	type result struct {
		rec *jobs.Run
		err error
	}
	done := make(chan result, 1)
	importCtx, cancel := context.WithCancel(ctx)
	go func() {
		rec, _, err := r.spec.Store.ImportReporting(importCtx, opt, r.spec.Progress)
		done <- result{rec, err}
	}()
	select {
	case res := <-done: // nothing to import (done before), or failed at once
		cancel()
		return res.rec, res.err
	case rec := <-started:
		r.importing, r.stopImp = true, cancel
		r.importErr = make(chan error, 1)
		go func() {
			res := <-done
			r.importErr <- res.err
		}()
		return rec, nil
	}
}

// Importing reports whether a background import is still reading the input.
func (r *Run) Importing() bool { return r.importing }

// ImportEnded reports whether the background import is over, and (once, when it
// has just ended) its error; ended is true when there was none. Not safe for
// concurrent use.
func (r *Run) ImportEnded() (ended bool, err error) {
	if !r.importing {
		return true, nil
	}
	select {
	case err := <-r.importErr:
		r.importing = false
		return true, err
	default:
		return false, nil
	}
}

// HoldLease takes the run's lease (jobs.Store.AcquireLease): one dispatcher
// per run. The returned context is cancelled with cause ErrLeaseLost when the
// lease is lost; release gives it back (it runs out by itself if that fails).
// It fails with jobs.ErrLeased when another process holds it.
func (r *Run) HoldLease(ctx context.Context) (_ context.Context, release func(), _ error) {
	lease, err := r.spec.Store.AcquireLease(ctx, r.ID, 0)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-lease.Lost():
			cancel(ErrLeaseLost)
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel(nil)
		if err := lease.Release(); err != nil {
			r.spec.Logger.Warn("release the run's lease (it runs out in 30 s)", "err", err)
		}
	}, nil
}

// LeaseLost reports whether ctx (from HoldLease) ended because the lease was lost.
func LeaseLost(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrLeaseLost) }

// OpenOutput opens Spec.Output, rebuilt from the store, unless the run shares a
// results file (Spec.Out) or has none. Finish closes it.
func (r *Run) OpenOutput(ctx context.Context) error {
	if r.Out != nil || r.spec.Output == "" {
		return nil
	}
	out, err := jobs.OpenOutput(ctx, r.spec.Store, r.ID, r.spec.Output, r.spec.Ordered)
	if err != nil {
		return err
	}
	r.Out, r.ownsOut = out, true
	return nil
}

// Totals reads what the store says of the run. A store that cannot be read
// leaves the counts zero, and says so in the log: the summary is not worth
// failing a run for.
func (r *Run) Totals(ctx context.Context) Totals {
	t := Totals{RunID: r.ID, Elapsed: time.Since(r.Began)}
	if err := t.Read(ctx, r.spec.Store); err != nil {
		r.spec.Logger.Warn("the summary lacks the run's counts: reading them failed (clade status shows them)", "err", err)
	}
	return t
}

// Finish ends the run: it stops a background import still reading; when the
// run is complete and err is nil, it rewrites the results file from the store in
// input order (Spec.Ordered), or when the file lacks results other processes
// wrote (several hosts); and it closes the results file it opened. A results file that could not be
// written (a full disk) fails the run whatever else happened: the results are in
// the store. It returns err, or the first error of its own.
func (r *Run) Finish(ctx context.Context, err error) error {
	ctx = context.WithoutCancel(ctx)
	if r.importing {
		r.stopImp()
		<-r.importErr
		r.importing = false
	}
	if !r.ownsOut {
		return err
	}
	if err == nil {
		st, serr := r.spec.Store.Status(ctx, r.ID)
		switch {
		case serr != nil:
			err = serr
		case st.Pending > 0:
		case r.spec.Ordered:
			err = r.Out.ExportOrdered(ctx, r.spec.Store, r.ID)
		case r.Out.Lines() != st.Requests:
			// Other processes worked the run too (several hosts on one store):
			// the file gets every result, each once, from the store.
			err = r.Out.Export(ctx, r.spec.Store, r.ID, false)
		}
	}
	if cerr := r.Out.Close(); cerr != nil && err == nil {
		err = cerr
	}
	r.ownsOut = false
	return err
}

// Totals is what the store says of a run, the part of every mode's summary
// that does not depend on how the work was done.
type Totals struct {
	RunID     int64
	Requests  int64 // valid requests in the input
	Problems  int64 // bad lines skipped
	Succeeded int64
	Errored   int64
	Expired   int64 // batch results, final after the last round
	Canceled  int64 // batch results, final after the last round or a cancel
	Pending   int64 // not finished (drained, interrupted or stopped)
	// InputTokens counts every input token, cache writes and reads included.
	InputTokens, OutputTokens int64
	CostUSD                   float64
	Elapsed                   time.Duration
	// Stopped says why the run stopped with work left (its budget, the API), if it did.
	Stopped string
}

// Read sets t's counts from the store.
func (t *Totals) Read(ctx context.Context, st *jobs.Store) error {
	s, err := st.Status(ctx, t.RunID)
	if err != nil {
		return err
	}
	t.Requests, t.Problems, t.Pending = s.Requests, s.Problems, s.Pending
	t.Succeeded, t.Errored = s.Results[jobs.Succeeded], s.Results[jobs.Errored]
	t.Expired, t.Canceled = s.Results[jobs.Expired], s.Results[jobs.Canceled]
	u := s.Usage
	t.InputTokens = u.InputTokens + u.CacheWrite5mTokens + u.CacheWrite1hTokens + u.CacheReadTokens
	t.OutputTokens = u.OutputTokens
	t.CostUSD = s.CostUSD
	return nil
}

// Failed counts the requests whose final result is not a success.
func (t *Totals) Failed() int64 { return t.Errored + t.Expired + t.Canceled }

// Counts is the summary's first line: the requests by outcome.
func (t *Totals) Counts() string {
	s := fmt.Sprintf("%d requests: %d succeeded, %d errored", t.Requests, t.Succeeded, t.Errored)
	if t.Expired > 0 || t.Canceled > 0 {
		s += fmt.Sprintf(", %d expired, %d canceled", t.Expired, t.Canceled)
	}
	return s + fmt.Sprintf(", %d pending; %d bad lines skipped", t.Pending, t.Problems)
}

// Spend is the summary's tokens and cost line; note, when set, follows the cost
// ("at batch prices").
func (t *Totals) Spend(note string) string {
	s := fmt.Sprintf("tokens: %d input, %d output; cost $%.4f", t.InputTokens, t.OutputTokens, t.CostUSD)
	if note != "" {
		s += " " + note
	}
	return s
}

// Summary is what every mode's summary gives: its Totals (nil for a nil
// summary: the run did not start), and its lines for people (the counts, how
// the work was done, the spend, why it stopped).
type Summary interface {
	Common() *Totals
	Lines() []string
}

// Describe is the summary of a mode: the counts, the mode's own lines, the spend
// (with note) and why it stopped.
func (t *Totals) Describe(note string, how ...string) []string {
	lines := append([]string{t.Counts()}, how...)
	lines = append(lines, t.Spend(note))
	if t.Stopped != "" {
		lines = append(lines, "stopped: "+t.Stopped)
	}
	return lines
}
