package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/dashboard"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
)

// batchFlags are the flags of `clade batch`.
type batchFlags struct {
	output      string
	db          string
	tier        string
	catalogPath string
	maxRequests int
	maxRounds   int
	poll        time.Duration
	strict      bool
	force       bool
	baseURL     string
	emulate     string
	quiet       bool
	budget      float64
	ordered     bool
	metricsAddr string
	dashboard   string
	model       string
	routing     string
	// resumeCanceled sends again the requests of a run stopped by clade batch cancel.
	resumeCanceled bool
	// retryVia, concurrency and maxAttempts: where resubmitted requests go, and the
	// realtime workers' settings when that is realtime.
	retryVia    string
	concurrency int
	maxAttempts int
	autoCache   bool // --cache-breakpoints=auto
	// cacheWarm and cacheWarmGroup: --cache-warm and the best-effort batch
	// cache its rule assumes.
	cacheWarm      string
	cacheWarmGroup int
}

func newBatchCmd(g *globalFlags) *cobra.Command {
	f := &batchFlags{}
	cmd := &cobra.Command{
		Use:   "batch INPUT.jsonl",
		Short: "Drive a JSONL workload through the Message Batches API at half the price",
		Long: `Send every request of INPUT.jsonl (the Message Batches line format:
{"custom_id": "...", "params": {...}}) through the Message Batches API, and write one
result line per custom_id (the Message Batches results format) to --output.

Requests are split into batches of at most --max-requests requests and 256 MB, as
many in flight as the tier's processing queue allows. Expired, canceled and
retryably errored requests go into a later batch (at most --max-rounds batches per
request); succeeded and invalid requests are final. With --retry-via realtime they
go to the Messages API instead, as soon as their batch has been read, at full price
and within the tier's realtime limits: a second batch can take up to 24 hours more.

The run is durable, with the same store as clade run (SQLite next to the output, or
--db postgres://...): each batch is recorded before it is created and its id right
after. Stop it at any time and run the same command again: it picks up the batches
in flight, and a batch whose creation was interrupted is found by listing the
account's batches, not created twice (see docs/batch.md).

clade batch cancel cancels the batches in flight and marks the run canceled. A
canceled run sends nothing again: clade batch (the one running, or the next one)
reads the partial results of its batches and writes every request without a result
as a final "canceled" line, then stops. --resume-canceled undoes the cancel: the
canceled requests are sent again.

The key comes from ANTHROPIC_API_KEY and the API from ANTHROPIC_BASE_URL (default
https://api.anthropic.com). --emulate TIER runs against an in-process emulator instead.`,
		Example: `  clade batch prompts.jsonl -o results.jsonl --tier tier-2
  clade batch prompts.jsonl -o results.jsonl --emulate tier-2     # no key, no network
  clade batch prompts.jsonl -o results.jsonl --retry-via realtime # failures: realtime, at once
  clade batch prompts.jsonl -o results.jsonl --cache-warm realtime # warm shared prefixes first
  clade batch cancel results.jsonl                                # cancel the batches in flight
  clade batch prompts.jsonl -o results.jsonl --resume-canceled   # send canceled requests again`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBatch(cmd, g, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVarP(&f.output, "output", "o", "", "results `FILE` (JSONL, one line per custom_id); default: INPUT.results.jsonl")
	fl.StringVar(&f.db, "db", "", "store: a SQLite `PATH` or a postgres:// URL; default: OUTPUT.clade.db next to the output")
	fl.StringVar(&f.tier, "tier", "auto", "batch limits to respect (rpm, processing queue, requests per batch): a catalog tier\n("+strings.Join(catalog.Default().TierNames(), ", ")+") or auto (the most cautious tier's, tier-1; with --emulate, the emulator's)")
	fl.StringVar(&f.catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog of models, tiers and prices")
	fl.IntVar(&f.maxRequests, "max-requests", 0, "most requests in one batch (default: the tier's, 100,000)")
	fl.IntVar(&f.maxRounds, "max-rounds", batch.DefaultMaxRounds, "batches a request may go in before an expired, canceled or retryable error is final")
	fl.StringVar(&f.retryVia, "retry-via", batch.RetryBatch, "where expired, canceled and retryably errored requests go: batch (a later batch,\nhalf price) or realtime (the Messages API at once, full price, the tier's realtime limits)")
	fl.StringVar(&f.cacheWarm, "cache-warm", batch.CacheWarmOff, "off, or realtime: before a prompt-cache prefix's lines go into a batch, send its first\n"+
		"line through the Messages API (full price, realtime limits) and create the batch once\n"+
		"it is answered, so every line of the batch reads the prefix. Only where it pays, by\n"+
		"catalog prices: in a batch cached best effort (--cache-warm-group N) a cold prefix of\n"+
		"k lines is expected to be written by E = (min(k,1)+...+min(k,N))/N of them; warming\n"+
		"pays when turning those E batch-price writes into reads saves more than one full-price\n"+
		"write costs, with the warm line's other input and expected output at full instead of\n"+
		"batch price (E > 2.09 on current prices: k >= 3 with N = 4; docs/batch.md)")
	fl.IntVar(&f.cacheWarmGroup, "cache-warm-group", batch.DefaultCacheWarmGroup, "--cache-warm realtime: the batch cache the rule assumes: requests cached in groups of `N`\n"+
		"processed together, a write read from the next group on (clade emulate --batch-cache-group)")
	fl.IntVar(&f.concurrency, "concurrency", 256, "--retry-via or --cache-warm realtime: most realtime requests in flight at once")
	fl.IntVar(&f.maxAttempts, "max-attempts", jobs.DefaultMaxAttempts, "--retry-via or --cache-warm realtime: realtime attempts per request before it is written as errored")
	fl.DurationVar(&f.poll, "poll", batch.DefaultPollMin, "shortest wait between two polls of a batch (a fortieth of its age, up to 1m, within half the batch rpm)")
	fl.BoolVar(&f.strict, "strict", false, "abort before any request if the input has a bad line")
	fl.BoolVar(&f.force, "force", false, "re-import an input that changed since the store was made (drops its results),\nor replace a results file another run wrote")
	fl.StringVar(&f.baseURL, "base-url", "", "API base `URL` (default: ANTHROPIC_BASE_URL, else https://api.anthropic.com)")
	fl.StringVar(&f.emulate, "emulate", "", "run against an in-process emulator at this `TIER` (no key or network needed)")
	fl.StringVar(&f.model, "model", "", "use this model for every request: an API id or an alias (haiku, sonnet, opus)")
	fl.StringVar(&f.routing, "routing", "", "YAML `FILE` of model routing rules (see docs/run.md)")
	fl.Float64Var(&f.budget, "budget", 0, "create no batch that could take the run's cost over `USD` (0: no budget); each request counts\nat its estimated input and whole max_tokens, at batch prices, until its result is read")
	fl.BoolVar(&f.ordered, "ordered", false, "write the output in input order when the run ends, instead of as results arrive")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on `HOST:PORT` (e.g. 127.0.0.1:9090)")
	fl.StringVar(&f.dashboard, "dashboard", "", "serve a live dashboard (progress, batches in flight, cost) on `HOST:PORT`;\nkeep it on loopback, e.g. 127.0.0.1:8090: the page has no authentication")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress lines and no info logs (unless --log-level): warnings, errors and the summary")
	fl.Var(cacheBreakpointsValue{&f.autoCache}, "cache-breakpoints", cacheBreakpointsUsage)
	fl.BoolVar(&f.resumeCanceled, "resume-canceled", false, "a run stopped by clade batch cancel: send its canceled requests again")
	cmd.AddCommand(newBatchCancelCmd(g))
	return cmd
}

func runBatch(cmd *cobra.Command, g *globalFlags, f *batchFlags, input string) (retErr error) {
	stderr := cmd.ErrOrStderr()
	log, err := g.logger(cmd, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(input); err != nil {
		return usageErr("clade batch PATH/TO/input.jsonl", "input %s: %v", input, err)
	}
	if err := checkAutoCache("batch", f.autoCache, input); err != nil {
		return err
	}
	cat, err := catalog.Load(f.catalogPath)
	if err != nil {
		return usageErr("clade batch --catalog PATH (see docs/catalog.md)", "%v", err)
	}
	if f.tier == "auto" && f.emulate != "" {
		f.tier = f.emulate
	}
	if _, err := cat.Tier(f.tier); err != nil && f.tier != batch.TierAuto {
		return usageErr("clade batch --tier auto", "--tier: %v", err)
	}
	routing, err := buildRouting("batch", f.model, f.routing, "", 0, cat)
	if err != nil {
		return err
	}
	if f.maxRequests < 0 || f.maxRounds < 1 || f.poll <= 0 || f.budget < 0 {
		return usageErr("clade batch --max-requests 100000 --max-rounds 5 --poll 5s", "--max-requests must be ≥ 0, --max-rounds ≥ 1, --poll > 0 and --budget ≥ 0")
	}
	if f.retryVia != batch.RetryBatch && f.retryVia != batch.RetryRealtime {
		return usageErr("clade batch --retry-via realtime", "--retry-via %q: want batch or realtime", f.retryVia)
	}
	if f.cacheWarm != batch.CacheWarmOff && f.cacheWarm != batch.CacheWarmRealtime {
		return usageErr("clade batch --cache-warm realtime", "--cache-warm %q: want off or realtime", f.cacheWarm)
	}
	if f.cacheWarmGroup < 1 {
		return usageErr("clade batch --cache-warm realtime --cache-warm-group 4", "--cache-warm-group must be ≥ 1")
	}
	if f.concurrency < 1 || f.concurrency > runner.MaxConcurrency || f.maxAttempts < 1 {
		return usageErr("clade batch --retry-via realtime --concurrency 64 --max-attempts 10",
			"--concurrency must be 1 to %d and --max-attempts at least 1", runner.MaxConcurrency)
	}
	ctx := cmd.Context()
	sess, err := openSession(cmd, input, &f.output, &f.db, f.force, f.baseURL, f.emulate, cat, log)
	if err != nil {
		return err
	}
	defer func() { retErr = withClose(retErr, sess.close) }()
	client, store := sess.client, sess.store

	var progress io.Writer = stderr
	if f.quiet {
		progress = nil
	}
	var reg *prometheus.Registry
	if f.metricsAddr != "" {
		reg = prometheus.NewRegistry()
		stop, addr, err := serveMetrics(f.metricsAddr, reg)
		if err != nil {
			return usageErr("clade batch --metrics-addr 127.0.0.1:9090", "--metrics-addr: %v", err)
		}
		defer stop()
		fmt.Fprintf(stderr, "metrics on http://%s/metrics\n", addr)
	}
	var dash *dashboard.Live
	if f.dashboard != "" {
		if dash, err = dashboard.Listen(f.dashboard, "clade batch "+filepath.Base(input)); err != nil {
			return usageErr("clade batch --dashboard 127.0.0.1:8090", "--dashboard: %v", err)
		}
		defer dash.Close()
		fmt.Fprintf(stderr, "dashboard on %s\n", dash.URL())
	}
	opts, _ := json.Marshal(map[string]any{"mode": "batch", "tier": f.tier, "output": f.output})
	cfg := batch.Config{
		Spec: lifecycle.Spec{Store: store, Client: client, Catalog: cat, Input: input, Output: f.output,
			Force: f.force, Strict: f.strict, Options: opts, Tier: f.tier, Budget: f.budget, Ordered: f.ordered,
			Progress: progress, Dashboard: dash.Feed(), Logger: log, AutoCacheBreakpoints: f.autoCache},
		MaxRequests: f.maxRequests, MaxRounds: f.maxRounds, PollMin: f.poll, Routing: routing,
		RetryVia: f.retryVia, ResumeCanceled: f.resumeCanceled, CacheWarm: f.cacheWarm, CacheWarmGroup: f.cacheWarmGroup,
		Realtime: runner.Config{MaxConcurrency: f.concurrency, MaxAttempts: f.maxAttempts},
	}
	if reg != nil {
		// clade_batch_*, and clade_run_* once realtime retries start.
		cfg.Registry, cfg.Realtime.Registry = reg, reg
	}
	sum, err := batch.Run(ctx, cfg)
	return endRun(cmd, sum, err, ending{input: input, output: f.output, db: f.db, batches: true})
}

func newBatchCancelCmd(g *globalFlags) *cobra.Command {
	var db, baseURL string
	cmd := &cobra.Command{
		Use:   "cancel [--db PATH | RESULTS.jsonl]",
		Short: "Cancel the batch runs of a store and their batches in flight",
		Long: `Mark every clade batch run of the store that has requests left as canceled, then
ask the API to cancel each of its batches that has not ended.

A canceled run sends nothing again. The clade batch still running on it (or the
next one run on the store) reads the results of the canceled batches (requests
already processed keep their results), writes every request without a result as
a final {"type":"canceled"} line, and stops with exit code 3. To send the canceled
requests after all, run clade batch with --resume-canceled.`,
		Example: `  clade batch cancel results.jsonl
  clade batch cancel --db postgres://user@host/clade`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				if len(args) == 0 {
					return usageErr("clade batch cancel results.jsonl, or clade batch cancel --db PATH", "no store named")
				}
				db = args[0] + ".clade.db"
			}
			store, log, err := openExistingStore(cmd, g, db, "clade batch cancel --db PATH (the store clade batch printed)")
			if err != nil {
				return err
			}
			defer store.Close()
			ctx := cmd.Context()
			client, _, err := upstreamClient(ctx, baseURL, "", catalog.Default(), log)
			if err != nil {
				return err
			}
			rep, err := batch.Cancel(ctx, store, client)
			if rep != nil {
				for _, b := range rep.Batches {
					if b.Err == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", b.ID, b.Status)
					}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d runs marked canceled, %d batches asked to cancel\n", len(rep.Runs), len(rep.Batches))
			}
			if err != nil {
				return failure("run the same command again", err)
			}
			if rep != nil && len(rep.Runs) > 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "the running clade batch (or the next one) writes the canceled requests as canceled lines and stops; --resume-canceled sends them again")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "store: a SQLite `PATH` or a postgres:// URL")
	cmd.Flags().StringVar(&baseURL, "base-url", "", "API base `URL` (default: ANTHROPIC_BASE_URL, else https://api.anthropic.com)")
	return cmd
}

// statusMaxBatches is how many batch lines clade status prints per run.
const statusMaxBatches = 20

// batchStatusLines describes a run's Message Batches for clade status (nothing when
// the run has none and was not canceled, or its batches cannot be read): a summary
// line with the batches by state and the requests pending (in batches in flight,
// and in none), then one line per batch, those in flight first: id, state,
// requests, age (since created_at, or since the create was attempted for an
// unconfirmed one) and, for a done batch, how long ago it ended. now is the time
// ages are measured at.
func batchStatusLines(ctx context.Context, st *jobs.Store, runID int64, now time.Time) []string {
	o, err := batch.Describe(ctx, st, runID)
	if err != nil || o == nil {
		return nil
	}
	head := fmt.Sprintf("  batches: %d done, %d in flight, %d unconfirmed; pending %d: %d in batches in flight, %d in none",
		len(o.Done), len(o.Open)-o.Unconfirmed, o.Unconfirmed, o.InBatches+o.Unsent, o.InBatches, o.Unsent)
	if !o.CanceledAt.IsZero() {
		head += fmt.Sprintf("; canceled %s ago (clade batch cancel)", age(now, o.CanceledAt))
	}
	lines := []string{head}
	shown := append(o.Open, o.Done...)
	more := 0
	if len(shown) > statusMaxBatches {
		more = len(shown) - statusMaxBatches
		shown = shown[:statusMaxBatches]
	}
	for _, b := range shown {
		id, state, since := b.BatchID, "in flight", b.CreatedAt
		switch b.State {
		case jobs.BatchIntent:
			id, state, since = "(create unconfirmed)", "unconfirmed", b.AttemptedAt
		case jobs.BatchDone:
			state = "done"
		}
		l := fmt.Sprintf("    %-32s %-11s %7d requests  age %s", id, state, b.Requests, age(now, since))
		if b.State == jobs.BatchDone && !b.EndedAt.IsZero() {
			l += fmt.Sprintf(", ended %s ago", age(now, b.EndedAt))
		}
		if c, ok := o.Counts[b.Row]; ok {
			l += fmt.Sprintf(": %d succeeded, %d errored, %d expired, %d canceled", c.Succeeded, c.Errored, c.Expired, c.Canceled)
		}
		lines = append(lines, l)
	}
	if more > 0 {
		lines = append(lines, fmt.Sprintf("    … and %d more done", more))
	}
	return lines
}

// age is now-t rounded for people: seconds under an hour, minutes above.
func age(now, t time.Time) time.Duration {
	d := max(now.Sub(t), 0)
	if d >= time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
