package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/gcfloor"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/serve"
)

type serveFlags struct {
	listen          string
	tier            string
	catalogPath     string
	clientKeys      string
	limitsRedis     string
	limitsNamespace string
	baseURL         string
	emulate         string
	maxWait         time.Duration
	maxAttempts     int
	concurrency     int
	shutdownTimeout time.Duration
	db              string
	accessLog       string
	gcFloorMiB      int64
}

// defaultServeDB is the spend store of clade serve when the client keys set
// budgets and --db is not given: a SQLite file in the working directory.
const defaultServeDB = "clade-serve.db"

func newServeCmd(g *globalFlags) *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run an Anthropic-compatible gateway: many clients within the organisation's limits",
		Long: `Serve the Anthropic Messages API on --listen for the applications of one
organisation: point their SDKs at it (ANTHROPIC_BASE_URL=http://HOST:PORT) with a
client key of theirs as ANTHROPIC_API_KEY. The gateway holds the real key
(ANTHROPIC_API_KEY in its own environment), admits every Messages call against the
organisation's rate limits, and makes calls wait in a queue instead of failing
with 429; teams share the limits in proportion to their weights.

Client keys: --client-keys FILE maps each client key to a team (see docs/serve.md);
an unknown key gets a 401 authentication_error. Without the file any client key is
accepted, all as one team; then the gateway only listens on loopback.

Budgets: the client-keys file may give teams and keys USD budgets per day, week
and month (UTC); a call that would exceed one gets a 402 billing_error. What was
spent is kept in --db (default ./clade-serve.db; a postgres:// URL lets several
gateways share it); clade serve spend --db prints it.

Several gateways (and clade run) share one organisation's budget through Redis:
give them the same --limits-redis and --limits-namespace.

Live view: /metrics (Prometheus), /_clade/status (JSON) and / (a page) on the same
listener. The first Ctrl-C stops accepting calls and lets those in flight finish;
the second, or --shutdown-timeout, cuts them off.`,
		Example: `  clade serve --tier tier-2                                   # on 127.0.0.1:8080
  clade serve --emulate tier-1                                # no key, no network
  clade serve --listen 0.0.0.0:8080 --client-keys keys.yaml --limits-redis redis://redis:6379/0
  ANTHROPIC_BASE_URL=http://127.0.0.1:8080 ANTHROPIC_API_KEY=my-client-key python app.py`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "serve on `HOST:PORT` (loopback by default; 0.0.0.0:8080 for every interface)")
	fl.StringVar(&f.tier, "tier", "auto", "limits to pace by: a catalog tier ("+strings.Join(catalog.Default().TierNames(), ", ")+")\nor auto (start cautious, adopt the limits the response headers report)")
	fl.StringVar(&f.catalogPath, "catalog", "", "YAML `PATH` laid over the embedded catalog of models, tiers and prices")
	fl.StringVar(&f.clientKeys, "client-keys", "", "YAML `FILE` mapping client keys to teams and weights (default: any key, one team)")
	fl.StringVar(&f.limitsRedis, "limits-redis", "", "share the rate limits through the Redis at `URL` (redis://[:PASSWORD@]HOST:6379/0) with\nevery gateway and clade run given the same URL and --limits-namespace")
	fl.StringVar(&f.limitsNamespace, "limits-namespace", "default", "with --limits-redis: the organisation's `NAME` in Redis")
	fl.StringVar(&f.baseURL, "base-url", "", "upstream API base `URL` (default: ANTHROPIC_BASE_URL, else https://api.anthropic.com)")
	fl.StringVar(&f.emulate, "emulate", "", "send calls to an in-process emulator at this `TIER` (no key or network needed)")
	fl.DurationVar(&f.maxWait, "max-wait", serve.DefaultMaxWait, "longest a call waits for the limits before its client gets a 429")
	fl.IntVar(&f.maxAttempts, "max-attempts", serve.DefaultMaxAttempts, "upstream attempts of a call the API refuses with 429 or 529 (1: pass them on)")
	fl.IntVar(&f.concurrency, "concurrency", 256, "most admitted Messages calls (of models in the catalog) in flight upstream at once")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 2*time.Minute, "after Ctrl-C, how long calls in flight may take to finish")
	fl.StringVar(&f.db, "db", "", "spend store for the budgets of --client-keys: a SQLite `PATH` or a postgres:// URL\n(shared by gateways on one Postgres; default "+defaultServeDB+" when the keys set budgets)")
	fl.StringVar(&f.accessLog, "access-log", "", "append one JSON line per API call to `FILE` (- for stderr): team, key label, model, status,\nqueue wait, tokens, cost, request-id, duration; never a key (--log-level debug logs the same)")
	fl.Int64Var(&f.gcFloorMiB, "gc-floor", serve.DefaultGCFloor>>20, "`MiB` of heap the Go garbage collector lets grow to before it runs: fewer\ncollections, a shorter latency tail, up to this much more memory (0: Go's default;\nignored when GOGC or GOMEMLIMIT is set)")
	cmd.AddCommand(newServeSpendCmd(g))
	return cmd
}

func runServe(cmd *cobra.Command, g *globalFlags, f *serveFlags) error {
	stderr := cmd.ErrOrStderr()
	log, err := g.logger(cmd, stderr)
	if err != nil {
		return err
	}
	cat, err := catalog.Load(f.catalogPath)
	if err != nil {
		return usageErr("clade serve --catalog PATH (see docs/catalog.md)", "%v", err)
	}
	if f.emulate != "" && f.tier == "auto" {
		f.tier = f.emulate
	}
	if f.tier != "auto" {
		if _, err := cat.Tier(f.tier); err != nil {
			return usageErr("clade serve --tier auto", "--tier: %v", err)
		}
	}
	if f.maxWait <= 0 || f.maxAttempts < 1 || f.concurrency < 1 {
		return usageErr("clade serve --max-wait 10m --max-attempts 4 --concurrency 256",
			"--max-wait must be positive, --max-attempts and --concurrency at least 1")
	}
	var keys *serve.Keys
	if f.clientKeys != "" {
		if keys, err = serve.LoadKeys(f.clientKeys); err != nil {
			return usageErr("clade serve --client-keys keys.yaml (see docs/serve.md)", "%v", err)
		}
	} else if !loopback(f.listen) {
		return usageErr("clade serve --listen "+f.listen+" --client-keys keys.yaml, or --listen 127.0.0.1:8080",
			"--listen %s reaches beyond this machine: without --client-keys anyone who can connect would use the organisation's key", f.listen)
	}
	if f.emulate == "" && pointsAt(upstreamBase(f.baseURL), f.listen) {
		return usageErr("clade serve --base-url https://api.anthropic.com (clients, not the gateway, take ANTHROPIC_BASE_URL=http://"+f.listen+")",
			"the upstream API (--base-url or ANTHROPIC_BASE_URL) is the gateway's own --listen %s: calls would loop", f.listen)
	}
	if f.gcFloorMiB < 0 {
		return usageErr("clade serve --gc-floor 64", "--gc-floor must be 0 or more MiB")
	}
	if ok, release := gcfloor.Set(f.gcFloorMiB << 20); ok {
		defer release()
		log.Debug("garbage collector floor", "mib", f.gcFloorMiB)
	}
	ctx := cmd.Context()
	client, closeEmu, err := upstreamClient(ctx, f.baseURL, f.emulate, cat, log)
	if err != nil {
		return err
	}
	defer closeEmu()
	var lim *admit.Limiter
	var order *serve.SharedOrder // one fair order with the gateways on the same Redis
	if f.limitsRedis != "" {
		l, closeLim, err := sharedLimiter(ctx, "clade serve", f.limitsRedis, f.limitsNamespace, true, cat, f.tier, f.concurrency, log)
		if err != nil {
			return err
		}
		defer closeLim()
		lim = l
		o, closeOrder, err := sharedOrder(f.limitsRedis, f.limitsNamespace, log)
		if err != nil {
			return err
		}
		defer closeOrder()
		order = o
	} else if lim, err = admit.New(admit.Config{Catalog: cat, Tier: f.tier, MaxConcurrency: f.concurrency, Logger: log}); err != nil {
		return failure("", fmt.Errorf("limiter: %w", err))
	}
	var store *jobs.Store
	if keys.HasBudgets() || f.db != "" {
		db := f.db
		if db == "" {
			db = defaultServeDB
		}
		if store, err = jobs.Open(ctx, db, jobs.WithLogger(log)); err != nil {
			return failure("clade serve --db PATH (a SQLite file or a postgres:// URL)", fmt.Errorf("spend store: %w", err))
		}
		defer store.Close()
	}
	access, closeAccess, err := openAccessLog(f.accessLog, stderr)
	if err != nil {
		return err
	}
	defer closeAccess()
	reg := prometheus.NewRegistry()
	gw, err := serve.New(serve.Config{Upstream: client, Limiter: lim, Keys: keys, MaxWait: f.maxWait,
		MaxAttempts: f.maxAttempts, Registry: reg, Logger: log, AccessLog: access, Spend: store, Catalog: cat, Order: order})
	if err != nil {
		return failure("", err)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return usageErr("clade serve --listen 127.0.0.1:8081", "--listen: %v", err)
	}
	teams := "any client key (one team)"
	if keys != nil {
		teams = fmt.Sprintf("%d teams from %s", len(keys.Teams()), f.clientKeys)
	}
	addr := ln.Addr().String()
	fmt.Fprintf(stderr, "clade serve on http://%s (tier %s; %s)\n", addr, f.tier, teams)
	fmt.Fprintf(stderr, "point clients at it: ANTHROPIC_BASE_URL=http://%s\n", addr)
	fmt.Fprintf(stderr, "live view: http://%s/  status: /_clade/status  metrics: /metrics\n", addr)
	err = gw.Run(ctx, ln, serve.RunOptions{
		ShutdownTimeout: f.shutdownTimeout,
		Abort:           secondSignal(ctx),
		OnShutdown: func() {
			fmt.Fprintln(stderr, "shutting down: no new calls; waiting for calls in flight (Ctrl-C again to cut them off)")
		},
	})
	if err != nil {
		return failure("", err)
	}
	fmt.Fprintln(stderr, "stopped")
	return nil
}

// upstreamBase is the base URL upstreamClient will use.
func upstreamBase(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv("ANTHROPIC_BASE_URL")
}

// pointsAt reports whether base (a URL) names the address listen (HOST:PORT), or the
// same port on a loopback name when listen is loopback or every interface.
func pointsAt(base, listen string) bool {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return false
	}
	bh, bp, err := net.SplitHostPort(u.Host)
	if err != nil {
		return false
	}
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil || bp != lp {
		return false
	}
	local := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "localhost" || h == "" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
	}
	return bh == lh || local(bh) && local(lh)
}

// loopback reports whether addr (HOST:PORT) listens on a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openAccessLog opens --access-log: "" is none, "-" stderr, else a file appended
// to (created 0600: the lines name teams and key labels).
func openAccessLog(path string, stderr io.Writer) (*slog.Logger, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return slog.New(slog.NewJSONHandler(stderr, nil)), func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, usageErr("clade serve --access-log access.jsonl (a file this user may write, or - for stderr)", "--access-log: %v", err)
	}
	w := &reportingWriter{w: f, report: func(err error) {
		fmt.Fprintf(stderr, "clade serve: write --access-log %s: %v (lines are being lost; check the disk)\n", path, err)
	}}
	return slog.New(slog.NewJSONHandler(w, nil)), func() {
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "clade serve: close --access-log %s: %v\n", path, err)
		}
	}, nil
}

// reportingWriter passes writes on and reports the first error of each run of
// failed writes (slog drops a handler's write errors).
type reportingWriter struct {
	w      io.Writer
	mu     sync.Mutex
	failed bool
	report func(error)
}

func (r *reportingWriter) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	r.mu.Lock()
	first := err != nil && !r.failed
	r.failed = err != nil
	r.mu.Unlock()
	if first {
		r.report(err)
	}
	return n, err
}
