package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/internal/intake"
	"github.com/clade-dev/clade/internal/jobs"
)

func newStatusCmd(g *globalFlags) *cobra.Command {
	var db string
	var maxProblems int
	cmd := &cobra.Command{
		Use:   "status [--db PATH | RESULTS.jsonl]",
		Short: "Show the runs of a store: progress, results, cost and bad input lines",
		Long: `Show every run in a store: requests, results by type, pending, tokens and cost,
and the bad input lines that were skipped (file, line, field and reason).

For a clade batch run it also shows its Message Batches: how many are done, in
flight or unconfirmed (a create whose outcome the next run settles), the requests
pending in batches in flight and in none, whether the run was canceled, and one line
per batch (id, state, requests, age since created), those in flight first. The
states are the store's: run clade batch to learn whether a batch in flight ended.

Name the store with --db, or give the results file of a run (its store is
RESULTS.jsonl.clade.db unless --db was used).`,
		Example: `  clade status results.jsonl
  clade status --db postgres://user@host/clade`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				if len(args) == 0 {
					return usageErr("clade status results.jsonl, or clade status --db PATH", "no store named")
				}
				db = args[0] + ".clade.db"
			}
			st, _, err := openExistingStore(cmd, g, db, "clade status --db PATH (the store `clade run` printed)")
			if err != nil {
				return err
			}
			defer st.Close()
			ctx := cmd.Context()
			runs, err := st.Runs(ctx)
			if err != nil {
				return failure("", err)
			}
			w := cmd.OutOrStdout()
			if len(runs) == 0 {
				fmt.Fprintln(w, "no runs in this store")
			}
			for _, r := range runs {
				s, err := st.Status(ctx, r.ID)
				if err != nil {
					return failure("", err)
				}
				fmt.Fprintf(w, "run %d  %s\n", r.ID, r.InputPath)
				imported := "imported"
				if !s.Imported {
					imported = "import not finished"
				}
				fmt.Fprintf(w, "  requests %d (%s), bad lines %d\n", s.Requests, imported, s.Problems)
				fmt.Fprintf(w, "  succeeded %d, errored %d, canceled %d, expired %d, pending %d\n",
					s.Results[jobs.Succeeded], s.Results[jobs.Errored], s.Results[jobs.Canceled], s.Results[jobs.Expired], s.Pending)
				u := s.Usage
				fmt.Fprintf(w, "  tokens: input %d, cache writes %d, cache reads %d, output %d; cost $%.4f\n",
					u.InputTokens, u.CacheWrite5mTokens+u.CacheWrite1hTokens, u.CacheReadTokens, u.OutputTokens, s.CostUSD)
				for _, l := range batchStatusLines(ctx, st, r.ID, time.Now()) {
					fmt.Fprintln(w, l)
				}
				n := 0
				err = st.Problems(ctx, r.ID, func(p intake.Problem) error {
					if n < maxProblems {
						fmt.Fprintf(w, "  bad line %s\n", p.Format(r.InputPath))
					}
					n++
					return nil
				})
				if err != nil {
					return failure("", err)
				}
				if n > maxProblems {
					fmt.Fprintf(w, "  … and %d more (--problems N shows more)\n", n-maxProblems)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "the store: a SQLite `PATH` or a postgres:// URL")
	cmd.Flags().IntVar(&maxProblems, "problems", 20, "most bad input lines to list per run")
	return cmd
}

func isURL(s string) bool {
	return len(s) > 11 && (s[:11] == "postgres://" || (len(s) > 13 && s[:13] == "postgresql://"))
}
