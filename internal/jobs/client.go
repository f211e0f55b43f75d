package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"

	"github.com/clade-dev/clade/internal/cacheprefix"
)

// Request is one stored request, as a WorkFunc sees it.
type Request struct {
	ID             int64 // row id in clade_request
	RunID          int64
	CustomID       string
	Line           int
	Model          string
	MaxTokens      int64
	EstInputTokens int64
	// Params is the request's params object, byte for byte from the input.
	Params json.RawMessage
	// Cache is the request's longest prompt-cache prefix as the import found it
	// (intake.Request.Cache); zero without cache_control.
	Cache cacheprefix.Prefix
}

// Job is one attempt at a request.
type Job struct {
	ID          int64 // River job id
	Attempt     int   // 1 on the first run; runs cut by shutdown or snoozed do not count
	MaxAttempts int
	Request     Request

	rj           *river.Job[requestArgs]
	beforeCommit func(ctx context.Context, job *Job) error
}

// LastAttempt reports whether an error now becomes the request's errored result
// instead of a retry.
func (j *Job) LastAttempt() bool { return j.Attempt >= j.MaxAttempts }

// WorkFunc does one request. What it returns decides what becomes of the job:
//
//   - a Result and nil: the result is written and the job completed, in one
//     transaction (see Store.Complete).
//   - Snooze(d): the job runs again after d; the attempt does not count. For
//     rate limits (429) and overload (529).
//   - the context's error, after the Client's StopAndCancel (shutdown): the job
//     goes back to the queue at once and the attempt does not count (River's
//     soft-stop rule: the job context's cause is River's stop error).
//   - any other error: River retries after ClientConfig.RetryDelay; on the last
//     attempt the error becomes an errored result instead (its envelope from
//     an ErrorEnvelope() method if the error has one, else api_error), so every
//     request ends with exactly one result.
//
// A panic is turned into an error.
type WorkFunc func(ctx context.Context, job *Job) (Result, error)

// Snooze returns an error that makes the job run again after d without counting
// the attempt.
func Snooze(d time.Duration) error { return river.JobSnooze(max(d, 0)) }

// ClientConfig configures a Client. Zero values take the defaults.
type ClientConfig struct {
	// MaxWorkers is how many jobs run at once, at most MaxWorkers. Defaults to 10.
	MaxWorkers int
	// FetchCooldown is the least time between two fetches of jobs. River's default
	// (100 ms) caps SQLite near 1,000 jobs/s. Defaults to 5 ms.
	FetchCooldown time.Duration
	// FetchPollInterval is how often the queue is polled when no insert was
	// announced. Defaults to 200 ms.
	FetchPollInterval time.Duration
	// JobTimeout cancels a job running this long (an attempt that counts).
	// Defaults to 10 minutes; -1 disables it.
	JobTimeout time.Duration
	// RescueStuckJobsAfter is how long a job may stay running before River's
	// leader puts it back in the queue (a worker that died). Must exceed
	// JobTimeout. Defaults to JobTimeout + 5 minutes (15 minutes), not River's 1 h.
	RescueStuckJobsAfter time.Duration
	// RetryDelay is the wait before retry number attempt (1-based) of a failed
	// job. Defaults to 1 s × 2^(attempt-1), at most 5 minutes, less up to 25%
	// jitter.
	RetryDelay func(attempt int) time.Duration
	// BeforeCommit, when set, runs inside each completing transaction after the
	// result row is written and the job marked completed; an error rolls both
	// back. It exists for crash tests.
	BeforeCommit func(ctx context.Context, job *Job) error
	// AfterCommit, when set, is called after a transaction that wrote a result
	// commits (not for a job whose request already had one, nor for an attempt
	// released to another worker), e.g. to append the line to an output file. A
	// crash between the commit and this call loses nothing: the store has the
	// result.
	AfterCommit func(job *Job, res Result)
	// Worker is the registered process (Store.Register) this client works for:
	// River's client ID is then the worker's ID, which River writes in each
	// job's attempted_by, so that ReleaseDead gives back this client's running
	// jobs if the worker dies, and never while it lives. Set it wherever several
	// processes may work the store: ReleaseDead takes the running jobs of a
	// client without a Worker for a dead process's. Give a Worker one Client at
	// a time (River requires a running client's ID to be unique), and stop it
	// when the Worker is Lost.
	Worker *Worker
	// TestOnly skips River's start-up jitter; for tests.
	TestOnly bool
}

// MaxWorkers is the most jobs one Client runs at once (River's per-queue limit).
const MaxWorkers = river.QueueNumWorkersMax

func (c *ClientConfig) withDefaults() ClientConfig {
	out := *c
	if out.MaxWorkers <= 0 {
		out.MaxWorkers = 10
	}
	if out.FetchCooldown <= 0 {
		out.FetchCooldown = 5 * time.Millisecond
	}
	if out.FetchPollInterval <= 0 {
		out.FetchPollInterval = 200 * time.Millisecond
	}
	if out.JobTimeout == 0 {
		out.JobTimeout = 10 * time.Minute
	}
	if out.RescueStuckJobsAfter <= 0 {
		out.RescueStuckJobsAfter = max(out.JobTimeout, 0) + 5*time.Minute
	}
	if out.RetryDelay == nil {
		out.RetryDelay = DefaultRetryDelay
	}
	return out
}

// DefaultRetryDelay is the default ClientConfig.RetryDelay.
func DefaultRetryDelay(attempt int) time.Duration {
	d := 5 * time.Minute
	if attempt >= 1 && attempt <= 9 {
		d = min(time.Second<<(attempt-1), d)
	}
	return d - time.Duration(rand.Int64N(int64(d/4)+1))
}

// Client works the store's request jobs with a WorkFunc. Start it, and stop it
// with Stop (drain: running jobs finish) or StopAndCancel (running jobs are
// cancelled and return to the queue).
type Client struct {
	s    *Store
	rc   riverClient
	work WorkFunc
	cfg  ClientConfig
	log  *logGate // River's logger
}

// NewClient returns a Client that runs work on up to cfg.MaxWorkers jobs at once.
func NewClient(s *Store, work WorkFunc, cfg ClientConfig) (*Client, error) {
	if work == nil {
		return nil, errors.New("new client: nil WorkFunc")
	}
	c := &Client{s: s, work: work, cfg: cfg.withDefaults(), log: &logGate{}}
	if c.cfg.JobTimeout > 0 && c.cfg.RescueStuckJobsAfter <= c.cfg.JobTimeout {
		return nil, fmt.Errorf("new client: RescueStuckJobsAfter (%s) must exceed JobTimeout (%s)", c.cfg.RescueStuckJobsAfter, c.cfg.JobTimeout)
	}
	var id string // River's default: host and start time
	if w := c.cfg.Worker; w != nil {
		select {
		case <-w.Lost():
			return nil, fmt.Errorf("new client: worker %s is lost", w.ID())
		default:
		}
		if w.closed.Load() {
			return nil, fmt.Errorf("new client: worker %s is closed", w.ID())
		}
		id = w.ID()
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &worker{c: c}); err != nil {
		return nil, err
	}
	rc, err := s.b.newClient(&river.Config{
		ID:                   id,
		FetchCooldown:        c.cfg.FetchCooldown,
		FetchPollInterval:    c.cfg.FetchPollInterval,
		JobTimeout:           c.cfg.JobTimeout,
		RescueStuckJobsAfter: c.cfg.RescueStuckJobsAfter,
		Logger:               quietRiver(s.logger, c.log),
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: c.cfg.MaxWorkers}},
		Workers:              workers,
		TestOnly:             c.cfg.TestOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	c.rc = rc
	return c, nil
}

// Start starts fetching and working jobs; it returns once the client runs.
// Cancelling ctx later stops the client as Stop does.
func (c *Client) Start(ctx context.Context) error { return c.rc.Start(ctx) }

// Stop stops fetching and waits for running jobs to finish (or ctx to end).
func (c *Client) Stop(ctx context.Context) error { return c.rc.Stop(ctx) }

// StopAndCancel cancels running jobs' contexts and waits for them to return.
// A WorkFunc that returns its context's error gives its job back to the queue
// without counting the attempt.
func (c *Client) StopAndCancel(ctx context.Context) error { return c.rc.StopAndCancel(ctx) }

// Detach cuts the client off from the store's logger: for a caller that stops
// waiting for a client to stop (the store is unreachable, and River's goroutines
// may go on retrying it) and then returns, perhaps to close what the logger
// writes to. River logs nothing once Detach returns.
func (c *Client) Detach() { c.log.cut() }

// Stopped is closed once the client has stopped.
func (c *Client) Stopped() <-chan struct{} { return c.rc.Stopped() }

// worker adapts a WorkFunc to River.
type worker struct {
	river.WorkerDefaults[requestArgs]
	c *Client
}

func (w *worker) Timeout(*river.Job[requestArgs]) time.Duration { return w.c.cfg.JobTimeout }

func (w *worker) NextRetry(rj *river.Job[requestArgs]) time.Time {
	return time.Now().Add(w.c.cfg.RetryDelay(rj.Attempt))
}

func (w *worker) Work(ctx context.Context, rj *river.Job[requestArgs]) error {
	if wk := w.c.cfg.Worker; wk != nil {
		wk.begin(rj.ID)
		defer wk.end(rj.ID)
	}
	job := &Job{ID: rj.ID, Attempt: rj.Attempt, MaxAttempts: rj.MaxAttempts, rj: rj, beforeCommit: w.c.cfg.BeforeCommit}
	req, done, err := w.c.s.request(ctx, rj.Args.Request)
	if errors.Is(err, sql.ErrNoRows) {
		// The run was re-imported (Force) under this job: nothing to do.
		return river.JobCancel(fmt.Errorf("request %d no longer exists", rj.Args.Request))
	}
	if err != nil {
		return err
	}
	if done {
		// The request got its result elsewhere (a Message Batch of a hybrid run, or
		// a rescued job that ran twice): complete the job without sending it.
		return w.c.s.completeOnly(ctx, job)
	}
	job.Request = *req

	res, err := w.call(ctx, job)
	if err == nil {
		return w.complete(ctx, job, res)
	}
	var snooze *river.JobSnoozeError
	// A cancelled context is shutdown (or a cancel from elsewhere): pass the error
	// through so River puts the job back. A job timeout (deadline) is an attempt
	// like any failure.
	if errors.As(err, &snooze) || errors.Is(ctx.Err(), context.Canceled) || !job.LastAttempt() {
		return err
	}
	envelope := ErrorEnvelope("api_error", err.Error(), "")
	var withEnvelope interface{ ErrorEnvelope() json.RawMessage }
	if errors.As(err, &withEnvelope) {
		envelope = withEnvelope.ErrorEnvelope()
	}
	return w.complete(ctx, job, Result{Type: Errored, Error: envelope})
}

// complete writes the result with the job's completion, then calls AfterCommit.
func (w *worker) complete(ctx context.Context, job *Job, res Result) error {
	inserted, err := w.c.s.complete(ctx, job, res)
	if errors.Is(err, errReleased) {
		// A late attempt, after this worker was found dead: its job row is
		// finalized, so River's report of this outcome changes nothing.
		w.c.s.logger.Warn("result dropped: the job was released to another worker while this one was found dead",
			"custom_id", job.Request.CustomID, "attempt", job.Attempt)
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if inserted && w.c.cfg.AfterCommit != nil {
		w.c.cfg.AfterCommit(job, res)
	}
	return nil
}

// call runs the WorkFunc, turning a panic into an error.
func (w *worker) call(ctx context.Context, job *Job) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in work func: %v", p)
		}
	}()
	return w.c.work(ctx, job)
}

// request loads a request row, and reports whether it already has a result.
func (s *Store) request(ctx context.Context, id int64) (*Request, bool, error) {
	var r Request
	var params []byte
	var done bool
	var prefix *string
	var prefixTokens, ttl *int64
	err := s.b.reader().queryRow(ctx, `SELECT r.id, r.run_id, r.custom_id, r.line, r.model, r.max_tokens, r.est_input_tokens, r.params,
			r.cache_prefix, r.cache_prefix_tokens, r.cache_ttl,
			EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
		FROM clade_request r WHERE r.id = $1`, id).Scan(&r.ID, &r.RunID, &r.CustomID, &r.Line, &r.Model, &r.MaxTokens, &r.EstInputTokens, &params,
		&prefix, &prefixTokens, &ttl, &done)
	if err != nil {
		return nil, false, err
	}
	r.Params = params
	r.Cache = scanPrefix(prefix, prefixTokens, ttl)
	return &r, done, nil
}
