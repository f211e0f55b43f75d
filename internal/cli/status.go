package cli

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

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
when results came and how fast (overall and in the last minute), whether a process
works the run now, the errored lines grouped by error type and message, and the bad
input lines that were skipped (file, line, field and reason).

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
				act, err := st.Activity(ctx, r.ID, time.Now())
				if err != nil {
					return failure("", err)
				}
				for _, l := range activityLines(act, s.Results, time.Now()) {
					fmt.Fprintln(w, l)
				}
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

// activityLines are status's lines on the run's pace, its processes and its
// errors.
func activityLines(a *jobs.Activity, results map[jobs.ResultType]int64, now time.Time) []string {
	var out []string
	var done int64
	for _, n := range results {
		done += n
	}
	if !a.First.IsZero() {
		span := a.Last.Sub(a.First)
		line := fmt.Sprintf("  results from %s to %s UTC (%s)", a.First.UTC().Format("2006-01-02 15:04:05"),
			a.Last.UTC().Format("15:04:05"), span.Round(time.Second))
		if span >= time.Second {
			line += fmt.Sprintf(", %.0f/min", float64(done)/span.Minutes())
		}
		out = append(out, line+fmt.Sprintf("; %d in the last minute, the last %s ago", a.LastMinute, now.Sub(a.Last).Round(time.Second)))
	}
	switch {
	case a.Running > 0:
		out = append(out, fmt.Sprintf("  now: %d requests in flight; %s", a.Running, processes(a.Workers)))
	case len(a.Workers) > 0:
		out = append(out, fmt.Sprintf("  now: no request of this run in flight; %s", processes(a.Workers)))
	default:
		out = append(out, "  now: no clade process is working this store")
	}
	if len(a.Errors) > 0 {
		out = append(out, "  errored, by error type:")
		for i, g := range a.Errors {
			if i == 10 {
				out = append(out, fmt.Sprintf("    … and %d more kinds", len(a.Errors)-10))
				break
			}
			msg := g.Message
			if len(msg) > 100 {
				msg = cutRunes(msg, 100) + "…"
			}
			out = append(out, fmt.Sprintf("    %6d  %s (first: line %d): %s", g.Count, g.Type, g.FirstLine, msg))
		}
	}
	return out
}

// processes names the live processes of a store.
func processes(ws []jobs.WorkerInfo) string {
	if len(ws) == 0 {
		return "no live clade process on this store"
	}
	names := make([]string, 0, len(ws))
	for i, w := range ws {
		if i == 4 {
			names = append(names, fmt.Sprintf("and %d more", len(ws)-4))
			break
		}
		names = append(names, fmt.Sprintf("%s pid %d", w.Host, w.PID))
	}
	word := "process"
	if len(ws) > 1 {
		word = "processes"
	}
	return fmt.Sprintf("%d live clade %s on this store (%s)", len(ws), word, strings.Join(names, ", "))
}

// cutRunes is s cut to at most n bytes, at a rune boundary.
func cutRunes(s string, n int) string {
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
