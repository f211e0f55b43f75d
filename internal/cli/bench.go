package cli

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/bench"
)

func newBenchCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure clade end to end against the built-in emulator",
	}
	cmd.AddCommand(newBenchUtilizationCmd(g))
	return cmd
}

func newBenchUtilizationCmd(g *globalFlags) *cobra.Command {
	var tiers []string
	var shapes []string
	var model, catalogPath string
	var warmup, window time.Duration
	var workers int
	cmd := &cobra.Command{
		Use:   "utilization",
		Short: "How much of the binding rate limit clade run sustains, against a fixed-concurrency client",
		Long: `For each tier and workload shape, run a fresh in-process emulator (latency on) twice:
once with clade run (the runner and its store), once with a fixed-concurrency client
(--workers goroutines sending as fast as they can, retrying 429s after retry-after as
the SDKs do). After --warmup (which spends the buckets' initial one-minute burst),
measure over --window each limit's sustained use ÷ the limit, and the share of calls
answered 429. Every measurement runs at the same time, each against its own emulator.`,
		Example: `  clade bench utilization
  clade bench utilization --tier tier-1 --shape output-heavy --window 2m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := catalog.Load(catalogPath)
			if err != nil {
				return usageErr("clade bench utilization --catalog PATH", "%v", err)
			}
			var sh []bench.Shape
			for _, s := range shapes {
				switch s {
				case bench.InputHeavy.Name:
					sh = append(sh, bench.InputHeavy)
				case bench.OutputHeavy.Name:
					sh = append(sh, bench.OutputHeavy)
				default:
					return usageErr("clade bench utilization --shape input-heavy", "--shape %q: want input-heavy or output-heavy", s)
				}
			}
			for _, t := range tiers {
				if _, err := cat.Tier(t); err != nil {
					return usageErr("clade bench utilization --tier tier-1", "--tier: %v", err)
				}
			}
			type job struct {
				cfg bench.UtilizationConfig
				res *bench.Utilization
				err error
			}
			var all []*job
			for _, t := range tiers {
				for _, s := range sh {
					for _, client := range []string{"clade", "fixed"} {
						all = append(all, &job{cfg: bench.UtilizationConfig{Catalog: cat, Tier: t, Model: model, Shape: s,
							Warmup: warmup, Window: window, Client: client, FixedWorkers: workers}})
					}
				}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(cmd.ErrOrStderr(), "running %d measurements at once for %s …\n", len(all), warmup+window)
			var wg sync.WaitGroup
			for _, j := range all {
				wg.Add(1)
				go func() {
					defer wg.Done()
					j.res, j.err = bench.MeasureUtilization(cmd.Context(), j.cfg)
				}()
			}
			wg.Wait()
			fmt.Fprintf(w, "| tier | shape | client | binding | utilization | RPM | ITPM | OTPM | calls | 429s | gave up |\n")
			fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
			for _, j := range all {
				if j.err != nil {
					return failure("", fmt.Errorf("%s %s %s: %w", j.cfg.Tier, j.cfg.Shape.Name, j.cfg.Client, j.err))
				}
				r := j.res
				client := "clade run"
				if j.cfg.Client == "fixed" {
					client = fmt.Sprintf("fixed %d workers", j.cfg.FixedWorkers)
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | **%.3f** | %.3f | %.3f | %.3f | %d | %d (%.2f%%) | %d |\n",
					j.cfg.Tier, j.cfg.Shape.Name, client, strings.ToUpper(r.Binding), r.Max(), r.RPM, r.ITPM, r.OTPM,
					r.Sent, r.RateLimited, 100*r.RateLimitedShare(), r.Failed)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&tiers, "tier", []string{"tier-1", "tier-2"}, "tiers to measure")
	fl.StringSliceVar(&shapes, "shape", []string{"input-heavy", "output-heavy"}, "workload shapes: input-heavy (2,000-token prompts) and output-heavy (~400-token answers)")
	fl.StringVar(&model, "model", "claude-haiku-4-5", "model of every request")
	fl.StringVar(&catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog")
	fl.DurationVar(&warmup, "warmup", time.Minute, "time before the window (spends the initial burst)")
	fl.DurationVar(&window, "window", time.Minute, "measured time")
	fl.IntVar(&workers, "workers", 10, "the fixed client's concurrency")
	return cmd
}
