package cli

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
)

// defaultOrganizationID is the anthropic-organization-id the emulator sends unless told.
const defaultOrganizationID = "00000000-0000-4000-8000-00000000c1ad"

// emulateFlags holds one flag per emulator.Config field.
type emulateFlags struct {
	addr            string
	tier            string
	catalogPath     string
	apiKeys         []string
	seed            int64
	latencyScale    float64
	clockSpeed      float64
	batchRate       float64
	batchRetention  time.Duration
	batchErrorRate  float64
	batchCacheGroup int
	redactedRate    float64
	legacyOTPM      bool
	burstFraction   float64
	outputMedian    float64
	outputSigma     float64
	faults          string
	baseURL         string
	organizationID  string
}

func newEmulateCmd(g *globalFlags) *cobra.Command {
	f := &emulateFlags{}
	cmd := &cobra.Command{
		Use:   "emulate",
		Short: "Serve a local emulation of the Anthropic API",
		Long: `Serve a faithful local emulation of the Anthropic API: Messages (JSON and SSE),
count_tokens, Message Batches and Models, with the rate limits of a tier, a latency
model, prompt caching and injected faults. No key and no network needed.

Point any client at it with ANTHROPIC_BASE_URL=http://ADDR and any ANTHROPIC_API_KEY.
Metrics are served at /metrics; /_emulator/faults, /_emulator/clock and
/_emulator/health control and probe it. See docs/emulator.md.`,
		Example: `  clade emulate
  clade emulate --tier tier-1 --latency-scale 0 --addr 127.0.0.1:0
  clade emulate --faults overloaded=0.05,stream_error=0.02 --seed 7
  clade emulate --clock-speed 1440 --batch-rate 50   # a batch day in a minute`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEmulate(cmd, g, f)
		},
	}
	tiers := strings.Join(catalog.Default().TierNames(), ", ")
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8080", "`HOST:PORT` to listen on; port 0 picks a free port. Loopback only unless you\nname another address (0.0.0.0:8080 accepts other machines)")
	fl.StringVar(&f.tier, "tier", "start", "account tier whose rate limits apply; from the catalog:\n"+tiers)
	fl.StringVar(&f.catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog of models, classes, tiers and prices\n(default: the embedded catalog)")
	fl.StringArrayVar(&f.apiKeys, "api-key", nil, "accept only this `KEY` (repeatable); default: any non-empty key")
	fl.Int64Var(&f.seed, "seed", 0, "seed for generated outputs and fault draws: the same seed and request body give\nthe same response (default 0)")
	fl.Float64Var(&f.latencyScale, "latency-scale", 1, "multiplier on the per-class latency model (time to first token, output tokens\nper second); 0 turns latency off")
	fl.Float64Var(&f.clockSpeed, "clock-speed", 1, "batch clock speed, in emulator seconds per real second (1440: a day in a minute);\nrate limits stay in real time")
	fl.Float64Var(&f.batchRate, "batch-rate", 1000, "batch requests finished per second of batch clock, across all batches")
	fl.DurationVar(&f.batchRetention, "batch-retention", 29*24*time.Hour, "how long after its creation a batch's results can be downloaded (batch clock);\nthe API's is 29 days")
	fl.IntVar(&f.batchCacheGroup, "batch-cache-group", emulator.DefaultBatchCacheGroup, "batch prompt caching is best effort: a batch's requests are looked up in groups of `N`\nprocessed together, a write read only from the next group on (1: after a prefix's first line)")
	fl.Float64Var(&f.batchErrorRate, "batch-error-rate", 0, "fraction (0 to 1) of valid batch requests that end errored with a retryable\napi_error or overloaded_error (default 0)")
	fl.Float64Var(&f.redactedRate, "redacted-thinking-rate", 0, "fraction (0 to 1) of thinking blocks returned as redacted_thinking (default 0)")
	fl.BoolVar(&f.legacyOTPM, "legacy-otpm", false, "reserve max_tokens against output tokens per minute at admission (the pre-2026\nrule) instead of counting only generated tokens (default off)")
	fl.Var(fractionValue{&f.burstFraction}, "burst-fraction", "rate-limit bucket capacity as a fraction of one minute's limit, in (0, 1];\n1/60 enforces per-second limits")
	f.burstFraction = 1
	fl.Lookup("burst-fraction").DefValue = "1"
	fl.Float64Var(&f.outputMedian, "output-median", 120, "median generated output length, in tokens (log-normal, cut at max_tokens)")
	fl.Float64Var(&f.outputSigma, "output-sigma", 0.5, "log-normal spread of output lengths; 0 gives exactly the median")
	fl.StringVar(&f.faults, "faults", "", "`SPEC` of faults to inject from the start, e.g. overloaded=0.05,burst=30s/5s,stream_error=0.02\n(default: none; grammar in docs/emulator.md, change live with PUT /_emulator/faults)")
	fl.StringVar(&f.baseURL, "base-url", "", "absolute `URL` that starts results_url in batch objects, e.g. https://emu.example\n(default: from the request's Host header)")
	fl.StringVar(&f.organizationID, "organization-id", defaultOrganizationID, "`UUID` sent in anthropic-organization-id and named in 429 messages")
	return cmd
}

// config validates the flags and builds the emulator configuration. Every error is a
// usage error with a hint.
func (f *emulateFlags) config(cmd *cobra.Command) (emulator.Config, error) {
	help := cmd.CommandPath() + " --help"
	var cfg emulator.Config
	if _, port, err := net.SplitHostPort(f.addr); err != nil {
		return cfg, usageErr(cmd.CommandPath()+" --addr 127.0.0.1:8080", "--addr %q: want HOST:PORT", f.addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return cfg, usageErr(cmd.CommandPath()+" --addr 127.0.0.1:0", "--addr %q: port must be a number from 0 to 65535", f.addr)
	}
	cat, err := catalog.Load(f.catalogPath)
	if err != nil {
		return cfg, usageErr(cmd.CommandPath()+" (without --catalog, to use the embedded catalog)", "%v", err)
	}
	if _, err := cat.Tier(f.tier); err != nil {
		return cfg, usageErr(cmd.CommandPath()+" --tier start", "--tier: %v", err)
	}
	for _, k := range f.apiKeys {
		if strings.TrimSpace(k) == "" {
			return cfg, usageErr(cmd.CommandPath()+" --api-key sk-test", "--api-key: a key cannot be empty")
		}
	}
	checks := []struct {
		name string
		ok   bool
		want string
	}{
		{"--latency-scale", f.latencyScale >= 0 && !math.IsInf(f.latencyScale, 0), "0 or more"},
		{"--clock-speed", f.clockSpeed > 0 && !math.IsInf(f.clockSpeed, 0), "more than 0"},
		{"--batch-rate", f.batchRate > 0 && !math.IsInf(f.batchRate, 0), "more than 0"},
		{"--batch-retention", f.batchRetention > 0, "more than 0"},
		{"--batch-cache-group", f.batchCacheGroup >= 1, "1 or more"},
		{"--batch-error-rate", f.batchErrorRate >= 0 && f.batchErrorRate <= 1, "from 0 to 1"},
		{"--redacted-thinking-rate", f.redactedRate >= 0 && f.redactedRate <= 1, "from 0 to 1"},
		{"--burst-fraction", f.burstFraction > 0 && f.burstFraction <= 1, "more than 0 and at most 1"},
		{"--output-median", f.outputMedian >= 1 && !math.IsInf(f.outputMedian, 0), "at least 1 token"},
		{"--output-sigma", f.outputSigma >= 0 && f.outputSigma <= 5, "from 0 to 5"},
	}
	for _, c := range checks {
		if !c.ok {
			v := cmd.Flags().Lookup(strings.TrimPrefix(c.name, "--")).Value.String()
			return cfg, usageErr(help, "%s %s: want %s", c.name, v, c.want)
		}
	}
	faults, err := emulator.ParseFaults(f.faults)
	if err != nil {
		return cfg, usageErr(cmd.CommandPath()+" --faults overloaded=0.05 (grammar: docs/emulator.md#faults)", "--faults: %v", err)
	}
	if f.baseURL != "" {
		u, err := url.Parse(f.baseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, usageErr(cmd.CommandPath()+" --base-url http://127.0.0.1:8080", "--base-url %q: want an absolute http or https URL", f.baseURL)
		}
	}
	if strings.TrimSpace(f.organizationID) == "" {
		return cfg, usageErr(help, "--organization-id: cannot be empty")
	}
	cfg = emulator.Config{
		Catalog:              cat,
		Tier:                 f.tier,
		APIKeys:              f.apiKeys,
		Seed:                 f.seed,
		LatencyScale:         f.latencyScale,
		ClockSpeed:           f.clockSpeed,
		BatchProcessingRate:  f.batchRate,
		BatchRetention:       f.batchRetention,
		LegacyOTPM:           f.legacyOTPM,
		BurstFraction:        f.burstFraction,
		BatchItemErrorRate:   f.batchErrorRate,
		BatchCacheGroup:      f.batchCacheGroup,
		RedactedThinkingRate: f.redactedRate,
		BaseURL:              strings.TrimSuffix(f.baseURL, "/"),
		Output:               emulator.OutputModel{MedianTokens: f.outputMedian, Sigma: f.outputSigma},
		Faults:               faults,
		OrganizationID:       f.organizationID,
	}
	return cfg, nil
}

func runEmulate(cmd *cobra.Command, g *globalFlags, f *emulateFlags) error {
	cfg, err := f.config(cmd)
	if err != nil {
		return err
	}
	log, err := g.logger(cmd, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Logger = log
	cfg.Registry = reg
	srv, err := emulator.New(cfg)
	if err != nil {
		return usageErr(cmd.CommandPath()+" --help", "%v", err)
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return failure(cmd.CommandPath()+" --addr 127.0.0.1:0 (any free port)", fmt.Errorf("listen on %s: %w", f.addr, err))
	}
	base := clientURL(ln.Addr())
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("listening beyond loopback: anyone who can reach this port can use the emulator", "addr", ln.Addr().String())
	}
	printBanner(cmd.OutOrStdout(), base, cfg, len(f.apiKeys) > 0)
	log.Info("emulator listening", "addr", ln.Addr().String(), "tier", cfg.Tier)
	if err := srv.Serve(cmd.Context(), ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return failure("check the log above, then run it again", fmt.Errorf("serve: %w", err))
	}
	log.Info("emulator stopped")
	return nil
}

// clientURL is the base URL a client on this machine should use: an unspecified
// listen address (0.0.0.0, ::) is reached through loopback.
func clientURL(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String()
	}
	ip := tcp.IP
	if ip.IsUnspecified() {
		if ip.To4() != nil {
			ip = net.IPv4(127, 0, 0, 1)
		} else {
			ip = net.IPv6loopback
		}
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}

func printBanner(w io.Writer, base string, cfg emulator.Config, keysSet bool) {
	key := "anything"
	if keysSet {
		key = "<one of your --api-key values>"
	}
	fmt.Fprintf(w, "clade emulate: Anthropic API emulator on %s (tier %s)\n\n", base, cfg.Tier)
	fmt.Fprintf(w, "Point a client at it:\n")
	fmt.Fprintf(w, "  export ANTHROPIC_BASE_URL=%s\n", base)
	fmt.Fprintf(w, "  export ANTHROPIC_API_KEY=%s\n\n", key)
	fmt.Fprintf(w, "Metrics: %s/metrics   Faults: %s/_emulator/faults   Ctrl-C stops it.\n", base, base)
}

// fractionValue is a float flag that also accepts a fraction such as 1/60.
type fractionValue struct{ p *float64 }

func (v fractionValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v fractionValue) Set(s string) error {
	s = strings.TrimSpace(s)
	if num, den, ok := strings.Cut(s, "/"); ok {
		n, err1 := strconv.ParseFloat(strings.TrimSpace(num), 64)
		d, err2 := strconv.ParseFloat(strings.TrimSpace(den), 64)
		if err1 != nil || err2 != nil || d == 0 {
			return fmt.Errorf("want a number such as 0.5 or a fraction such as 1/60")
		}
		*v.p = n / d
		return nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("want a number such as 0.5 or a fraction such as 1/60")
	}
	*v.p = x
	return nil
}

func (v fractionValue) Type() string { return "fraction" }
