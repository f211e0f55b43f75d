// Package cli is clade's command line: one cobra command per subcommand, each in its
// own file. It is the only package that picks a log handler, builds a Prometheus
// registry or turns an error into an exit code; everything else takes them as inputs.
//
// User errors are printed as two lines on stderr, "Error: what happened" and
// "Try: what to run", and exit with ExitUsage; failures after a good start exit with
// ExitFailure.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/clade-dev/clade/internal/suggest"
)

// Exit codes of the clade binary.
const (
	ExitOK             = 0 // success
	ExitFailure        = 1 // the command started but failed
	ExitUsage          = 2 // bad flags, arguments or configuration
	ExitFailedRequests = 3 // the command finished, but some requests failed
)

// Version is the clade version printed by --version. Release builds set it with
// -ldflags "-X github.com/clade-dev/clade/internal/cli.Version=v1.2.3"; otherwise the
// module version from the build info is used, or "dev".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// cliError is an error with the exit code it maps to and a hint on what to run next.
type cliError struct {
	code int
	err  error
	try  string
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

// usageErr is a user error (exit 2): a flag, argument or configuration is wrong.
func usageErr(try string, format string, args ...any) error {
	return &cliError{code: ExitUsage, err: fmt.Errorf(format, args...), try: try}
}

// failure is an error after a good start (exit 1).
func failure(try string, err error) error {
	return &cliError{code: ExitFailure, err: err, try: try}
}

// globalFlags are the flags every subcommand has.
type globalFlags struct {
	logFormat string
	logLevel  string
}

// Main is the clade binary: Run with a context that SIGINT or SIGTERM cancels (the
// first signal asks long-running commands to drain; `clade run` aborts on a second).
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, stdin, stdout, stderr)
}

// helpWidth is the width --help wraps flag descriptions at.
const helpWidth = 100

// Run runs the clade command line with args (without the program name) and returns
// the process exit code. It blocks until the command ends; cancelling ctx (SIGINT or
// SIGTERM in main) asks long-running commands to shut down gracefully.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if cmd == nil {
		cmd = root
	}
	var ce *cliError
	if !errors.As(err, &ce) {
		// cobra's own errors: unknown command, unexpected arguments.
		ce = &cliError{code: ExitUsage, err: err, try: cmd.CommandPath() + " --help"}
		if s := suggestCommand(cmd, err); s != "" {
			// cobra appends its own "Did you mean this?" paragraph: one Try line instead.
			first, _, _ := strings.Cut(err.Error(), "\n")
			ce.err, ce.try = errors.New(first), "did you mean "+s+"? ("+cmd.CommandPath()+" --help lists them)"
		}
	}
	msg := strings.TrimSpace(ce.err.Error())
	fmt.Fprintf(stderr, "Error: %s\n", msg)
	if ce.try != "" {
		fmt.Fprintf(stderr, "Try: %s\n", ce.try)
	}
	return ce.code
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "clade",
		Short: "Push large workloads through the Anthropic Claude API",
		Long: `clade pushes large workloads through the Anthropic Claude API as fast and as
cheaply as the account allows, without 429 storms, lost requests or surprise bills.`,
		Version:           version(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	// Flag help wraps at helpWidth columns (cobra's default template does not wrap).
	tpl := root.UsageTemplate()
	tpl = strings.ReplaceAll(tpl, ".LocalFlags.FlagUsages", fmt.Sprintf(".LocalFlags.FlagUsagesWrapped %d", helpWidth))
	tpl = strings.ReplaceAll(tpl, ".InheritedFlags.FlagUsages", fmt.Sprintf(".InheritedFlags.FlagUsagesWrapped %d", helpWidth))
	root.SetUsageTemplate(tpl)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("clade {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if s := suggestFlag(c, err); s != "" {
			return &cliError{code: ExitUsage, err: err, try: "did you mean " + s + "? (" + c.CommandPath() + " --help lists them)"}
		}
		return &cliError{code: ExitUsage, err: err, try: c.CommandPath() + " --help"}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	pf.StringVar(&g.logLevel, "log-level", "info", "least severe log level shown: debug, info, warn or error\n(debug adds one line per API request)")
	root.AddCommand(newEmulateCmd(g), newRunCmd(g), newStatusCmd(g), newDemoCmd(g), newBenchCmd(g), newPlanCmd(g), newBatchCmd(g), newServeCmd(g))
	oneParagraph(root)
	for _, c := range root.Commands() {
		groupOnly(c)
	}
	return root
}

// groupOnly makes each command that only groups subcommands (clade bench) refuse
// an unknown one as the root does, "did you mean" included: cobra shows such a
// command's help, exit 0, for `clade bench gatewy`.
func groupOnly(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.SuggestionsMinimumDistance = 2 // the root's default
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		}
	}
	for _, sub := range c.Commands() {
		groupOnly(sub)
	}
}

// oneParagraph joins the lines of every flag's description, so that --help
// wraps each as one paragraph at helpWidth.
func oneParagraph(c *cobra.Command) {
	for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) { f.Usage = strings.ReplaceAll(f.Usage, "\n", " ") })
	}
	for _, sub := range c.Commands() {
		oneParagraph(sub)
	}
}

// logger builds the logger the flags ask for, writing to w.
func (g *globalFlags) logger(cmd *cobra.Command, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageErr(cmd.CommandPath()+" --log-level info", "--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	if q := cmd.Flags().Lookup("quiet"); q != nil && q.Value.String() == "true" && !cmd.Flags().Changed("log-level") {
		level = max(level, slog.LevelWarn) // -q: warnings and errors only, unless --log-level says
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usageErr(cmd.CommandPath()+" --log-format json", "--log-format %q: want text or json", g.logFormat)
	}
}

// suggestCommand returns the command line of the subcommand of c closest to the
// unknown one err names (`unknown command "bach" for "clade"`), or "".
func suggestCommand(c *cobra.Command, err error) string {
	rest, ok := strings.CutPrefix(err.Error(), `unknown command "`)
	if !ok {
		return ""
	}
	typed, _, _ := strings.Cut(rest, `"`)
	if s := c.SuggestionsFor(typed); len(s) > 0 {
		return c.CommandPath() + " " + s[0]
	}
	return ""
}

// suggestFlag returns the flag of c closest to the unknown one err names
// ("unknown flag: --conurrency"), within two edits, or "".
func suggestFlag(c *cobra.Command, err error) string {
	msg := err.Error()
	i := strings.Index(msg, "unknown flag: --")
	if i < 0 {
		return ""
	}
	typed := strings.Fields(msg[i+len("unknown flag: --"):])
	if len(typed) == 0 {
		return ""
	}
	var names []string
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	if best := suggest.Closest(typed[0], names, 2); best != "" {
		return "--" + best
	}
	return ""
}
