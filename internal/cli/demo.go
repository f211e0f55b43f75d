package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newDemoCmd(g *globalFlags) *cobra.Command {
	var n int
	var tier, dir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a demo workload end to end (on the emulator unless ANTHROPIC_API_KEY is set)",
		Long: `Write a demo workload of short prompts and run it with clade run.

Without ANTHROPIC_API_KEY it runs on an in-process emulator of the Anthropic API at
--tier, with its latency model and rate limits: no key, no network, no cost. With the
key set it runs against the real API on claude-haiku-4-5 with small max_tokens (the
default 20 requests cost well under one cent).`,
		Example: `  clade demo
  clade demo --requests 5000 --tier tier-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			live := os.Getenv("ANTHROPIC_API_KEY") != ""
			if !cmd.Flags().Changed("requests") && live {
				n = 20
			}
			if n <= 0 {
				return usageErr("clade demo --requests 500", "--requests %d: must be positive", n)
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "clade-demo-")
				if err != nil {
					return failure("clade demo --dir PATH", err)
				}
				dir = d
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return failure("clade demo --dir PATH", err)
			}
			input := filepath.Join(dir, "demo.jsonl")
			if err := writeDemo(input, n); err != nil {
				return failure("clade demo --dir PATH", err)
			}
			f := &runFlags{}
			addRunFlags(pflag.NewFlagSet("run", pflag.ContinueOnError), f) // clade run's defaults
			f.output = filepath.Join(dir, "demo.results.jsonl")
			where := "the real API (ANTHROPIC_API_KEY is set)"
			if !live {
				f.emulate = tier
				f.tier = tier
				where = "the built-in emulator at " + tier
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "demo: %d requests from %s on %s\n", n, input, where)
			if err := runRun(cmd, g, f, input); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), `next:
  head -c 600 %[1]s     # a result line: the Message, as the Batches API writes it
  clade status %[1]s    # counts, pace, cost, errors by type
  clade plan %[2]s      # time and cost on each tier, model and mode
  clade run YOUR.jsonl -o results.jsonl  (one {"custom_id","params"} per line: docs/run.md)
`, shellQuote(f.output), shellQuote(input))
			return nil
		},
	}
	cmd.Flags().IntVar(&n, "requests", 2000, "how many requests the demo workload has (20 against the real API)")
	cmd.Flags().StringVar(&tier, "tier", "tier-2", "the emulator's tier (without ANTHROPIC_API_KEY)")
	cmd.Flags().StringVar(&dir, "dir", "", "where to write the workload, results and store (default: a new temporary directory)")
	return cmd
}

var demoTopics = []string{
	"the water cycle", "binary search", "photosynthesis", "the French revolution", "TCP handshakes",
	"compound interest", "plate tectonics", "garbage collection", "the immune system", "supply and demand",
}

func writeDemo(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		topic := demoTopics[i%len(demoTopics)]
		fmt.Fprintf(w, `{"custom_id":"demo-%06d","params":{"model":"claude-haiku-4-5","max_tokens":128,"messages":[{"role":"user","content":"In two sentences, explain %s (variant %d)."}]}}`+"\n", i, topic, i)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
