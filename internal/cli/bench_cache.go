package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/bench"
	"github.com/clade-dev/clade/internal/runner"
)

func newBenchCacheCmd(*globalFlags) *cobra.Command {
	var cfg bench.CacheConfig
	var catalogPath string
	var fixed int
	var slots, unstreamed, unbounded, noOff bool
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Prompt-cache scheduling of clade run against today's order at full concurrency",
		Long: `Write --documents documents of about --doc-tokens tokens, each asked --questions short
questions (one line per question, grouped by document, the document in a cache_control
block), and run them with clade run twice, one after the other, each against its own
fresh in-process emulator (latency on): with prompt-cache scheduling, and with it off (every
request in input order at --concurrency); with --fixed N, also with a fixed-concurrency
client of N workers; with --one-worker-per-slot, also with scheduling but one job per
slot of --concurrency (the questions waiting for their document's warming answer holding
slots, as before they left them free); with --unstreamed-warm, also with scheduling but no
request streamed (the warming ones included, as before they were streamed); with
--unbounded-warmers, also with scheduling but any number of warming requests waiting for
admission; --no-schedule-off leaves out the run with scheduling off. Report input
cost, cache write and read tokens, the tokens that counted toward ITPM and wall time, and
the ratios.
The default size (200 × 10 × 6,000 at tier-2) takes about 11 minutes, 16 with --fixed 256
and --one-worker-per-slot (most of it the run with scheduling off).`,
		Example: `  clade bench cache
  clade bench cache --documents 20 --questions 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := catalog.Load(catalogPath)
			if err != nil {
				return usageErr("clade bench cache --catalog PATH", "%v", err)
			}
			if _, err := cat.Tier(cfg.Tier); err != nil {
				return usageErr("clade bench cache --tier tier-2", "--tier: %v", err)
			}
			if _, err := cat.Resolve(cfg.Model); err != nil {
				return usageErr("clade bench cache --model claude-sonnet-4-6", "--model: %v", err)
			}
			if cfg.Concurrency < 1 || cfg.Concurrency > runner.MaxConcurrency {
				return usageErr("clade bench cache --concurrency 256", "--concurrency %d: want 1 to %d", cfg.Concurrency, runner.MaxConcurrency)
			}
			cfg.Catalog = cat
			// The orders measured: the first is clade run's scheduling, each other
			// a baseline its ratios are taken against.
			type order struct {
				name, against string
				cfg           bench.CacheConfig
			}
			orders := []order{{name: "clade run, scheduling on", cfg: cfg}}
			add := func(on bool, name, against string, set func(*bench.CacheConfig)) {
				if on {
					c := cfg
					set(&c)
					orders = append(orders, order{name, against, c})
				}
			}
			add(!noOff, fmt.Sprintf("clade run --cache-schedule=off (%d in flight)", cfg.Concurrency), "--cache-schedule=off",
				func(c *bench.CacheConfig) { c.ScheduleOff = true })
			add(fixed > 0, fmt.Sprintf("fixed client, %d workers", fixed), "the fixed client", func(c *bench.CacheConfig) { c.Fixed = fixed })
			add(slots, "clade run, scheduling on, one job per slot", "one job per slot", func(c *bench.CacheConfig) { c.OneWorkerPerSlot = true })
			add(unstreamed, "clade run, scheduling on, --stream-above never", "--stream-above never", func(c *bench.CacheConfig) { c.StreamNever = true })
			add(unbounded, "clade run, scheduling on, warming requests waiting unbounded", "warming requests waiting unbounded",
				func(c *bench.CacheConfig) { c.UnboundedWarmers = true })
			res := make([]*bench.CacheResult, len(orders))
			// One after the other: on a small machine, measurements at once take each
			// other's CPU, and wall time is one of the figures.
			for i, o := range orders {
				fmt.Fprintf(cmd.ErrOrStderr(), "measurement %d of %d: %d documents × %d questions …\n", i+1, len(orders), cfg.Documents, cfg.Questions)
				var err error
				if res[i], err = bench.MeasureCache(cmd.Context(), o.cfg); err != nil {
					return failure("", err)
				}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "| order | succeeded | calls (429s) | input cost | uncached | cache write | cache read | ITPM tokens | ITPM/min | wall |\n")
			fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n")
			for i, r := range res {
				fmt.Fprintf(w, "| %s | %d | %d (%d) | $%.2f | %d | %d | %d | %d | %.0f | %s |\n",
					orders[i].name, r.Succeeded, r.Sent, r.RateLimited, r.InputCostUSD, r.Uncached, r.CacheWrite, r.CacheRead,
					r.ITPMTokens, r.ITPMPerMinute(), r.Wall.Round(100*1e6))
			}
			s := res[0]
			for i, n := range res[1:] {
				fmt.Fprintf(w, "\nagainst %s: input cost %.2f× lower, wall time %.2f× shorter, ITPM tokens %.2f× fewer\n",
					orders[i+1].against, n.InputCostUSD/s.InputCostUSD, n.Wall.Seconds()/s.Wall.Seconds(), float64(n.ITPMTokens)/float64(s.ITPMTokens))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Tier, "tier", "tier-2", "tier of the emulator and the runner")
	fl.StringVar(&cfg.Model, "model", "claude-sonnet-4-6", "model of every request")
	fl.IntVar(&cfg.Documents, "documents", 200, "documents")
	fl.IntVar(&cfg.Questions, "questions", 10, "questions per document")
	fl.Int64Var(&cfg.DocTokens, "doc-tokens", 6000, "tokens per document")
	fl.IntVar(&cfg.Concurrency, "concurrency", 256, "the runner's most requests in flight")
	fl.Float64Var(&cfg.LatencyScale, "latency-scale", 1, "the emulator's latency scale")
	fl.IntVar(&fixed, "fixed", 0, "also measure a fixed-concurrency client of this many workers (retrying after retry-after until each succeeds)")
	fl.BoolVar(&unbounded, "unbounded-warmers", false, "also measure scheduling with any number of warming requests waiting for admission (a baseline)")
	fl.BoolVar(&noOff, "no-schedule-off", false, "leave out the run with scheduling off (long where ITPM binds)")
	fl.BoolVar(&unstreamed, "unstreamed-warm", false, "also measure scheduling with no request streamed (--stream-above never), the warming ones included (a baseline)")
	fl.Int64Var(&cfg.AnswerTokens, "answer-tokens", 20, "the answers' median length in tokens (max_tokens is 3 times it, at least 64)")
	fl.BoolVar(&slots, "one-worker-per-slot", false, "also measure scheduling with one job per slot of --concurrency, the waiting ones included (a baseline)")
	fl.StringVar(&catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog")
	return cmd
}
