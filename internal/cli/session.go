package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/upstream"
)

// session is what `run` and `batch` open before their work: the API client and the
// store, with the output and the store resolved and checked.
type session struct {
	client *upstream.Client
	store  *jobs.Store
	db     string
	// closeEmu stops the in-process emulator, if any.
	closeEmu func()
}

// close closes the store (reporting its error: SQLite writes on close) and the
// emulator.
func (s *session) close() error {
	err := s.store.Close()
	s.closeEmu()
	if err != nil {
		return fmt.Errorf("close store %s: %w", redactDSN(s.db), err)
	}
	return nil
}

// openSession resolves the default output (INPUT.results.jsonl) and store
// (OUTPUT.clade.db), checks them before anything is written (the output is not the
// input nor the store, their directories exist, the output is this run's:
// jobs.CheckPaths and Store.ClaimOutput), checks the input's models against the
// catalog and probes the API with the key (preflight.go), and opens the API client
// and the store.
func openSession(cmd *cobra.Command, input string, output, db *string, force bool, baseURL, emulate string, cat *catalog.Catalog, log *slog.Logger) (*session, error) {
	ctx := cmd.Context()
	if *output == "" {
		*output = defaultOutput(input)
	}
	dbGiven := *db != ""
	if !dbGiven {
		*db = *output + ".clade.db"
	}
	if err := jobs.CheckPaths(input, *output, *db); err != nil {
		return nil, pathError(cmd, input, *output, dbGiven, err)
	}
	if err := checkModels(cmd, input, cat, cmd.ErrOrStderr()); err != nil {
		return nil, err
	}
	client, closeEmu, err := upstreamClient(ctx, baseURL, emulate, cat, log)
	if err != nil {
		return nil, err
	}
	if err := probeAPI(ctx, client, baseURL); err != nil {
		closeEmu()
		return nil, err
	}
	store, err := jobs.Open(ctx, *db, jobs.WithLogger(log))
	if err != nil {
		closeEmu()
		try := "check --db: a writable path, or a reachable postgres:// URL"
		if !dbGiven {
			try = "check that the directory of " + *output + " is writable, or give --db a writable path or a postgres:// URL"
		}
		return nil, failure(try, err)
	}
	s := &session{client: client, store: store, db: *db, closeEmu: closeEmu}
	if err := store.ClaimOutput(ctx, input, *output, force); err != nil {
		s.close()
		var taken *jobs.OutputTakenError
		if errors.As(err, &taken) {
			other := defaultOutput(input)
			if jobs.SameFile(other, *output) {
				other = strings.TrimSuffix(other, ".jsonl") + ".2.jsonl"
			}
			return nil, usageErr(fmt.Sprintf("%s (a results file of its own), or %s (replaces it)",
				rerun(cmd, map[string]string{"output": other}), rerun(cmd, map[string]string{"force": ""})), "%v", err)
		}
		return nil, failure("check --db", err)
	}
	return s, nil
}

// pathError is the usage error for a failed jobs.CheckPaths.
func pathError(cmd *cobra.Command, input, output string, dbGiven bool, err error) error {
	var same *jobs.SameFileError
	var missing *jobs.MissingDirError
	switch {
	case errors.As(err, &same) && same.What == "output":
		return usageErr(rerun(cmd, map[string]string{"output": defaultOutput(input)}), "-o: %v", err)
	case errors.As(err, &same):
		return usageErr(rerun(cmd, map[string]string{"db": output + ".clade.db"}), "--db: %v", err)
	case errors.As(err, &missing) && missing.What == "store" && dbGiven:
		return usageErr("mkdir -p "+shellQuote(missing.Dir)+", or give --db another path", "--db: %v", err)
	case errors.As(err, &missing):
		return usageErr("mkdir -p "+shellQuote(missing.Dir)+", or give -o another path", "-o: the results file %s cannot be created: directory %s does not exist", output, missing.Dir)
	}
	return usageErr("check -o and --db", "%v", err)
}

// runError maps the errors that run, batch and the hybrid mode share to an exit
// code and what to try. The hints repeat the user's command line (its -o, --db and
// every other flag given).
func runError(cmd *cobra.Command, input, output, db string, err error) error {
	var ae *upstream.APIError
	var noReq *jobs.NoRequestsError
	var outErr *jobs.OutputError
	switch {
	case errors.Is(err, jobs.ErrInputChanged):
		return usageErr(fmt.Sprintf("%s (drops its earlier results), or use another --db", rerun(cmd, map[string]string{"force": ""})),
			"%s changed since the store %s was made", input, redactDSN(db))
	case errors.As(err, new(*lifecycle.NoInputError)):
		return usageErr("give the input's path as the first host gave it (a run is named by its absolute path), start that host first, or copy the file here", "%v", err)
	case errors.As(err, &noReq):
		return usageErr(`give a JSONL file of requests, one {"custom_id": "...", "params": {...}} per line (see docs/run.md)`, "%v", err)
	case errors.As(err, &outErr):
		return failure(fmt.Sprintf("make room on the disk of %s (or give another -o), then run the same command again: every result is kept in the store %s and the file is written anew",
			outErr.Path, redactDSN(db)), err)
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return failure("the API refused the key: check ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL or --base-url), then run the same command again to resume", err)
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		return failure("the key is not allowed this call: check its workspace and permissions in the Console, then run the same command again to resume", err)
	case errors.As(err, &ae) && ae.Status == http.StatusPaymentRequired:
		return failure("the account cannot be billed: check its plan and credit in the Console, then run the same command again to resume", err)
	case errors.Is(err, jobs.ErrLeased):
		return failure("another clade process is working this run: wait for it, or stop it (its lease runs out 30 s after it dies)", err)
	case errors.Is(err, jobs.ErrBadLines):
		return usageErr("fix the lines listed above, or run without --strict to skip them", "%v", err)
	case errors.Is(err, runner.ErrLostStore):
		return failure("check that this host reaches the store (--db), then run the same command again to rejoin: the other hosts have taken its work", err)
	case errors.Is(err, runner.ErrStopped):
		return failure("raise --budget or the account's limit (or wait for it to reset), then run the same command again to resume", err)
	}
	return failure("run the same command again to resume; add --log-level debug for details", err)
}

// rerun is the command line the user gave (its arguments and the flags they set,
// passwords in URLs hidden), with set applied: each key is a flag's long name,
// replaced or added with its value ("" for a boolean flag turned on).
func rerun(cmd *cobra.Command, set map[string]string) string {
	parts := []string{cmd.CommandPath()}
	for _, a := range cmd.Flags().Args() {
		parts = append(parts, shellQuote(a))
	}
	flag := func(f *pflag.Flag, value string, isSet bool) {
		name := "--" + f.Name
		if f.Shorthand != "" {
			name = "-" + f.Shorthand
		}
		if f.Value.Type() == "bool" {
			if value == "true" || (isSet && value == "") {
				parts = append(parts, name)
			}
			return
		}
		parts = append(parts, name, shellQuote(redactDSN(value)))
	}
	done := map[string]bool{}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if v, ok := set[f.Name]; ok {
			flag(f, v, true)
		} else {
			flag(f, f.Value.String(), false)
		}
		done[f.Name] = true
	})
	for name, v := range set {
		if f := cmd.Flags().Lookup(name); f != nil && !done[name] {
			flag(f, v, true)
		}
	}
	return strings.Join(parts, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// withClose runs a command's body and then closes what it opened, reporting the
// close's error when the body had none.
func withClose(err error, closeFn func() error) error {
	if cerr := closeFn(); cerr != nil && err == nil {
		return failure("check the store's disk, then run the same command again: what was committed is kept", cerr)
	}
	return err
}

// openExistingStore opens the store at db for a command that reads one a run
// made (status, batch cancel, serve spend): a SQLite path that does not exist is
// a usage error naming try, not a new empty store.
func openExistingStore(cmd *cobra.Command, g *globalFlags, db, try string) (*jobs.Store, *slog.Logger, error) {
	if _, err := os.Stat(db); err != nil && !isURL(db) {
		return nil, nil, usageErr(try, "no store at %s", db)
	}
	log, err := g.logger(cmd, cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	st, err := jobs.Open(cmd.Context(), db, jobs.WithLogger(log))
	if err != nil {
		return nil, nil, failure("check --db", fmt.Errorf("open store %s: %w", redactDSN(db), err))
	}
	return st, log, nil
}
