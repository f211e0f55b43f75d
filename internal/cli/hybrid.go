package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/hybrid"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
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
	rc := runner.Config{Spec: lifecycle.Spec{Progress: progress, Dashboard: f.dash.Feed()}, MaxConcurrency: f.concurrency, MaxAttempts: f.maxAttempts, Routing: routing,
		StreamAbove: f.streamAbove, CountTokens: f.countTokens, Limiter: lim,
		Abort: secondSignal(ctx),
	}
	bc := batch.Config{Spec: lifecycle.Spec{Dashboard: f.dash.Feed()}, MaxRequests: f.maxBatch, PollMin: f.poll, Routing: routing,
		CacheWarm: f.cacheWarm, CacheWarmGroup: f.cacheWarmGroup}
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
		Spec: lifecycle.Spec{Store: store, Client: client, Catalog: cat, Input: input, Output: f.output, Ordered: f.ordered,
			Force: f.force, Strict: f.strict, Options: opts, Tier: f.tier, Budget: f.budget, Progress: progress, Logger: log,
			AutoCacheBreakpoints: f.autoCache},
		Deadline: deadline, DeadlineSpec: spec, MinBatchWindow: f.batchMinWindow,
		Realtime: rc, Batch: bc,
	})
	return endRun(cmd, sum, err, ending{input: input, output: f.output, db: f.db, batches: true})
}
