package admit_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/admit/admittest"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/testkit"
)

// redisServer is a private redis-server on a loopback port, keeping nothing on disk
// (--save "" --appendonly no), that a test can kill and start again on the same port:
// a real Redis restart, which comes back empty. The shared CLADE_TEST_REDIS_URL
// cannot be restarted or flushed: other tests use it.
type redisServer struct {
	t    *testing.T
	path string
	dir  string
	Addr string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	// waited is closed when the running server's process has been waited for.
	waited chan struct{}
}

// startRedisServer starts a private redis-server, killed at cleanup. Without
// redis-server on PATH the test is skipped (failed under CI).
func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		testkit.Unavailable(t, "redis-server is not installed (%v): the restart tests run their own", err)
	}
	s := &redisServer{t: t, path: path, dir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = ln.Addr().String()
		ln.Close()
		if err = s.start(); err == nil {
			break
		}
		if attempt == 2 { // another process took the free port each time
			t.Fatalf("start redis-server: %v\n%s", err, s.out)
		}
	}
	t.Cleanup(s.kill)
	return s
}

// start runs redis-server on s.Addr and waits until it answers PING.
func (s *redisServer) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	s.out = &bytes.Buffer{}
	s.cmd = exec.Command(s.path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", "")
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	s.waited = exited
	go func() { s.cmd.Wait(); close(exited) }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if c.Ping(ctx).Err() == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("redis-server on %s exited", s.Addr)
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("redis-server on %s: no PING answer within 5s", s.Addr)
		case <-tick.C:
		}
	}
}

// kill stops the server with SIGKILL, as a crash would, and waits for it.
func (s *redisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.waited
	s.cmd = nil
}

// restart kills the server and starts an empty one on the same address.
func (s *redisServer) restart() {
	s.t.Helper()
	s.kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart redis-server: %v\n%s", err, s.out)
	}
}

// runID is the server's run_id: a restarted server has a new one.
func runID(t *testing.T, c *redis.Client) string {
	t.Helper()
	info, err := c.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			return v
		}
	}
	t.Fatalf("no run_id in INFO server:\n%s", info)
	return ""
}

// tap records when each Messages call reached the handler, and its status.
type tap struct {
	h     http.Handler
	mu    sync.Mutex
	at    []time.Time
	n429  int
	onHit func(n int) // called with the number of calls so far, under mu
}

func (p *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messages" {
		p.h.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	p.at = append(p.at, time.Now())
	if p.onHit != nil {
		p.onHit(len(p.at))
	}
	p.mu.Unlock()
	rec := &statusWriter{ResponseWriter: w}
	p.h.ServeHTTP(rec, r)
	if rec.code == http.StatusTooManyRequests {
		p.mu.Lock()
		p.n429++
		p.mu.Unlock()
	}
}

// since returns the arrival times at or after t.
func (p *tap) since(t time.Time) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return timesSince(p.at, t)
}

func timesSince(at []time.Time, t time.Time) []time.Time {
	var out []time.Time
	for _, a := range at {
		if !a.Before(t) {
			out = append(out, a)
		}
	}
	return out
}

// admissions records when each call came out of admission: a client middleware
// inside the limiter's (option.WithMiddleware after it), so the time is not
// delayed by the way to the API as an arrival at a tap is.
type admissions struct {
	mu sync.Mutex
	at []time.Time
}

func (a *admissions) middleware(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	a.mu.Lock()
	a.at = append(a.at, time.Now())
	a.mu.Unlock()
	return next(req)
}

// since returns the admission times at or after t.
func (a *admissions) since(t time.Time) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return timesSince(a.at, t)
}

// waitCalls blocks until n calls in all have reached p, or ctx ends.
func (p *tap) waitCalls(ctx context.Context, n int) error {
	reached := make(chan struct{})
	var once sync.Once
	p.mu.Lock()
	p.onHit = func(k int) {
		if k >= n {
			once.Do(func() { close(reached) })
		}
	}
	p.onHit(len(p.at))
	p.mu.Unlock()
	select {
	case <-reached:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tierCatalog is a catalog whose tier name allows rpm, itpm and otpm per minute to
// every class.
func tierCatalog(t *testing.T, name string, rpm, itpm, otpm int) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Overlay(catalog.Default(), fmt.Appendf(nil,
		"tiers:\n  %s:\n    batch: {rpm: 100, queue: 1000, max_requests: 1000}\n    limits:\n      default: {rpm: %d, itpm: %d, otpm: %d}\n",
		name, rpm, itpm, otpm))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// TestRedisRestartedEmptyBucketsStartEmpty: a limiter drains its buckets, with a call
// still in flight, and Redis restarts empty. The class comes back with empty buckets
// refilling at the limit's rate from then on, not full: nothing is admitted at once,
// the call in flight settles without a refund into buckets that never charged it, and
// over the next half minute no more is admitted than the rate allows.
func TestRedisRestartedEmptyBucketsStartEmpty(t *testing.T) {
	t.Parallel()
	srv := startRedisServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	var logs testkit.Buffer
	be := newRedis(t, admit.RedisConfig{Client: rdb, Namespace: "org", Clock: admit.ClockCaller,
		RetryInterval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	// 1 request, 100 input and 100 output tokens per second; no headroom, so that the
	// numbers are exact.
	lim, err := admit.New(admit.Config{Catalog: tierCatalog(t, "small", 60, 6000, 6000), Tier: "small", Headroom: -1, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	const class = "sonnet-5"
	t0 := admittest.T0
	ctx := context.Background()

	inflight, w, err := lim.ReserveAt(class, admit.Need{InputTokens: 1000, OutputTokens: 300}, t0)
	if err != nil || w != 0 {
		t.Fatalf("ReserveAt(the call in flight) = %v, %v, want admitted", w, err)
	}
	used := 1
	for {
		r, w, err := lim.ReserveAt(class, admit.Need{InputTokens: 10, OutputTokens: 1}, t0)
		if err != nil {
			t.Fatal(err)
		}
		if w > 0 {
			break
		}
		if err := r.CommitAt(admit.Usage{InputTokens: 10, OutputTokens: 1}, nil, t0); err != nil {
			t.Fatal(err)
		}
		used++
	}
	if used != 60 {
		t.Fatalf("admitted %d calls from a full bucket of 60 requests, want 60", used)
	}

	srv.restart()

	now := t0.Add(time.Millisecond)
	if r, w, err := lim.ReserveAt(class, admit.Need{InputTokens: 10, OutputTokens: 1}, now); err != nil || w <= 0 {
		r.CancelAt(now)
		t.Fatalf("ReserveAt right after Redis restarted = %v, %v, want a wait: the lost buckets must come back empty, not full", w, err)
	}
	if !strings.Contains(logs.String(), "recreated it empty") {
		t.Errorf("log after the restart lacks the class's recreation:\n%s", logs.String())
	}
	// The call in flight ends, having used less than it reserved: the recreated
	// buckets never charged it, so nothing is refunded, and its output (counted by
	// the API as it was generated, partly after the restart) is charged.
	if err := inflight.CommitAt(admit.Usage{InputTokens: 400, OutputTokens: 100}, nil, now); err != nil {
		t.Fatal(err)
	}
	snap, err := lim.SnapshotAt(ctx, now)
	if err != nil || len(snap.Classes) != 1 {
		t.Fatalf("SnapshotAt = %+v, %v", snap, err)
	}
	st := snap.Classes[0].State
	// Recreated at the first call after the restart, at now.
	for _, b := range []struct {
		name      string
		got, want float64
	}{
		{"requests", st.Requests.Level, 0},
		{"input", st.InputTokens.Level, 0},
		{"output", st.OutputTokens.Level, -100},
	} {
		if b.got != b.want {
			t.Errorf("%s level right after the restart = %v, want %v", b.name, b.got, b.want)
		}
	}
	if st.OutputTokens.Held != 0 {
		t.Errorf("output held after the call in flight settled = %v, want 0", st.OutputTokens.Held)
	}

	// Half a minute at 1 request/s: about 30 calls, and never more than the rate.
	admitted := 0
	for step := 1; step <= 300; step++ {
		now := t0.Add(time.Duration(step) * 100 * time.Millisecond)
		for {
			r, w, err := lim.ReserveAt(class, admit.Need{InputTokens: 10, OutputTokens: 1}, now)
			if err != nil {
				t.Fatal(err)
			}
			if w > 0 {
				break
			}
			if err := r.CommitAt(admit.Usage{InputTokens: 10, OutputTokens: 1}, nil, now); err != nil {
				t.Fatal(err)
			}
			admitted++
		}
		if allowed := now.Sub(t0).Seconds(); float64(admitted) > allowed {
			t.Fatalf("%d calls admitted %v after the restart, want at most %v (1/s from empty)", admitted, now.Sub(t0), allowed)
		}
	}
	if admitted < 29 {
		t.Errorf("%d calls admitted in the 30s after the restart, want 29 or 30: calls must keep going at the limit's rate", admitted)
	}
}

// TestRedisRestartedEmptyMidRunNo429s: many callers go through a limiter whose Redis
// is killed and started again, empty, in the middle of the run, while the API's
// (the emulator's) request bucket is drained. The buckets Redis lost come back empty,
// so the API answers no 429 and the calls after the restart go at the limit's rate,
// without the burst of a full bucket on top.
//
// Buckets of seconds keep it short: the limiter's holds 2 s of the limit (20
// requests), the emulator's 3 s (30), so the emulator has about 10 of room left
// when Redis restarts, and those 10 absorb calls that reach it late under a loaded
// -race run. A recreated full bucket lets every caller waiting go at once (about
// 10 more than the limit's rate: checked on the times calls leave admission),
// and, had the emulator less room left, draws 429s. The limit is low (10 requests/s) so that the workers
// outrun it on a loaded machine: the emulator's bucket drains only while they do.
func TestRedisRestartedEmptyMidRunNo429s(t *testing.T) {
	t.Parallel()
	srv := startRedisServer(t)
	const (
		rpm     = 600 // 10 requests/s
		perSec  = rpm / 60
		limCap  = 2 * perSec // Burst 2/60: two seconds of the limit
		workers = 64
	)
	cat := tierCatalog(t, "rpm", rpm, 100_000_000, 100_000_000)
	reg := prometheus.NewRegistry()
	em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "rpm", LatencyScale: 0.1, BurstFraction: 3.0 / 60, Registry: reg})
	p := &tap{h: em.Server}
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)

	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	var logs testkit.Buffer
	be := newRedis(t, admit.RedisConfig{Client: rdb, Namespace: "org", RetryInterval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	lim, err := admit.New(admit.Config{Catalog: cat, Tier: "rpm", Burst: 2.0 / 60, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	class, err := lim.ClassOf(mwModel)
	if err != nil {
		t.Fatal(err)
	}
	var adm admissions
	cl := v2Client(hs.URL, lim, option.WithMaxRetries(0), option.WithMiddleware(adm.middleware))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for i := range workers {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				_, err := cl.Messages.New(ctx, anthropic.MessageNewParams{Model: mwModel, MaxTokens: 16,
					Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt(i*1000 + n)))}})
				if err != nil && ctx.Err() == nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	stop := func() { cancel(); wg.Wait() }
	defer stop()

	// Run until the emulator's bucket is drained: its 30 and two seconds of refill.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	// On a loaded machine the workers may fall behind the refill: then wait for
	// more calls until the bucket is below the limiter's (at most the 20 s).
	var room float64
	for want := 30 + 2*perSec; ; want += perSec {
		if err := p.waitCalls(wctx, want); err != nil {
			t.Fatalf("before the restart: %d calls reached the emulator: %v", len(p.since(time.Time{})), err)
		}
		room = testkit.MetricSum(t, reg, "clade_emulator_ratelimit_remaining", map[string]string{"class": class, "limit": "requests"})
		if room < limCap-1 || wctx.Err() != nil {
			break
		}
	}
	if room >= limCap-1 {
		t.Fatalf("before the restart the emulator has room for %v requests, want fewer than the limiter's %d: a full bucket would not overshoot", room, limCap)
	}
	snap, _ := lim.Snapshot(ctx)
	key := be.Key(class)
	oldID := runID(t, rdb)

	down := time.Now()
	srv.restart()
	if id := runID(t, rdb); id == oldID {
		t.Fatalf("redis run_id %s unchanged: the server was not restarted", id)
	}
	if snap.InFlight == 0 {
		t.Errorf("no call in flight just before the restart: the restart did not happen mid-run")
	}

	// Two seconds' worth of calls after the restart.
	before := len(p.since(time.Time{}))
	if err := p.waitCalls(wctx, before+2*perSec); err != nil {
		t.Fatalf("after the restart only %d calls reached the emulator: calls did not keep going (%v)", len(p.since(down)), err)
	}
	stop()

	if n, err := rdb.Exists(context.Background(), key).Result(); err != nil || n != 1 || !strings.Contains(logs.String(), "recreated it empty") {
		t.Errorf("EXISTS %s after the restart = %d, %v, log:\n%s\nwant 1 and the class's recreation logged: the limiter did not see the class lost",
			key, n, err, logs.String())
	}
	after := adm.since(down)
	// At most what the limit allows: from the restart on, the limit's rate, a
	// bucket that starts empty; a full one would have admitted limCap more at once.
	// Counted as the calls come out of admission: on a loaded -race run, calls
	// admitted before the restart can reach the emulator after it, bunched.
	const slack = limCap / 4
	worst, worstAt := 0.0, 0.0
	for i, a := range after {
		w := a.Sub(down).Seconds()
		if over := float64(i+1) - w*perSec; over > worst {
			worst, worstAt = over, w
		}
	}
	if worst > slack {
		t.Errorf("%.0f calls more than %d/s from an empty bucket admitted in the %.2fs after the restart, want at most %d",
			worst, perSec, worstAt, slack)
	}
	n429 := testkit.MetricSum(t, reg, "clade_emulator_rate_limited_total", nil)
	t.Logf("%d calls before the restart (emulator room %.1f), %d admitted after it (%d reached the emulator); %v answered 429", before, room, len(after), len(p.since(down)), n429)
	if n429 != 0 || p.n429 != 0 {
		t.Errorf("the emulator answered %v calls with 429 (%d seen at the tap), want 0", n429, p.n429)
	}
	if f := failed.Load(); f > 0 {
		t.Errorf("%d calls failed, first: %v", f, firstErr.Load())
	}
}
