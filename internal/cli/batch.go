package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/jobs"
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
request); succeeded and invalid requests are final.

The run is durable, with the same store as clade run (SQLite next to the output, or
--db postgres://...): each batch is recorded before it is created and its id right
after. Stop it at any time and run the same command again: it picks up the batches
in flight, and a batch whose creation was interrupted is found by listing the
account's batches, not created twice (see docs/batch.md).

The key comes from ANTHROPIC_API_KEY and the API from ANTHROPIC_BASE_URL (default
https://api.anthropic.com). --emulate TIER runs against an in-process emulator instead.`,
		Example: `  clade batch prompts.jsonl -o results.jsonl --tier tier-2
  clade batch prompts.jsonl -o results.jsonl --emulate tier-2     # no key, no network
  clade batch cancel results.jsonl                                # cancel the batches in flight`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBatch(cmd, g, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVarP(&f.output, "output", "o", "", "results `FILE` (JSONL, one line per custom_id); default: INPUT.results.jsonl")
	fl.StringVar(&f.db, "db", "", "store: a SQLite `PATH` or a postgres:// URL; default: OUTPUT.clade.db next to the output")
	fl.StringVar(&f.tier, "tier", "tier-1", "batch limits to respect (rpm, processing queue, requests per batch): a catalog tier\n("+strings.Join(catalog.Default().TierNames(), ", ")+")")
	fl.StringVar(&f.catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog of models, tiers and prices")
	fl.IntVar(&f.maxRequests, "max-requests", 0, "most requests in one batch (default: the tier's, 100,000)")
	fl.IntVar(&f.maxRounds, "max-rounds", batch.DefaultMaxRounds, "batches a request may go in before an expired, canceled or retryable error is final")
	fl.DurationVar(&f.poll, "poll", batch.DefaultPollMin, "shortest wait between two polls of a batch (a tenth of its age, up to 1m)")
	fl.BoolVar(&f.strict, "strict", false, "abort before any request if the input has a bad line")
	fl.BoolVar(&f.force, "force", false, "re-import an input that changed since the store was made (drops its results)")
	fl.StringVar(&f.baseURL, "base-url", "", "API base `URL` (default: ANTHROPIC_BASE_URL, else https://api.anthropic.com)")
	fl.StringVar(&f.emulate, "emulate", "", "run against an in-process emulator at this `TIER` (no key or network needed)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no progress lines; only the summary")
	cmd.AddCommand(newBatchCancelCmd(g))
	return cmd
}

func runBatch(cmd *cobra.Command, g *globalFlags, f *batchFlags, input string) error {
	stderr := cmd.ErrOrStderr()
	log, err := g.logger(cmd, stderr)
	if err != nil {
		return err
	}
	if _, err := os.Stat(input); err != nil {
		return usageErr("clade batch PATH/TO/input.jsonl", "input %s: %v", input, err)
	}
	cat, err := catalog.Load(f.catalogPath)
	if err != nil {
		return usageErr("clade batch --catalog PATH (see docs/catalog.md)", "%v", err)
	}
	if _, err := cat.Tier(f.tier); err != nil {
		return usageErr("clade batch --tier tier-1", "--tier: %v", err)
	}
	if f.maxRequests < 0 || f.maxRounds < 1 || f.poll <= 0 {
		return usageErr("clade batch --max-requests 100000 --max-rounds 5 --poll 5s", "--max-requests must be ≥ 0, --max-rounds ≥ 1 and --poll > 0")
	}
	ctx := cmd.Context()
	client, store, closeAll, err := openSession(ctx, input, &f.output, &f.db, f.baseURL, f.emulate, cat, log)
	if err != nil {
		return err
	}
	defer closeAll()

	var progress io.Writer = stderr
	if f.quiet {
		progress = nil
	}
	opts, _ := json.Marshal(map[string]any{"mode": "batch", "tier": f.tier, "output": f.output})
	sum, err := batch.Run(ctx, batch.Config{
		Store: store, Client: client, Catalog: cat, Input: input, Output: f.output,
		Force: f.force, Strict: f.strict, Options: opts, Tier: f.tier,
		MaxRequests: f.maxRequests, MaxRounds: f.maxRounds, PollMin: f.poll,
		Progress: progress, Logger: log,
	})
	if sum != nil {
		printBatchSummary(stderr, sum, f.output, f.db)
	}
	switch {
	case errors.Is(err, jobs.ErrInputChanged):
		return usageErr(fmt.Sprintf("clade batch %s --force (drops its earlier results), or use another --db", input), "%s changed since the store %s was made", input, redactDSN(f.db))
	case errors.Is(err, batch.ErrStrict):
		return usageErr("fix the lines listed above, or run without --strict to skip them", "%v", err)
	case err != nil:
		return failure("run the same command again to resume; add --log-level debug for details", err)
	}
	if ctx.Err() != nil && sum != nil && sum.Pending > 0 {
		fmt.Fprintf(stderr, "interrupted: %d requests pending (batches in flight keep running); run the same command again to resume\n", sum.Pending)
		return &cliError{code: ExitFailure, err: errors.New("interrupted"), try: "run the same command again to resume, or clade batch cancel " + f.output}
	}
	if sum != nil && sum.Errored+sum.Expired+sum.Canceled > 0 {
		return &cliError{code: ExitFailedRequests, err: fmt.Errorf("%d requests did not succeed (their result lines are in %s)", sum.Errored+sum.Expired+sum.Canceled, f.output),
			try: "clade status --db " + redactDSN(f.db)}
	}
	return nil
}

func printBatchSummary(w io.Writer, s *batch.Summary, output, db string) {
	fmt.Fprintf(w, "\n%d requests: %d succeeded, %d errored, %d expired, %d canceled, %d pending; %d bad lines skipped\n",
		s.Requests, s.Succeeded, s.Errored, s.Expired, s.Canceled, s.Pending, s.Problems)
	fmt.Fprintf(w, "%d batches created, %d requests resubmitted, in %s\n", s.Batches, s.Resubmitted, s.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "tokens: %d input, %d output; cost $%.4f at batch prices\n", s.InputTokens, s.OutputTokens, s.CostUSD)
	fmt.Fprintf(w, "results: %s\nstore:   %s\n", output, redactDSN(db))
}

func newBatchCancelCmd(g *globalFlags) *cobra.Command {
	var db, baseURL string
	cmd := &cobra.Command{
		Use:   "cancel [--db PATH | RESULTS.jsonl]",
		Short: "Cancel the batches in flight of the runs in a store",
		Long: `Ask the API to cancel every batch of the store that has not ended. Requests
already processed keep their results; the next clade batch run reads them and sends
the canceled requests again (up to --max-rounds batches per request).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				if len(args) == 0 {
					return usageErr("clade batch cancel results.jsonl, or clade batch cancel --db PATH", "no store named")
				}
				db = args[0] + ".clade.db"
			}
			if _, err := os.Stat(db); err != nil && !isURL(db) {
				return usageErr("clade batch cancel --db PATH (the store clade batch printed)", "no store at %s", db)
			}
			log, err := g.logger(cmd, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			client, _, err := upstreamClient(ctx, baseURL, "", catalog.Default(), log)
			if err != nil {
				return err
			}
			store, err := jobs.Open(ctx, db, jobs.WithLogger(log))
			if err != nil {
				return failure("check --db", fmt.Errorf("open store %s: %w", redactDSN(db), err))
			}
			defer store.Close()
			if err := store.PrepareBatches(ctx); err != nil {
				return failure("", err)
			}
			open, err := store.Batches(ctx, 0, jobs.BatchCreated)
			if err != nil {
				return failure("", err)
			}
			var errs []error
			for _, b := range open {
				got, err := client.CancelBatch(ctx, b.BatchID)
				if err != nil {
					errs = append(errs, fmt.Errorf("cancel batch %s: %w", b.BatchID, err))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", got.ID, got.ProcessingStatus)
			}
			if err := errors.Join(errs...); err != nil {
				return failure("run the same command again", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d batches asked to cancel\n", len(open))
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "store: a SQLite `PATH` or a postgres:// URL")
	cmd.Flags().StringVar(&baseURL, "base-url", "", "API base `URL` (default: ANTHROPIC_BASE_URL, else https://api.anthropic.com)")
	return cmd
}

// batchStatusLine describes a run's Message Batches for clade status ("" when the
// run has none): how many are done, and the ids of those in flight.
func batchStatusLine(ctx context.Context, st *jobs.Store, runID int64) string {
	if err := st.PrepareBatches(ctx); err != nil {
		return ""
	}
	bs, err := st.Batches(ctx, runID)
	if err != nil || len(bs) == 0 {
		return ""
	}
	done := 0
	var open []string
	for _, b := range bs {
		switch b.State {
		case jobs.BatchDone:
			done++
		case jobs.BatchCreated:
			open = append(open, b.BatchID)
		case jobs.BatchIntent:
			open = append(open, "(unconfirmed create)")
		}
	}
	line := fmt.Sprintf("  batches: %d done, %d in flight", done, len(open))
	if len(open) > 5 {
		open = append(open[:5], "…")
	}
	if len(open) > 0 {
		line += ": " + strings.Join(open, ", ")
	}
	return line
}
