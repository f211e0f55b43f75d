package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
)

// ending is where a run's files are, for its summary and hints.
type ending struct {
	input, output, db string
	// batches says the mode leaves batches in flight when interrupted.
	batches bool
}

// endRun prints the summary of a run of any mode (realtime, batch, hybrid) and
// turns how it ended into the command's error and exit code.
func endRun(cmd *cobra.Command, sum lifecycle.Summary, err error, e ending) error {
	stderr := cmd.ErrOrStderr()
	t := sum.Common()
	if t != nil && !errors.As(err, new(*jobs.NoRequestsError)) { // nothing to sum up
		printSummary(stderr, sum.Lines(), e.output, e.db)
	}
	if err != nil {
		return runError(cmd, e.input, e.output, e.db, err)
	}
	if t == nil {
		return nil
	}
	if t.Stopped != "" && t.Pending > 0 {
		return failure("raise --budget (or the account's limit), then run the same command again: what was done is kept",
			fmt.Errorf("stopped with %d requests left: %s", t.Pending, t.Stopped))
	}
	if cmd.Context().Err() != nil && t.Pending > 0 {
		inFlight, try := "", "run the same command again to resume"
		if e.batches {
			inFlight = " (batches in flight keep running)"
			if cmd.Flags().Lookup("resume-canceled") != nil {
				try += ", or clade batch cancel " + e.output
			}
		}
		return &cliError{code: ExitFailure, err: fmt.Errorf("interrupted: %d requests pending%s", t.Pending, inFlight), try: try}
	}
	if n := t.Failed(); n > 0 {
		try := "clade status --db " + redactDSN(e.db)
		if t.Canceled > 0 && cmd.Flags().Lookup("resume-canceled") != nil {
			try += "; to send the canceled requests again: " + rerun(cmd, map[string]string{"resume-canceled": ""})
		}
		return &cliError{code: ExitFailedRequests, err: fmt.Errorf("%d requests did not succeed (their result lines are in %s)", n, e.output), try: try}
	}
	return nil
}

// printSummary prints a run's summary lines, then where its results and store are.
func printSummary(w io.Writer, lines []string, output, db string) {
	fmt.Fprintln(w)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintf(w, "results: %s\nstore:   %s\n", output, redactDSN(db))
}
