package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/dashboard"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/plan"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/upstream"
)

// runFlags are the flags of `clade run`.
type runFlags struct {
	output        string
	db            string
	tier          string
	catalogPath   string
	model         string
	routing       string
	fallback      string
	fallbackAfter int
	concurrency   int
	maxAttempts   int
	streamAbove   int64
	countTokens   bool
	cacheOff      bool // --cache-schedule=off
	autoCache     bool // --cache-breakpoints=auto
	budget        float64
	strict        bool
	force         bool
	ordered       bool
	metricsAddr   string
	dashboard     string
	dash          *dashboard.Live // the --dashboard listener, while the command runs
	baseURL       string
	emulate       string
	quiet         bool
	// limits shared through Redis
	limitsRedis     string
	limitsNamespace string
	// hybrid mode
	mode           string
	deadline       string
	batchMinWindow time.Duration
	maxBatch       int
	cacheWarm      string // --cache-warm: the batches' prompt-cache warming
	cacheWarmGroup int
	poll           time.Duration
}

func newRunCmd(g *globalFlags) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run INPUT.jsonl",
		Short: "Drive a JSONL workload through the Messages API at the account's full rate",
		Long: `Run every request of INPUT.jsonl (the Message Batches line format:
{"custom_id": "...", "params": {...}}) through the Messages API as fast as the
account's rate limits allow, and write one result line per custom_id (the Message
Batches results format) to --output.

The run is durable: its requests and results live in a store (SQLite by default,
next to the output; or --db postgres://...). Kill it and run the same command again:
it resumes, and finished requests are not sent again. A changed input under the same
store is refused unless --force.

Bad lines are reported with their line number and skipped (--strict aborts instead).
The first Ctrl-C drains (requests in flight finish), the second aborts (they return to
the queue); both leave a store that resumes.

With --deadline (or --mode auto) the run is hybrid: requests go to Message Batches
first (half price), and realtime takes over what is left when the deadline comes
close, so the work finishes in time at the lowest cost. It prints its plan, re-plans
as batches progress, and cancels batches whose work realtime has done. It needs the
account's limits to plan: --tier TIER (not auto). See docs/hybrid.md.

The key comes from ANTHROPIC_API_KEY and the API from ANTHROPIC_BASE_URL (default
https://api.anthropic.com). --emulate TIER runs against an in-process emulator instead.`,
		Example: `  clade run prompts.jsonl -o results.jsonl
  clade run prompts.jsonl -o results.jsonl --tier tier-2 --model haiku --budget 20
  clade run prompts.jsonl -o results.jsonl --tier tier-2 --deadline 3h  # batches, then realtime
  clade run prompts.jsonl -o results.jsonl --emulate tier-1     # no key, no network`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd, g, f, args[0])
		},
	}
	addRunFlags(cmd.Flags(), f)
	return cmd
}

// addRunFlags defines clade run's flags on fl, into f, setting their defaults in
// f: clade demo takes them from here.
func addRunFlags(fl *pflag.FlagSet, f *runFlags) {
	fl.SortFlags = false
	fl.StringVarP(&f.output, "output", "o", "", "results `FILE` (JSONL, one line per custom_id); default: INPUT.results.jsonl")
	fl.StringVar(&f.db, "db", "", "store: a SQLite `PATH` or a postgres:// URL; default: OUTPUT.clade.db next to the output")
	fl.StringVar(&f.tier, "tier", "auto", "limits to pace by: a catalog tier ("+strings.Join(catalog.Default().TierNames(), ", ")+")\nor auto (start cautious, adopt the limits the response headers report)")
	fl.StringVar(&f.catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog of models, tiers and prices")
	fl.StringVar(&f.model, "model", "", "use this model for every request: an API id or an alias (haiku, sonnet, opus)")
	fl.StringVar(&f.routing, "routing", "", "YAML `FILE` of model routing rules (see docs/run.md)")
	fl.StringVar(&f.fallback, "fallback-model", "", "switch a request to this model after --fallback-after 529s in a row (opt-in)")
	fl.IntVar(&f.fallbackAfter, "fallback-after", 3, "529s in a row before a request moves to --fallback-model")
	fl.IntVar(&f.concurrency, "concurrency", 256, fmt.Sprintf("most requests in flight at once (1 to %d per process)", runner.MaxConcurrency))
	fl.IntVar(&f.maxAttempts, "max-attempts", jobs.DefaultMaxAttempts, "attempts per request before it is written as errored (429 waits do not count)")
	fl.Var(streamAboveValue{&f.streamAbove}, "stream-above", streamAboveUsage)
	fl.BoolVar(&f.countTokens, "count-tokens", false, "ask the API's count_tokens for exact input counts instead of estimating")
	fl.Var(cacheScheduleValue{&f.cacheOff}, "cache-schedule", cacheScheduleUsage)
	fl.Var(cacheBreakpointsValue{&f.autoCache}, "cache-breakpoints", cacheBreakpointsUsage)
	fl.Float64Var(&f.budget, "budget", 0, "stop before the run's cost would exceed `USD` (0: no budget)")
	fl.BoolVar(&f.strict, "strict", false, "abort before any request if the input has a bad line")
	fl.BoolVar(&f.force, "force", false, "re-import an input that changed since the store was made (drops its results),\nor replace a results file another run wrote")
	fl.BoolVar(&f.ordered, "ordered", false, "write the output in input order when the run ends, instead of as results arrive")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on `HOST:PORT` (e.g. 127.0.0.1:9090)")
	fl.StringVar(&f.dashboard, "dashboard", "", "serve a live dashboard (progress, rates against the limits, ETA, cost) on `HOST:PORT`;\nkeep it on loopback, e.g. 127.0.0.1:8090: the page has no authentication")
	fl.StringVar(&f.baseURL, "base-url", "", "API base `URL` (default: ANTHROPIC_BASE_URL, else https://api.anthropic.com)")
	fl.StringVar(&f.emulate, "emulate", "", "run against an in-process emulator at this `TIER` (no key or network needed)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no live progress and no info logs (unless --log-level): warnings, errors and the summary")
	fl.StringVar(&f.limitsRedis, "limits-redis", "", "share the rate limits through the Redis at `URL` (redis://[:PASSWORD@]HOST:6379/0) with\nevery clade process given the same URL and --limits-namespace, on any machine;\nwhile Redis is unreachable no request is sent (see docs/run.md)")
	fl.StringVar(&f.limitsNamespace, "limits-namespace", "default", "with --limits-redis: the organisation's `NAME` in Redis; processes sharing one budget use the same")
	fl.StringVar(&f.mode, "mode", "realtime", "realtime (the Messages API only), or auto (batches first, realtime near the --deadline)")
	fl.StringVar(&f.deadline, "deadline", "", "finish by this `TIME`: a duration from now (3h, 90m) or a time (15:30, 2026-11-27T09:00:00Z); implies --mode auto")
	fl.DurationVar(&f.batchMinWindow, "batch-min-window", 0, "auto mode: with less time than this to the deadline, use no batch")
	fl.IntVar(&f.maxBatch, "max-batch-requests", 0, "auto mode: most requests in one batch (default: the tier's, 100,000)")
	fl.DurationVar(&f.poll, "poll", 0, "auto mode: shortest wait between two polls of a batch (default 5s)")
	fl.StringVar(&f.cacheWarm, "cache-warm", batch.CacheWarmOff, "auto mode: off, or realtime: before a prompt-cache prefix's lines go into a batch,\nsend its first line through realtime where that pays (as clade batch --cache-warm)")
	fl.IntVar(&f.cacheWarmGroup, "cache-warm-group", batch.DefaultCacheWarmGroup, "auto mode, --cache-warm realtime: the batch cache the rule assumes, requests cached\nin groups of `N` (as clade batch --cache-warm-group)")
}

// cacheBreakpointsValue is --cache-breakpoints: off (the default) or auto; it sets
// lifecycle.Spec.AutoCacheBreakpoints.
type cacheBreakpointsValue struct{ auto *bool }

func (c cacheBreakpointsValue) String() string {
	if c.auto != nil && *c.auto {
		return "auto"
	}
	return "off"
}

func (c cacheBreakpointsValue) Set(v string) error {
	switch v {
	case "off":
		*c.auto = false
	case "auto":
		*c.auto = true
	default:
		return fmt.Errorf("%q: want off or auto", v)
	}
	return nil
}

func (cacheBreakpointsValue) Type() string { return "off|auto" }

const cacheBreakpointsUsage = "auto adds a cache_control breakpoint to lines without one where 2+ lines share a\n" +
	"long prefix (changes what is sent; see docs/run.md); off sends lines as written"

// checkAutoCache is the usage error of --cache-breakpoints auto on an input that
// cannot be read twice (stdin, a pipe): the shared prefixes are counted first.
func checkAutoCache(cmd string, auto bool, input string) error {
	if !auto {
		return nil
	}
	if fi, err := os.Stat(input); err == nil && !fi.Mode().IsRegular() {
		return usageErr("clade "+cmd+" FILE.jsonl --cache-breakpoints auto (save the input to a file first)",
			"--cache-breakpoints auto needs an input file it can read twice; %s is not a regular file", input)
	}
	return nil
}

// defaultOutput is INPUT.results.jsonl beside the input.
func defaultOutput(input string) string {
	return strings.TrimSuffix(input, filepath.Ext(input)) + ".results.jsonl"
}

func runRun(cmd *cobra.Command, g *globalFlags, f *runFlags, input string) (retErr error) {
	stderr := cmd.ErrOrStderr()
	log, err := g.logger(cmd, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(input); err != nil && !(errors.Is(err, fs.ErrNotExist) && f.db != "" && f.mode != "auto" && f.deadline == "") {
		// Without the file, a host can only join the run another host imports
		// into a shared store (--db): see docs/run.md, several machines.
		return usageErr("clade run PATH/TO/input.jsonl", "input %s: %v", input, err)
	}
	if err := checkAutoCache("run", f.autoCache, input); err != nil {
		return err
	}
	if f.concurrency < 1 || f.concurrency > runner.MaxConcurrency {
		return usageErr("clade run --concurrency 256", "--concurrency %d: want 1 to %d requests in flight (per process; more processes on one store add theirs)", f.concurrency, runner.MaxConcurrency)
	}
	cat, err := catalog.Load(f.catalogPath)
	if err != nil {
		return usageErr("clade run --catalog PATH (see docs/catalog.md)", "%v", err)
	}
	if f.tier != "auto" {
		if _, err := cat.Tier(f.tier); err != nil {
			return usageErr("clade run --tier auto", "--tier: %v", err)
		}
	}
	routing, err := buildRouting("run", f.model, f.routing, f.fallback, f.fallbackAfter, cat)
	if err != nil {
		return err
	}
	var deadline time.Time
	if f.mode == "" {
		f.mode = "realtime"
	}
	switch {
	case f.mode != "realtime" && f.mode != "auto":
		return usageErr("clade run --mode auto --deadline 3h", "--mode %q: want realtime or auto", f.mode)
	case f.deadline != "":
		if deadline, err = parseDeadline(f.deadline, time.Now()); err != nil {
			return usageErr("clade run --deadline 3h (or 15:30, or 2026-11-27T09:00:00Z)", "--deadline: %v", err)
		}
		f.mode = "auto"
	case f.mode == "auto":
		// No deadline: the batch window. Batches do the work; realtime takes what
		// is left before it would expire.
		deadline = time.Now().Add(plan.BatchWindow)
	}
	switch {
	case f.cacheWarm != batch.CacheWarmOff && f.cacheWarm != batch.CacheWarmRealtime:
		return usageErr("clade run --deadline 3h --cache-warm realtime", "--cache-warm %q: want off or realtime", f.cacheWarm)
	case f.cacheWarm == batch.CacheWarmRealtime && f.mode != "auto":
		return usageErr("clade run --deadline 3h --cache-warm realtime",
			"--cache-warm is for the batches of the auto mode (--deadline or --mode auto); realtime runs warm each prefix already (--cache-schedule)")
	case f.cacheWarmGroup < 1:
		return usageErr("clade run --deadline 3h --cache-warm realtime --cache-warm-group 4", "--cache-warm-group must be ≥ 1")
	}
	if f.mode == "auto" {
		if f.emulate != "" && f.tier == "auto" {
			f.tier = f.emulate
		}
		if f.tier == "auto" {
			return usageErr("clade run --deadline 3h --tier tier-2", "--deadline and --mode auto plan with the account's limits: name its tier with --tier")
		}
	}
	ctx := cmd.Context()
	sess, err := openSession(cmd, input, &f.output, &f.db, f.force, f.baseURL, f.emulate, cat, log)
	if err != nil {
		return err
	}
	defer func() { retErr = withClose(retErr, sess.close) }()
	client, store := sess.client, sess.store

	var reg *prometheus.Registry
	if f.metricsAddr != "" {
		reg = prometheus.NewRegistry()
		stop, addr, err := serveMetrics(f.metricsAddr, reg)
		if err != nil {
			return usageErr("clade run --metrics-addr 127.0.0.1:9090", "--metrics-addr: %v", err)
		}
		defer stop()
		fmt.Fprintf(stderr, "metrics on http://%s/metrics\n", addr)
	}
	if f.dashboard != "" {
		if f.dash, err = dashboard.Listen(f.dashboard, "clade run "+filepath.Base(input)); err != nil {
			return usageErr("clade run --dashboard 127.0.0.1:8090", "--dashboard: %v", err)
		}
		defer f.dash.Close()
		fmt.Fprintf(stderr, "dashboard on %s\n", f.dash.URL())
	}
	var lim *admit.Limiter
	if f.limitsRedis != "" {
		l, closeLim, err := sharedLimiter(ctx, "clade run", f.limitsRedis, f.limitsNamespace, false, cat, f.tier, f.concurrency, log)
		if err != nil {
			return err
		}
		defer closeLim()
		lim = l
	}
	if f.mode == "auto" {
		return runHybrid(cmd, f, input, cat, client, store, routing, deadline, reg, lim, log)
	}
	opts, _ := json.Marshal(map[string]any{"tier": f.tier, "model": f.model, "output": f.output})
	var progress io.Writer = stderr
	if f.quiet {
		progress = nil
	}
	abort := secondSignal(ctx)
	var registerer prometheus.Registerer
	if reg != nil {
		registerer = reg
	}
	sum, err := runner.Run(ctx, runner.Config{
		Spec: lifecycle.Spec{Store: store, Client: client, Catalog: cat, Input: input, Output: f.output,
			Ordered: f.ordered, Force: f.force, Strict: f.strict, Options: opts, Tier: f.tier,
			AutoCacheBreakpoints: f.autoCache, Budget: f.budget, Progress: progress, Dashboard: f.dash.Feed(), Registry: registerer, Logger: log},
		MaxConcurrency: f.concurrency, MaxAttempts: f.maxAttempts, Routing: routing, StreamAbove: f.streamAbove,
		CountTokens: f.countTokens, Abort: abort, Limiter: lim, CacheScheduleOff: f.cacheOff,
	})
	return endRun(cmd, sum, err, ending{input: input, output: f.output, db: f.db})
}

// buildRouting makes the routing of --model, --routing FILE and --fallback-model
// (the flags of command cmd), or a usage error.
func buildRouting(cmd, model, file, fallback string, fallbackAfter int, cat *catalog.Catalog) (*runner.Routing, error) {
	routing := &runner.Routing{Override: model, Fallback: fallback, FallbackAfter: fallbackAfter}
	if file != "" {
		rt, err := runner.LoadRouting(file, cat)
		if err != nil {
			return nil, usageErr("clade "+cmd+" --routing FILE (see docs/run.md)", "%v", err)
		}
		if model != "" {
			rt.Override = model
		}
		if fallback != "" {
			rt.Fallback, rt.FallbackAfter = fallback, fallbackAfter
		}
		routing = rt
	}
	if err := routing.Validate(cat); err != nil {
		return nil, usageErr("clade "+cmd+" --model haiku", "%v", err)
	}
	return routing, nil
}

// upstreamClient returns the API client: an in-process emulator when emulateTier is
// set, else the API named by baseURL or ANTHROPIC_BASE_URL with ANTHROPIC_API_KEY.
func upstreamClient(ctx context.Context, baseURL, emulateTier string, cat *catalog.Catalog, log interface{ Info(string, ...any) }) (*upstream.Client, func(), error) {
	if emulateTier != "" {
		if _, err := cat.Tier(emulateTier); err != nil {
			return nil, nil, usageErr("clade run --emulate tier-2", "--emulate: %v", err)
		}
		em, err := emulator.Start(emulator.Config{Catalog: cat, Tier: emulateTier, LatencyScale: 1})
		if err != nil {
			return nil, nil, failure("", fmt.Errorf("start emulator: %w", err))
		}
		log.Info("emulator started", "url", em.URL, "tier", emulateTier)
		c, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret("sk-ant-emulated")})
		if err != nil {
			em.Close()
			return nil, nil, failure("", err)
		}
		return c, func() { em.Close() }, nil
	}
	key := os.Getenv("ANTHROPIC_API_KEY")
	if key == "" {
		return nil, nil, usageErr("export ANTHROPIC_API_KEY=sk-ant-..., or add --emulate tier-2 to try it on the built-in emulator",
			"ANTHROPIC_API_KEY is not set")
	}
	if baseURL == "" {
		baseURL = os.Getenv("ANTHROPIC_BASE_URL")
	}
	c, err := upstream.New(upstream.Config{BaseURL: baseURL, APIKey: upstream.NewSecret(key)})
	if err != nil {
		return nil, nil, usageErr("check --base-url / ANTHROPIC_BASE_URL", "%v", err)
	}
	return c, func() {}, nil
}

// secondSignal returns a channel closed on the second SIGINT or SIGTERM (the first
// one cancels the command's context, which drains).
func secondSignal(ctx context.Context) <-chan struct{} {
	abort := make(chan struct{})
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		defer signal.Stop(ch)
		n := 0
		for {
			select {
			case <-ch:
				n++
				if n == 2 {
					close(abort)
					return
				}
			case <-ctx.Done():
				if n == 0 {
					// Cancelled without a signal of ours (tests): wait for one more.
					n = 1
				}
			}
		}
	}()
	return abort
}

func serveMetrics(addr string, reg *prometheus.Registry) (func(), string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return func() { srv.Close() }, ln.Addr().String(), nil
}

// redactDSN hides a password in a postgres URL.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if j := strings.Index(dsn[i+3:], "@"); j >= 0 {
			cred := dsn[i+3 : i+3+j]
			if k := strings.Index(cred, ":"); k >= 0 {
				return dsn[:i+3] + cred[:k] + ":***" + dsn[i+3+j:]
			}
		}
	}
	return dsn
}
