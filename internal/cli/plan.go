package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/plan"
)

// planFlags are the flags of `clade plan`.
type planFlags struct {
	tiers        []string
	catalogPath  string
	sample       int64
	outputRatio  float64
	outputTokens int64
	deadline     time.Duration
	cacheGroup   int
	json         bool
}

func newPlanCmd(g *globalFlags) *cobra.Command {
	f := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan INPUT.jsonl",
		Short: "Estimate a workload's time, cost and best mode before sending anything",
		Long: `Read INPUT.jsonl (the Message Batches line format) as a stream and estimate, per
model, its requests, input tokens (from the request bytes) and output tokens (an
assumption: by default ` + fmt.Sprint(plan.DefaultOutputRatio) + ` × max_tokens), and what they cost in realtime and
through the Message Batches API.

For each tier it gives the realtime time to finish, the limit that binds (requests,
input or output tokens per minute; each bucket starts full, so the time is
max(0, need/limit − 1) minutes, model classes in parallel), and what unlocks the
next tier. It ends with a recommendation: batch when there is no --deadline or it
is 24 h or more, otherwise the first tier that finishes in time; and, labelled as a
suggestion, a cheaper model every request would fit. Where lines have cache_control
prefixes, it gives the input cost and time with and without clade run's
cache-aware ordering (one write per prefix, then reads), and the cost through
clade batch, whose cache is best effort (requests cached in groups of N,
--cache-warm-group), with and without --cache-warm realtime.

Nothing is sent; no key is needed. See docs/plan.md.`,
		Example: `  clade plan prompts.jsonl
  clade plan prompts.jsonl --tier tier-2 --deadline 2h
  clade plan big.jsonl --sample 10000 --output-tokens 300 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlan(cmd, g, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringSliceVar(&f.tiers, "tier", nil, "tiers to estimate, comma-separated (default: every account tier in the catalog:\n"+strings.Join(plan.DefaultTiers(catalog.Default()), ", ")+")")
	fl.StringVar(&f.catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog of models, tiers and prices")
	fl.Int64Var(&f.sample, "sample", 0, "parse about `N` lines spread evenly over the file and scale up (0: every line)")
	fl.Float64Var(&f.outputRatio, "output-ratio", 0, fmt.Sprintf("expected output as a fraction of max_tokens, in (0, 1] (default %g)", plan.DefaultOutputRatio))
	fl.Int64Var(&f.outputTokens, "output-tokens", 0, "expected output `TOKENS` per request (at most its max_tokens), instead of --output-ratio")
	fl.DurationVar(&f.deadline, "deadline", 0, "when the work must be done, e.g. 90m or 48h (0: none, so batch)")
	fl.IntVar(&f.cacheGroup, "cache-warm-group", plan.DefaultCacheWarmGroup, "the batch cache the batch figures assume: requests cached in groups of `N` processed\ntogether, as clade batch --cache-warm-group")
	fl.BoolVar(&f.json, "json", false, "print the plan as JSON (field names in docs/plan.md)")
	return cmd
}

func runPlan(cmd *cobra.Command, g *globalFlags, f *planFlags, input string) error {
	if _, err := g.logger(cmd, cmd.ErrOrStderr()); err != nil {
		return err
	}
	switch {
	case f.outputRatio != 0 && f.outputTokens != 0:
		return usageErr("clade plan "+input+" --output-tokens 300", "--output-ratio and --output-tokens: give one, not both")
	case f.outputRatio < 0 || f.outputRatio > 1:
		return usageErr("clade plan "+input+" --output-ratio 0.5", "--output-ratio %g: want a fraction in (0, 1]", f.outputRatio)
	case f.outputTokens < 0:
		return usageErr("clade plan "+input+" --output-tokens 300", "--output-tokens %d: want a positive count", f.outputTokens)
	case f.sample < 0:
		return usageErr("clade plan "+input+" --sample 10000", "--sample %d: want 0 (every line) or more", f.sample)
	case f.deadline < 0:
		return usageErr("clade plan "+input+" --deadline 2h", "--deadline %s: want a positive duration", f.deadline)
	case f.cacheGroup < 1:
		return usageErr("clade plan "+input+" --cache-warm-group 4", "--cache-warm-group %d: want 1 or more", f.cacheGroup)
	}
	if st, err := os.Stat(input); err != nil {
		return usageErr("clade plan PATH/TO/input.jsonl", "input %s: %v", input, err)
	} else if st.IsDir() {
		return usageErr("clade plan PATH/TO/input.jsonl", "input %s is a directory", input)
	}
	cat, err := catalog.Load(f.catalogPath)
	if err != nil {
		return usageErr("clade plan --catalog PATH (see docs/catalog.md)", "%v", err)
	}
	for _, t := range f.tiers {
		if _, err := cat.Tier(t); err != nil {
			return usageErr("clade plan "+input+" --tier "+strings.Join(plan.DefaultTiers(cat), ","), "--tier: %v", err)
		}
	}
	w, err := plan.Scan(input, plan.ScanOptions{
		Sample: f.sample,
		Output: plan.OutputAssumption{Ratio: f.outputRatio, Tokens: f.outputTokens},
	})
	if err != nil {
		return failure("check that "+input+" is a readable file", fmt.Errorf("scan %s: %w", input, err))
	}
	p, err := plan.Make(cat, w, plan.Options{Tiers: f.tiers, Deadline: f.deadline, CacheGroup: f.cacheGroup})
	if err != nil {
		return failure("", err)
	}
	out := cmd.OutOrStdout()
	if f.json {
		err = plan.WriteJSON(out, p)
	} else {
		err = plan.WriteText(out, p)
	}
	if err != nil {
		return failure("", fmt.Errorf("write plan: %w", err))
	}
	return nil
}
