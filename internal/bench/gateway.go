package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/gcfloor"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/loadgen"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/upstream"
)

// The targets of a gateway benchmark: the emulator itself, a bare
// httputil.ReverseProxy in front of it, and clade serve's gateway in front of it.
const (
	TargetDirect  = "direct"
	TargetProxy   = "proxy"
	TargetGateway = "gateway"
)

// The modes: non-streaming (JSON) and streaming (SSE) Messages calls.
const (
	ModeJSON = "json"
	ModeSSE  = "sse"
)

// Defaults of GatewayConfig.
var DefaultGatewayRates = []float64{500, 1000, 2000, 4000}

const (
	DefaultGatewayDuration       = 20 * time.Second
	DefaultGatewayWarmup         = 2 * time.Second
	DefaultGatewaySearchDuration = 10 * time.Second
	DefaultGatewayMaxP99         = 50 * time.Millisecond
	// gatewaySearchCap stops the search for the maximum sustainable rate.
	gatewaySearchCap = 64000
)

// GatewayConfig is a gateway overhead benchmark: open-loop load at fixed rates
// against each target in turn, in one process sharing the machine's cores.
type GatewayConfig struct {
	// Catalog prices the calls and holds the unlimited tier. Default catalog.Default().
	Catalog *catalog.Catalog
	// Rates are the offered rates, requests per second. Default DefaultGatewayRates.
	Rates []float64
	// Duration is each measurement's length, Warmup the load at the same rate before
	// it that is not counted (connections, caches, the limiter's state). Defaults
	// 20 s and 2 s.
	Duration, Warmup time.Duration
	// Modes are ModeJSON, ModeSSE; Targets TargetDirect, TargetProxy, TargetGateway.
	// Default: all.
	Modes, Targets []string
	// RedisURL shares the gateway's limits through that Redis (a namespace of the
	// run's own); "" keeps them in memory.
	RedisURL string
	// DB is the gateway's spend store (a SQLite path or a postgres:// URL), which the
	// budgets read and write. Default: a SQLite file in a temporary directory.
	DB string
	// Search, after the fixed rates, looks for the gateway's maximum sustainable rate
	// per mode (Sustainable), with measurements of SearchDuration (default 10 s).
	Search         bool
	SearchDuration time.Duration
	// MaxP99 is the p99 a sustainable rate stays under. Default 50 ms.
	MaxP99 time.Duration
	// GCFloor is the garbage collector floor the process runs with (package
	// gcfloor), clade serve's --gc-floor: every part, and so every target, runs
	// under it. Default serve.DefaultGCFloor; a negative value: Go's default.
	GCFloor int64
	// Progress, when set, is called after each measurement.
	Progress func(GatewayPoint)
}

// GatewayPoint is one measurement: one target, one mode, one rate.
type GatewayPoint struct {
	Target, Mode string
	Rate         float64
	Search       bool // a step of the search for the maximum rate
	Result       *loadgen.Result
	// CPU is the CPU time the whole process (load generator, emulator and the
	// target) used over the measurement, RedisCPU Redis's (0 without Redis): per
	// call, the target's cost shows against direct's, steadier than its latency
	// on a shared machine. HasCPU says CPU was measured.
	CPU, RedisCPU time.Duration
	HasCPU        bool
	// Steal is the share of the machine's CPU time the hypervisor gave to others
	// over the measurement (/proc/stat), -1 where it is not known: on a shared
	// virtual machine, what moves the tail more than anything measured here.
	Steal float64
}

// String is the point as clade bench gateway prints it when it is measured.
func (p GatewayPoint) String() string {
	s := fmt.Sprintf("%s %s %s", p.Target, p.Mode, p.Result)
	if p.HasCPU {
		s += fmt.Sprintf(", CPU %.0f µs/call", us(p.CPUPerCall()))
	}
	if p.RedisCPU > 0 {
		s += fmt.Sprintf(" (Redis %.0f µs)", us(p.RedisPerCall()))
	}
	if p.Steal >= 0 {
		s += fmt.Sprintf(", steal %.1f %%", 100*p.Steal)
	}
	return s
}

// CPUPerCall is the process's CPU time per call over the measurement.
func (p GatewayPoint) CPUPerCall() time.Duration { return perCall(p.CPU, p.Result) }

// RedisPerCall is Redis's CPU time per call over the measurement.
func (p GatewayPoint) RedisPerCall() time.Duration { return perCall(p.RedisCPU, p.Result) }

func perCall(d time.Duration, r *loadgen.Result) time.Duration {
	if r == nil || r.Requests == 0 {
		return 0
	}
	return d / time.Duration(r.Requests)
}

// Sustainable reports whether the point kept up: every request answered 200 (every
// stream complete), the achieved rate at least 99 % of the offered, and p99 under
// maxP99.
func (p GatewayPoint) Sustainable(maxP99 time.Duration) bool {
	r := p.Result
	return r.Errors == 0 && r.Incomplete == 0 && r.Status[http.StatusOK] == r.Requests && r.Requests > 0 &&
		r.AchievedRate >= 0.99*p.Rate && r.Latency.P99 <= maxP99
}

// GatewayReport is a gateway benchmark's outcome.
type GatewayReport struct {
	Config GatewayConfig
	Points []GatewayPoint
	// MaxRate is, per mode, the highest rate measured that the gateway sustained;
	// MaxRateCapped says the search stopped at its cap, not at a failure.
	MaxRate       map[string]float64
	MaxRateCapped map[string]bool
	// CPUs and GOMAXPROCS of the process that ran every part; LoadBefore and
	// LoadAfter the machine's 1-minute load average around the run (0 where
	// /proc/loadavg cannot be read).
	CPUs, GOMAXPROCS      int
	LoadBefore, LoadAfter float64
	Redis                 bool
	Started               time.Time
	// GCFloor is the garbage collector floor the run had (0: Go's default).
	GCFloor int64
}

// Point returns the fixed-rate measurement of target and mode at rate, or nil.
func (r *GatewayReport) Point(target, mode string, rate float64) *GatewayPoint {
	for i, p := range r.Points {
		if p.Target == target && p.Mode == mode && p.Rate == rate && !p.Search {
			return &r.Points[i]
		}
	}
	return nil
}

// benchOrgKey is the organisation's key, which only the proxy and the gateway
// send; benchClientKey is the gateway's client key, with a budget of its own.
const (
	benchOrgKey    = "sk-ant-bench-org-key"
	benchClientKey = "ck-bench-loadgen-0001"
)

// benchKeys gives the client key's team a daily and a monthly budget, and the key
// a daily one, all far above what a run spends: every call is checked against
// three budgets and charged to all, and none is refused.
const benchKeys = `teams:
  bench: {budget: {day: 100000000, month: 1000000000}}
keys:
  ` + benchClientKey + `: {team: bench, label: loadgen, budget: {day: 100000000}}
`

// RunGateway runs the benchmark: an emulator (tier unlimited, latency off), a bare
// reverse proxy and the gateway (client keys with budgets, the spend store, the
// limits in Redis when RedisURL is set), each on its own loopback port, then for
// every rate, mode and target in that order, Warmup then Duration of open-loop load.
func RunGateway(ctx context.Context, cfg GatewayConfig) (*GatewayReport, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	rep := &GatewayReport{Config: cfg, MaxRate: map[string]float64{}, MaxRateCapped: map[string]bool{},
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Redis: cfg.RedisURL != "", Started: time.Now().UTC()}
	rep.LoadBefore = loadAverage()
	set, release := gcfloor.Set(cfg.GCFloor)
	defer release()
	if set {
		rep.GCFloor = cfg.GCFloor
	}
	env, err := startGatewayEnv(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer env.close()

	measure := func(target, mode string, rate float64, d time.Duration, search bool) (*GatewayPoint, error) {
		lc := loadgen.Config{URL: env.urls[target] + "/v1/messages", Stream: mode == ModeSSE, Rate: rate,
			Header: loadgen.DefaultHeader(), Client: env.clients[target]}
		lc.Header.Set("X-Api-Key", env.keys[target])
		if cfg.Warmup > 0 {
			lc.Duration = cfg.Warmup
			if _, err := loadgen.Run(ctx, lc); err != nil {
				return nil, err
			}
		}
		lc.Duration = d
		cpu0, hasCPU := processCPU()
		steal0, total0, hasSteal := machineTicks()
		redis0 := env.redisCPU(ctx)
		res, err := loadgen.Run(ctx, lc)
		if err != nil {
			return nil, err
		}
		cpu1, _ := processCPU()
		steal1, total1, _ := machineTicks()
		p := GatewayPoint{Target: target, Mode: mode, Rate: rate, Search: search, Result: res,
			CPU: cpu1 - cpu0, RedisCPU: max(env.redisCPU(ctx)-redis0, 0), HasCPU: hasCPU, Steal: -1}
		if hasSteal && total1 > total0 {
			p.Steal = float64(steal1-steal0) / float64(total1-total0)
		}
		rep.Points = append(rep.Points, p)
		if cfg.Progress != nil {
			cfg.Progress(p)
		}
		return &p, nil
	}
	for _, rate := range cfg.Rates {
		for _, mode := range cfg.Modes {
			for _, target := range cfg.Targets {
				if _, err := measure(target, mode, rate, cfg.Duration, false); err != nil {
					return rep, fmt.Errorf("%s %s at %.0f req/s: %w", target, mode, rate, err)
				}
			}
		}
	}
	if cfg.Search && contains(cfg.Targets, TargetGateway) {
		for _, mode := range cfg.Modes {
			// The highest fixed rate sustained, and the lowest one above it that was not.
			var lo, hi float64
			for _, rate := range cfg.Rates {
				p := rep.Point(TargetGateway, mode, rate)
				switch {
				case p.Sustainable(cfg.MaxP99) && hi == 0:
					lo = rate
				case !p.Sustainable(cfg.MaxP99) && (hi == 0 || rate < hi):
					hi = rate
				}
			}
			step := func(rate float64) (bool, error) {
				p, err := measure(TargetGateway, mode, rate, cfg.SearchDuration, true)
				if err != nil {
					return false, fmt.Errorf("gateway %s at %.0f req/s: %w", mode, rate, err)
				}
				return p.Sustainable(cfg.MaxP99), nil
			}
			for hi == 0 && lo > 0 {
				next := lo * 1.5
				if next > gatewaySearchCap {
					rep.MaxRateCapped[mode] = true
					break
				}
				ok, err := step(next)
				if err != nil {
					return rep, err
				}
				if ok {
					lo = next
				} else {
					hi = next
				}
			}
			// Bisect down to 5 % of the rate.
			for hi > 0 && lo > 0 && hi-lo > 0.05*lo {
				mid := roundRate((lo + hi) / 2)
				if mid <= lo || mid >= hi {
					break
				}
				ok, err := step(mid)
				if err != nil {
					return rep, err
				}
				if ok {
					lo = mid
				} else {
					hi = mid
				}
			}
			rep.MaxRate[mode] = lo
		}
	}
	rep.LoadAfter = loadAverage()
	return rep, nil
}

// roundRate rounds a rate to two significant figures' worth of 50s.
func roundRate(r float64) float64 {
	return float64(int64(r/50+0.5)) * 50
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (c *GatewayConfig) withDefaults() error {
	if c.Catalog == nil {
		c.Catalog = catalog.Default()
	}
	if len(c.Rates) == 0 {
		c.Rates = DefaultGatewayRates
	}
	for _, r := range c.Rates {
		if r <= 0 || r > 1e6 {
			return fmt.Errorf("rate %g: want 1 to 1e6 requests/s", r)
		}
	}
	if c.Duration == 0 {
		c.Duration = DefaultGatewayDuration
	}
	if c.SearchDuration == 0 {
		c.SearchDuration = DefaultGatewaySearchDuration
	}
	if c.MaxP99 == 0 {
		c.MaxP99 = DefaultGatewayMaxP99
	}
	if c.GCFloor == 0 {
		c.GCFloor = serve.DefaultGCFloor
	}
	if c.Duration < 0 || c.Warmup < 0 || c.SearchDuration < 0 || c.MaxP99 < 0 {
		return errors.New("durations must not be negative")
	}
	if len(c.Modes) == 0 {
		c.Modes = []string{ModeJSON, ModeSSE}
	}
	for _, m := range c.Modes {
		if m != ModeJSON && m != ModeSSE {
			return fmt.Errorf("mode %q: want json or sse", m)
		}
	}
	if len(c.Targets) == 0 {
		c.Targets = []string{TargetDirect, TargetProxy, TargetGateway}
	}
	for _, t := range c.Targets {
		if t != TargetDirect && t != TargetProxy && t != TargetGateway {
			return fmt.Errorf("target %q: want direct, proxy or gateway", t)
		}
	}
	return nil
}

// gatewayEnv is the emulator, proxy and gateway of one benchmark.
type gatewayEnv struct {
	urls, keys map[string]string
	clients    map[string]*http.Client
	closers    []func()
	redis      *redis.Client // the gateway's, when its limits are in Redis
}

// redisCPU is the CPU time the Redis server has used (INFO cpu), or 0.
func (e *gatewayEnv) redisCPU(ctx context.Context) time.Duration {
	if e.redis == nil {
		return 0
	}
	info, err := e.redis.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			var f float64
			fmt.Sscanf(v, "%g", &f)
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}

func (e *gatewayEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

func startGatewayEnv(ctx context.Context, cfg GatewayConfig) (env *gatewayEnv, err error) {
	env = &gatewayEnv{urls: map[string]string{}, keys: map[string]string{}, clients: map[string]*http.Client{}}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	em, err := emulator.Start(emulator.Config{Catalog: cfg.Catalog, Tier: "unlimited", LatencyScale: 0, Seed: 1,
		APIKeys: []string{benchOrgKey}})
	if err != nil {
		return env, fmt.Errorf("start emulator: %w", err)
	}
	env.closers = append(env.closers, func() { em.Close() })
	env.urls[TargetDirect], env.keys[TargetDirect] = em.URL, benchOrgKey

	// The bare proxy: httputil.ReverseProxy putting the organisation's key in, with
	// a transport that keeps as many idle connections as the gateway's upstream
	// client (upstream.DefaultMaxIdleConnsPerHost); net/http's default of 2 would
	// open a connection per call at these rates.
	emURL, _ := url.Parse(em.URL)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost, tr.MaxIdleConns = upstream.DefaultMaxIdleConnsPerHost, 2*upstream.DefaultMaxIdleConnsPerHost
	proxy := &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(emURL)
		pr.Out.Header.Set("X-Api-Key", benchOrgKey)
	}}
	purl, stop, err := serveLoopback(proxy)
	if err != nil {
		return env, err
	}
	env.closers = append(env.closers, stop, tr.CloseIdleConnections)
	env.urls[TargetProxy], env.keys[TargetProxy] = purl, benchClientKey

	gurl, stopGW, rc, err := startBenchGateway(ctx, cfg, em.URL)
	env.redis = rc
	if err != nil {
		return env, err
	}
	env.closers = append(env.closers, stopGW)
	env.urls[TargetGateway], env.keys[TargetGateway] = gurl, benchClientKey

	for _, t := range []string{TargetDirect, TargetProxy, TargetGateway} {
		ctr := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		env.clients[t] = &http.Client{Transport: ctr}
		env.closers = append(env.closers, ctr.CloseIdleConnections)
	}
	return env, nil
}

// startBenchGateway starts the gateway as clade serve would: client keys with
// budgets, a spend store, the limiter (on Redis when configured), served by
// Gateway.Run on a loopback port. It returns the gateway's Redis client (nil
// without Redis), which stop closes.
func startBenchGateway(ctx context.Context, cfg GatewayConfig, upURL string) (string, func(), *redis.Client, error) {
	var closers []func()
	var rc *redis.Client
	stop := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (string, func(), *redis.Client, error) {
		stop()
		return "", nil, nil, err
	}
	log := slog.New(slog.DiscardHandler)
	up, err := upstream.New(upstream.Config{BaseURL: upURL, APIKey: upstream.NewSecret(benchOrgKey), Logger: log})
	if err != nil {
		return fail(err)
	}
	acfg := admit.Config{Catalog: cfg.Catalog, Tier: "unlimited", Logger: log}
	if cfg.RedisURL != "" {
		opts, err := admit.ParseRedisURL(cfg.RedisURL)
		if err != nil {
			return fail(fmt.Errorf("redis: %w", err))
		}
		rc = redis.NewClient(opts)
		closers = append(closers, func() { rc.Close() })
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = rc.Ping(pctx).Err()
		cancel()
		if err != nil {
			return fail(fmt.Errorf("redis %s: %w", admit.RedactURL(cfg.RedisURL), err))
		}
		var b [6]byte
		rand.Read(b[:])
		be, err := admit.NewRedis(admit.RedisConfig{Client: rc, Namespace: "clade-bench-gateway-" + hex.EncodeToString(b[:]), Lease: admit.DefaultRedisLease,
			Background: true, Logger: log}) // as clade serve's
		if err != nil {
			return fail(err)
		}
		acfg.Backend = be
	}
	lim, err := admit.New(acfg)
	if err != nil {
		return fail(fmt.Errorf("limiter: %w", err))
	}
	db := cfg.DB
	if db == "" {
		dir, err := os.MkdirTemp("", "clade-bench-gateway-")
		if err != nil {
			return fail(err)
		}
		closers = append(closers, func() { os.RemoveAll(dir) })
		db = filepath.Join(dir, "spend.db")
	}
	store, err := jobs.Open(ctx, db, jobs.WithLogger(log))
	if err != nil {
		return fail(fmt.Errorf("spend store: %w", err))
	}
	closers = append(closers, func() { store.Close() })
	keys, err := serve.ParseKeys([]byte(benchKeys))
	if err != nil {
		return fail(err)
	}
	gw, err := serve.New(serve.Config{Upstream: up, Limiter: lim, Keys: keys, Logger: log, Spend: store, Catalog: cfg.Catalog})
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(fmt.Errorf("listen: %w", err))
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(rctx, ln, serve.RunOptions{ShutdownTimeout: 5 * time.Second}) }()
	closers = append(closers, func() { cancel(); <-done })
	return "http://" + ln.Addr().String(), stop, rc, nil
}

// serveLoopback serves h on a loopback port as the gateway's Run does (the same
// header timeout), until the returned stop.
func serveLoopback(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { srv.Close(); <-done }, nil
}

// loadAverage is the machine's 1-minute load average, or 0.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscanf(strings.TrimSpace(string(b)), "%f", &l)
	return l
}
