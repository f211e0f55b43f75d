package cli

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/bench"
	"github.com/clade-dev/clade/internal/serve"
)

func newBenchCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure clade end to end against the built-in emulator",
	}
	cmd.AddCommand(newBenchUtilizationCmd(g), newBenchAdmitCmd(g), newBenchGatewayCmd(g), newBenchCacheCmd(g))
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
		Short: "Binding-limit utilization of clade run against a fixed-concurrency client",
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

func newBenchAdmitCmd(g *globalFlags) *cobra.Command {
	var shapes []string
	var tier, model, catalogPath string
	var warmup, window time.Duration
	var goroutines, sem int
	cmd := &cobra.Command{
		Use:   "admit",
		Short: "Binding-limit utilization of the admit SDK middleware against a semaphore and none",
		Long: `For each workload shape, three clients of the official Go SDK v2 call Messages in a
loop from the same number of goroutines (64; 256 for otpm, which 64 cannot fill),
at the same time, each against its own in-process emulator (latency on):
admit (option.WithMiddleware(lim.Middleware), admit.New(admit.Config{Tier})), a
semaphore of --semaphore around each call (p-limit(10)), and none; all with the
SDK's default retries. After --warmup (which spends the emulator's initial
one-minute burst), the emulator counts over --window what it served per minute of
each limit ÷ the limit, and the share of requests it answered 429. Shapes: rpm
(short prompts, ~8 output tokens), otpm (~1,000 output tokens), stream (rpm with
NewStreaming). A run takes about the number of shapes × (warm-up + window).`,
		Example: `  clade bench admit
  clade bench admit --shape rpm --warmup 5s --window 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := catalog.Load(catalogPath)
			if err != nil {
				return usageErr("clade bench admit --catalog PATH", "%v", err)
			}
			cfg := bench.AdmitConfig{Catalog: cat, Tier: tier, Model: model, Goroutines: goroutines,
				Semaphore: sem, Warmup: warmup, Window: window}
			for _, s := range shapes {
				i := slices.IndexFunc(bench.AdmitShapes, func(sh bench.AdmitShape) bool { return sh.Name == s })
				if i < 0 {
					return usageErr("clade bench admit --shape rpm", "--shape %q: want rpm, otpm or stream", s)
				}
				cfg.Shapes = append(cfg.Shapes, bench.AdmitShapes[i])
			}
			if _, err := cat.Tier(tier); err != nil {
				return usageErr("clade bench admit --tier tier-4", "--tier: %v", err)
			}
			if _, err := cat.Resolve(model); err != nil {
				return usageErr("clade bench admit --model claude-haiku-4-5", "--model: %v", err)
			}
			if window <= 0 || warmup < 0 || goroutines < 0 || sem < 1 {
				return usageErr("clade bench admit --warmup 75s --window 60s", "--window must be positive, --warmup and --goroutines not negative, --semaphore at least 1")
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "running %d shapes, 3 clients at once, %s each …\n", len(cfg.Shapes), warmup+window)
			rep, err := bench.RunAdmit(cmd.Context(), cfg)
			if err != nil {
				return failure("", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "| shape | client | binding | utilization | ÷ semaphore | ÷ none | RPM | ITPM | OTPM | requests | 429s | SDK calls | gave up | conns | bucket | warm-up 429s |\n")
			fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			for _, s := range rep.Shapes {
				base := map[string]float64{}
				for _, c := range s.Clients {
					base[c.Client] = c.Utilization(s.Shape.Binding)
				}
				for _, c := range s.Clients {
					u := c.Utilization(s.Shape.Binding)
					client := c.Client
					if client == bench.ClientSemaphore {
						client = fmt.Sprintf("semaphore(%d)", rep.Config.Semaphore)
					}
					fmt.Fprintf(w, "| %s ×%d | %s | %s | **%.3f** | %s | %s | %.3f | %.3f | %.3f | %d | %d (%.2f%%) | %d | %d | %d | %.2f→%.2f | %d of %d |\n",
						s.Shape.Name, s.Goroutines, client, strings.ToUpper(s.Shape.Binding), u, ratio(u, base[bench.ClientSemaphore]), ratio(u, base[bench.ClientNone]),
						c.RPM, c.ITPM, c.OTPM, c.Requests, c.RateLimited, 100*c.RateLimitedShare(), c.Calls, c.GaveUp, c.Conns, c.BucketStart, c.BucketEnd,
						c.WarmupRateLimited, c.WarmupRequests)
				}
			}
			fmt.Fprintf(w, "\n| shape | process CPU over the window (cores of %d) | machine busy |\n|---|---|---|\n", runtime.NumCPU())
			for _, s := range rep.Shapes {
				fmt.Fprintf(w, "| %s | %.2f | %.0f%% |\n", s.Shape.Name, s.CPU, 100*s.MachineBusy)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&shapes, "shape", []string{"rpm", "otpm", "stream"}, "workload shapes: rpm, otpm, stream")
	fl.StringVar(&tier, "tier", "tier-4", "tier of the emulator and of the middleware")
	fl.StringVar(&model, "model", "claude-haiku-4-5", "model of every call")
	fl.StringVar(&catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog")
	fl.DurationVar(&warmup, "warmup", 75*time.Second, "time before the window (spends the initial burst)")
	fl.DurationVar(&window, "window", time.Minute, "measured time")
	fl.IntVar(&goroutines, "goroutines", 0, "goroutines per client (0: each shape's own, 64 or 256)")
	fl.IntVar(&sem, "semaphore", 10, "the semaphore client's concurrency")
	return cmd
}

// ratio is a ÷ b, or "—" when b is 0.
func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func newBenchGatewayCmd(g *globalFlags) *cobra.Command {
	var cfg bench.GatewayConfig
	var catalogPath, cpuProfile string
	var gcFloorMiB int64
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "The gateway's added latency at fixed rates, against direct calls and a bare proxy",
		Long: `Start, in this process, an emulator (tier unlimited, latency off), a bare
httputil.ReverseProxy in front of it and clade serve's gateway in front of it (a team
budget and a key budget on a SQLite spend store, limits shared through --limits-redis),
each on a loopback port. Then, for each --rate, mode (JSON, SSE) and target in turn,
offer --warmup (not counted) then --duration of open-loop load: requests due at fixed
intervals whatever the answers, latency counted from when each was due, so that
falling behind shows. With --search, step the rate up and bisect for the gateway's
maximum sustainable rate (every call 200, achieved ≥ 99 % of offered, p99 under
--max-p99). The load generator, emulator, proxy and gateway share this machine's
cores, as a user measuring on one machine would. The process runs with clade serve's
garbage collector floor (--gc-floor), so every target does. Each point also reports the
CPU time per call of the process and of Redis, and the share of CPU time the hypervisor
stole over it (/proc/stat), which on a shared virtual machine moves the tail most.`,
		Example: `  clade bench gateway
  clade bench gateway --rate 1000,2000 --duration 10s --mode sse --search=false`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := catalog.Load(catalogPath)
			if err != nil {
				return usageErr("clade bench gateway --catalog PATH", "%v", err)
			}
			cfg.Catalog = cat
			switch {
			case gcFloorMiB < 0:
				return usageErr("clade bench gateway --gc-floor 64", "--gc-floor must be 0 or more MiB")
			case gcFloorMiB == 0:
				cfg.GCFloor = -1 // Go's default
			default:
				cfg.GCFloor = gcFloorMiB << 20
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return usageErr("clade bench gateway --cpuprofile cpu.out", "--cpuprofile: %v", err)
				}
				defer stop()
			}
			stderr := cmd.ErrOrStderr()
			cfg.Progress = func(p bench.GatewayPoint) {
				fmt.Fprintln(stderr, p)
			}
			rep, err := bench.RunGateway(cmd.Context(), cfg)
			if err != nil {
				if strings.Contains(err.Error(), "redis") {
					return failure("check that Redis is up at --limits-redis, or run with --limits-redis '' (limits in memory)", err)
				}
				return failure("", err)
			}
			rep.WriteMarkdown(cmd.OutOrStdout())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Float64SliceVar(&cfg.Rates, "rate", bench.DefaultGatewayRates, "offered rates, requests per second")
	fl.DurationVar(&cfg.Duration, "duration", bench.DefaultGatewayDuration, "measured time per rate, mode and target")
	fl.DurationVar(&cfg.Warmup, "warmup", bench.DefaultGatewayWarmup, "load at the same rate before each measurement, not counted")
	fl.StringSliceVar(&cfg.Modes, "mode", []string{bench.ModeJSON, bench.ModeSSE}, "json, sse")
	fl.StringSliceVar(&cfg.Targets, "target", []string{bench.TargetDirect, bench.TargetProxy, bench.TargetGateway}, "direct, proxy, gateway")
	fl.StringVar(&cfg.RedisURL, "limits-redis", "redis://127.0.0.1:6379/0", "share the gateway's limits through the Redis at `URL` (a namespace of the run's own); '' keeps them in memory")
	fl.StringVar(&cfg.DB, "db", "", "the gateway's spend store (a SQLite `PATH` or a postgres:// URL; default: a temporary SQLite file)")
	fl.BoolVar(&cfg.Search, "search", true, "search for the gateway's maximum sustainable rate after the fixed rates")
	fl.DurationVar(&cfg.SearchDuration, "search-duration", bench.DefaultGatewaySearchDuration, "measured time per step of the search")
	fl.DurationVar(&cfg.MaxP99, "max-p99", bench.DefaultGatewayMaxP99, "the p99 a sustainable rate stays under")
	fl.StringVar(&catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog")
	fl.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (all parts are in this process) to `FILE`")
	fl.Int64Var(&gcFloorMiB, "gc-floor", serve.DefaultGCFloor>>20, "`MiB`: the garbage collector floor of the process, as clade serve --gc-floor (0: Go's default)")
	return cmd
}

// startCPUProfile writes a CPU profile to path until the returned stop.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
