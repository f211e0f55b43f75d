package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newServeSpendCmd(g *globalFlags) *cobra.Command {
	var (
		db  string
		all bool
	)
	cmd := &cobra.Command{
		Use:   "spend",
		Short: "Print what clade serve's teams and keys spent, per period",
		Long: `Print the spend clade serve recorded in its store, per scope (team:NAME, or
key:LABEL for a key with a budget of its own) and period (day, week from Monday,
month; UTC), in USD: the current periods, or every period recorded with --all.`,
		Example: `  clade serve spend                          # ./clade-serve.db
  clade serve spend --db postgres://user@host/clade --all`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := openExistingStore(cmd, g, db, "clade serve spend --db PATH (clade serve's --db)")
			if err != nil {
				return err
			}
			defer st.Close()
			ctx := cmd.Context()
			at := time.Now()
			if all {
				at = time.Time{}
			}
			rows, err := st.Spends(ctx, at)
			if err != nil {
				return failure("", err)
			}
			w := cmd.OutOrStdout()
			if len(rows) == 0 {
				fmt.Fprintln(w, "no spend recorded")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SCOPE\tPERIOD\tSTART (UTC)\tSPENT")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t$%.6f\n", r.Scope, r.Period, r.Start.Format("2006-01-02"), r.Spent.USD())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&db, "db", defaultServeDB, "clade serve's spend store: a SQLite `PATH` or a postgres:// URL")
	cmd.Flags().BoolVar(&all, "all", false, "every period recorded, not only the current ones")
	return cmd
}
