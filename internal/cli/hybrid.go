package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/hybrid"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/upstream"
)

// parseDeadline reads --deadline: a duration from now (3h, 90m), a clock time
// today or, if past, tomorrow (15:30, 15:30:00), or an RFC 3339 time.
func parseDeadline(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%q is not in the future", s)
		}
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if !t.After(now) {
			return time.Time{}, fmt.Errorf("%s is in the past", s)
		}
		return t, nil
	}
	for _, layout := range []string{"15:04", "15:04:05"} {
		if c, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			t := time.Date(now.Year(), now.Month(), now.Day(), c.Hour(), c.Minute(), c.Second(), 0, now.Location())
			if !t.After(now) {
				t = t.AddDate(0, 0, 1)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (3h), a clock time (15:30) nor an RFC 3339 time", s)
}

func runHybrid(cmd *cobra.Command, f *runFlags, input string, cat *catalog.Catalog, client *upstream.Client,
	store *jobs.Store, routing *runner.Routing, deadline time.Time, reg *prometheus.Registry, lim *admit.Limiter, log *slog.Logger) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	var progress io.Writer = stderr
	if f.quiet {
		progress = nil
	}
	opts, _ := json.Marshal(map[string]any{"mode": "auto", "tier": f.tier, "output": f.output})
	rc := runner.Config{
		MaxConcurrency: f.concurrency, MaxAttempts: f.maxAttempts, Routing: routing,
		StreamAbove: f.streamAbove, CountTokens: f.countTokens, Limiter: lim,
		Progress: progress, Abort: secondSignal(ctx),
	}
	bc := batch.Config{MaxRequests: f.maxBatch, PollMin: f.poll, Routing: routing}
	if reg != nil {
		// clade_batch_* while batches work, clade_run_* (and the token and cost
		// counters of realtime) once realtime takes over.
		rc.Registry, bc.Registry = reg, reg
	}
	// A duration (or --mode auto's 24 h window) counts from the run's first start:
	// the same command run again keeps that deadline. A clock time is used as is.
	spec := ""
	if f.deadline == "" {
		spec = "auto"
	} else if _, err := time.ParseDuration(f.deadline); err == nil {
		spec = f.deadline
	}
	sum, err := hybrid.Run(ctx, hybrid.Config{
		Store: store, Client: client, Catalog: cat, Input: input, Output: f.output, Ordered: f.ordered,
		Force: f.force, Strict: f.strict, Options: opts, Tier: f.tier, Deadline: deadline, DeadlineSpec: spec, Budget: f.budget,
		MinBatchWindow: f.batchMinWindow,
		Realtime:       rc, Batch: bc,
		Progress: progress, Logger: log,
	})
	if sum != nil {
		if !sum.Deadline.IsZero() {
			deadline = sum.Deadline
		}
		printHybridSummary(stderr, sum, deadline, f.output, f.db)
	}
	if err != nil {
		return runError(cmd, input, f.output, f.db, err)
	}
	if sum != nil && sum.Stopped != "" && sum.Pending > 0 {
		return failure("raise the budget or the limit, then run the same command again to resume", fmt.Errorf("stopped: %s", sum.Stopped))
	}
	if ctx.Err() != nil && sum != nil && sum.Pending > 0 {
		fmt.Fprintf(stderr, "interrupted: %d requests pending (batches in flight keep running); run the same command again to resume\n", sum.Pending)
		return &cliError{code: ExitFailure, err: errors.New("interrupted"), try: "run the same command again to resume"}
	}
	if sum != nil && sum.Errored > 0 {
		return &cliError{code: ExitFailedRequests, err: fmt.Errorf("%d requests ended errored (their error envelopes are in %s)", sum.Errored, f.output),
			try: "clade status --db " + redactDSN(f.db)}
	}
	return nil
}

func printHybridSummary(w io.Writer, s *hybrid.Summary, deadline time.Time, output, db string) {
	fmt.Fprintf(w, "\n%d requests: %d succeeded, %d errored, %d pending; %d bad lines skipped\n",
		s.Requests, s.Succeeded, s.Errored, s.Pending, s.Problems)
	var how []string
	how = append(how, fmt.Sprintf("%d batches created (%d canceled for realtime to take over)", s.Batches, s.BatchesCanceled))
	if s.Spilled {
		how = append(how, fmt.Sprintf("realtime from %s: %d calls", s.SpilledAt.Local().Format("15:04:05"), s.RealtimeSent))
	} else {
		how = append(how, "no realtime needed")
	}
	fmt.Fprintf(w, "%s; in %s\n", strings.Join(how, "; "), s.Elapsed.Round(time.Millisecond))
	switch {
	case s.Pending > 0:
		fmt.Fprintf(w, "deadline %s: not finished\n", deadline.Local().Format("15:04:05"))
	case s.Late > 0:
		fmt.Fprintf(w, "deadline %s: missed by %s\n", deadline.Local().Format("15:04:05"), s.Late.Round(time.Second))
	default:
		fmt.Fprintf(w, "deadline %s: met with %s to spare\n", deadline.Local().Format("15:04:05"), deadline.Sub(s.Finished).Round(time.Second))
	}
	fmt.Fprintf(w, "tokens: %d input, %d output; cost $%.4f\n", s.InputTokens, s.OutputTokens, s.CostUSD)
	if s.Stopped != "" {
		fmt.Fprintf(w, "stopped: %s\n", s.Stopped)
	}
	fmt.Fprintf(w, "results: %s\nstore:   %s\n", output, redactDSN(db))
}
