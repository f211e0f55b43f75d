package admit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/admit/admittest"
	"github.com/clade-dev/clade/internal/testkit"
)

// redisOptions returns the options of the Redis at CLADE_TEST_REDIS_URL, or skips.
func redisOptions(tb testing.TB) *redis.Options {
	tb.Helper()
	opts, err := admit.ParseRedisURL(testkit.RedisURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return opts
}

// redisClient returns a client of opts closed at cleanup.
func redisClient(tb testing.TB, opts *redis.Options) *redis.Client {
	tb.Helper()
	c := redis.NewClient(opts)
	tb.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix of its own for one test, whose keys are deleted at
// cleanup.
func testPrefix(tb testing.TB, opts *redis.Options) string {
	tb.Helper()
	var b [6]byte
	rand.Read(b[:])
	prefix := "clade-test:" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		c := redis.NewClient(opts)
		defer c.Close()
		ctx := context.Background()
		keys, err := c.Keys(ctx, prefix+":*").Result()
		if err == nil && len(keys) > 0 {
			err = c.Del(ctx, keys...).Err()
		}
		if err != nil {
			tb.Errorf("delete test keys %s:*: %v", prefix, err)
		}
	})
	return prefix
}

func newRedis(tb testing.TB, cfg admit.RedisConfig) *admit.Redis {
	tb.Helper()
	r, err := admit.NewRedis(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestRedisConformance(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	prefix := testPrefix(t, opts)
	var n atomic.Int64
	admittest.Run(t, func(t *testing.T) admit.Backend {
		// A namespace of its own for each subtest: each needs an empty backend.
		ns := "ns" + string(rune('a'+n.Add(1)%26)) + hex.EncodeToString([]byte(t.Name()))
		return newRedis(t, admit.RedisConfig{Client: client, Prefix: prefix, Namespace: ns, Clock: admit.ClockCaller})
	})
}

var spec60 = admit.Spec{Limits: admit.Limits{RPM: 60, ITPM: 6000, OTPM: 600}, Burst: 1}

// TestRedisClockAgreesAcrossProcesses: with Redis TIME, a process whose clock is an
// hour ahead gets no refill the others did not.
func TestRedisClockAgreesAcrossProcesses(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	prefix := testPrefix(t, opts)
	ctx := context.Background()
	a := newRedis(t, admit.RedisConfig{Client: redisClient(t, opts), Prefix: prefix})
	b := newRedis(t, admit.RedisConfig{Client: redisClient(t, opts), Prefix: prefix})
	for _, be := range []*admit.Redis{a, b} {
		if err := be.Init(ctx, "sonnet-5", spec60, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if w, err := a.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 60}, time.Now()); w != 0 || err != nil {
		t.Fatalf("a.Reserve(60 of 60) = %v, %v, want admitted", w, err)
	}
	w, err := b.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, time.Now().Add(time.Hour))
	if err != nil || w <= 0 || w > time.Second {
		t.Errorf("b.Reserve(1) with a clock an hour ahead = %v, %v, want a wait in (0, 1s]: the bucket is shared and Redis's clock counts", w, err)
	}
	// A pause is as long for everyone, whatever their clocks.
	if err := a.Pause(ctx, "sonnet-5", time.Now().Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	s, err := b.State(ctx, "sonnet-5", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(s.PausedUntil); d < 29*time.Second || d > 31*time.Second {
		t.Errorf("State().PausedUntil is %v from now, want 30s", d)
	}
}

// TestRedisSharedLimiters: two limiters (two processes, each with its own client)
// sharing one Redis admit together no more than one would alone: the bucket's
// capacity plus its refill over the time taken.
func TestRedisSharedLimiters(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	prefix := testPrefix(t, opts)
	const rpm = 50 // tier-1
	var lims []*admit.Limiter
	for range 2 {
		be := newRedis(t, admit.RedisConfig{Client: redisClient(t, opts), Prefix: prefix, Namespace: "org"})
		l, err := admit.New(admit.Config{Tier: "tier-1", Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		lims = append(lims, l)
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(1500 * time.Millisecond)
	for _, l := range lims {
		for range 16 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					r, wait, err := l.ReserveAt("sonnet-5", admit.Need{InputTokens: 10, OutputTokens: 10}, time.Now())
					if errors.Is(err, admit.ErrBusy) || (err == nil && wait > 0) {
						continue
					}
					if err != nil {
						t.Errorf("ReserveAt = %v", err)
						return
					}
					admitted.Add(1)
					if err := r.Commit(admit.Usage{InputTokens: 10, OutputTokens: 10}, nil); err != nil {
						t.Errorf("Commit = %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	most := float64(rpm) + elapsed.Seconds()*rpm/60
	least := float64(rpm) * (1 - 0.02) // the capacity less the default headroom
	if got := float64(admitted.Load()); got > most || got < least-1 {
		t.Errorf("two limiters on one Redis admitted %v requests in %v, want between %v and %v (one bucket of %d/min)",
			got, elapsed.Round(time.Millisecond), least-1, most, rpm)
	}
}

// TestRedisNamespacesAreSeparate: two organisations on one Redis do not share.
func TestRedisNamespacesAreSeparate(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	prefix := testPrefix(t, opts)
	ctx := context.Background()
	a := newRedis(t, admit.RedisConfig{Client: client, Prefix: prefix, Namespace: "org-a"})
	b := newRedis(t, admit.RedisConfig{Client: client, Prefix: prefix, Namespace: "org-b"})
	for _, be := range []*admit.Redis{a, b} {
		if err := be.Init(ctx, "sonnet-5", spec60, time.Now()); err != nil {
			t.Fatal(err)
		}
		if w, err := be.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 60}, time.Now()); w != 0 || err != nil {
			t.Errorf("Reserve(60 of 60) in %s = %v, %v, want admitted: namespaces are separate budgets", be.Key("sonnet-5"), w, err)
		}
	}
}

// TestRedisRecreatesLostClass: a class Redis lost (a restart without persistence, a
// flush, the TTL) is recreated from the spec this instance initialised it with, with
// empty buckets refilling from then on: the API's may be as drained as the lost ones.
func TestRedisRecreatesLostClass(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	ctx := context.Background()
	be := newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts), Clock: admit.ClockCaller})
	t0 := admittest.T0
	if err := be.Init(ctx, "sonnet-5", spec60, t0); err != nil {
		t.Fatal(err)
	}
	if err := client.Del(ctx, be.Key("sonnet-5")).Err(); err != nil {
		t.Fatal(err)
	}
	if w, err := be.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, t0); w != time.Second || err != nil {
		t.Fatalf("Reserve(1 request) after the key was lost = %v, %v, want a wait of 1s (an empty bucket refilling 60/min)", w, err)
	}
	if ttl := client.PTTL(ctx, be.Key("sonnet-5")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("PTTL(class key) = %v, want in (0, 1h]", ttl)
	}
	s, err := be.State(ctx, "sonnet-5", t0.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests.Limit != 60 || s.Requests.Level != 30 || s.InputTokens.Level != 3000 || s.OutputTokens.Level != 300 {
		t.Errorf("30s after the loss: %+v, want the spec's limits and half of each bucket refilled", s)
	}
	// Another instance that never initialised the class does not invent one.
	other := newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts), Clock: admit.ClockCaller})
	if _, err := other.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, t0); !errors.Is(err, admit.ErrUnknownClass) {
		t.Errorf("Reserve(never initialised, key missing) = %v, want ErrUnknownClass", err)
	}
}

// TestRedisHeldLeaseFreesCrashedInstance: output held by an instance that stopped
// (a crash with calls in flight) stops capping the bucket after HeldLease.
func TestRedisHeldLeaseFreesCrashedInstance(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	prefix := testPrefix(t, opts)
	ctx := context.Background()
	t0 := admittest.T0
	cfg := admit.RedisConfig{Client: client, Prefix: prefix, Clock: admit.ClockCaller, HeldLease: 10 * time.Minute}
	crashed, live := newRedis(t, cfg), newRedis(t, cfg)
	for _, be := range []*admit.Redis{crashed, live} {
		if err := be.Init(ctx, "sonnet-5", spec60, t0); err != nil {
			t.Fatal(err)
		}
	}
	if w, err := crashed.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1, OutputTokens: 500}, t0); w != 0 || err != nil {
		t.Fatalf("Reserve = %v, %v", w, err)
	}
	s, err := live.State(ctx, "sonnet-5", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s.OutputTokens.Held != 500 || s.OutputTokens.Level != 100 {
		t.Errorf("a minute into the other instance's call: output %+v, want held 500, level 100", s.OutputTokens)
	}
	s, err = live.State(ctx, "sonnet-5", t0.Add(11*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s.OutputTokens.Held != 0 || s.OutputTokens.Level != 600 {
		t.Errorf("past the lease of an instance never heard from again: output %+v, want held 0, level 600", s.OutputTokens)
	}
}

// TestRedisErrorsAreNotOutages: an error Redis answers with (here a key of another
// type under the class's name) is returned, not taken for an outage.
func TestRedisErrorsAreNotOutages(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	ctx := context.Background()
	be := newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts)})
	if err := client.Set(ctx, be.Key("sonnet-5"), "not a hash", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := be.Init(ctx, "sonnet-5", spec60, time.Now()); err != nil {
		t.Fatal(err) // the key exists: Init leaves it
	}
	_, err := be.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, time.Now())
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("Reserve on a key of another type = %v, want the WRONGTYPE error", err)
	}
	if !be.Available() {
		t.Errorf("Available() = false after an error Redis answered with, want true")
	}
}

func TestParseRedisURLHidesPassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url string
	}{
		{"bad port", "redis://user:s3cret-pw@localhost:notaport/0"},
		{"bad db", "redis://:s3cret-pw@localhost:6379/zero"},
		{"bad scheme", "http://:s3cret-pw@localhost:6379"},
		{"bad escape", "redis://:s3cret-pw%zz@localhost:6379"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := admit.ParseRedisURL(tt.url)
			if err == nil {
				t.Fatalf("ParseRedisURL(%s) = nil error, want one", tt.name)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("ParseRedisURL error %q contains the password", err)
			}
		})
	}
	opts, err := admit.ParseRedisURL("redis://:pw@localhost:6379/2")
	if err != nil || opts.Password != "pw" || opts.DB != 2 || opts.MaxRetries != -1 {
		t.Errorf("ParseRedisURL(good) = %+v, %v, want password pw, db 2, no retries", opts, err)
	}
	for in, want := range map[string]string{
		"redis://user:pw@host:6379/0":     "redis://user:xxxxx@host:6379/0",
		"redis://:pw@host":                "redis://:xxxxx@host",
		"rediss://pw@host/1?dial_timeout": "rediss://xxxxx@host/1?dial_timeout",
		"redis://host:6379":               "redis://host:6379",
	} {
		if got := admit.RedactURL(in); got != want {
			t.Errorf("RedactURL(%s) = %s, want %s", in, got, want)
		}
	}
}

// proxy is a TCP proxy to Redis that a test can take down and bring back on the
// same address, to make Redis unreachable for real.
type proxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.down(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, up) {
				continue
			}
			for _, pair := range [][2]net.Conn{{c, up}, {up, c}} {
				p.wg.Go(func() {
					io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				})
			}
		}
	})
}

// track records a connection pair; false (and both closed) if the proxy went down.
func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

// down closes the listener and every connection: Redis is unreachable.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// up listens again on the same address.
func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// viaProxy returns a Redis backend reaching Redis through a proxy, and the proxy.
func viaProxy(t *testing.T, cfg admit.RedisConfig) (*admit.Redis, *proxy, *redis.Client) {
	t.Helper()
	opts := redisOptions(t)
	p := startProxy(t, opts.Addr)
	popts := *opts
	popts.Addr = p.addr
	popts.DialTimeout = 200 * time.Millisecond
	cfg.Client = redisClient(t, &popts)
	cfg.Prefix = testPrefix(t, opts)
	cfg.RetryInterval = 50 * time.Millisecond
	cfg.Timeout = 300 * time.Millisecond
	return newRedis(t, cfg), p, redisClient(t, opts)
}

// eventually calls f until it reports true, for at most 5 s.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRedisFailClosed: while Redis is unreachable nothing is admitted, and what was
// settled meanwhile reaches Redis when it is back.
func TestRedisFailClosed(t *testing.T) {
	t.Parallel()
	be, p, direct := viaProxy(t, admit.RedisConfig{})
	ctx := context.Background()
	if err := be.Init(ctx, "sonnet-5", spec60, time.Now()); err != nil {
		t.Fatal(err)
	}
	l, err := admit.New(admit.Config{Tier: "tier-1", Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	c := admit.Cost{Requests: 1, InputTokens: 100, OutputTokens: 300}
	if w, err := be.Reserve(ctx, "sonnet-5", c, time.Now()); w != 0 || err != nil {
		t.Fatalf("Reserve before the outage = %v, %v, want admitted", w, err)
	}

	p.down()
	w, err := be.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, time.Now())
	if err != nil || w <= 0 {
		t.Errorf("Reserve during an outage = %v, %v, want a wait and no error", w, err)
	}
	if be.Available() {
		t.Errorf("Available() = true during an outage")
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if r, err := l.Wait(wctx, "sonnet-5", admit.Need{InputTokens: 10}); err == nil || r.OK() {
		t.Errorf("Limiter.Wait during an outage = %v, admitted %v; want it to keep waiting until its context ends", err, r.OK())
	}
	cancel()
	// The call reserved before the outage ends now: its refund and its held output
	// must not be lost.
	if err := be.Settle(ctx, "sonnet-5", c, admit.Cost{Requests: 1, InputTokens: 100, OutputTokens: 50}, time.Now()); err != nil {
		t.Errorf("Settle during an outage = %v, want nil (kept for later)", err)
	}
	if _, err := be.State(ctx, "sonnet-5", time.Now()); !errors.Is(err, admit.ErrUnavailable) {
		t.Errorf("State during an outage = %v, want ErrUnavailable", err)
	}
	if held := direct.HGet(ctx, be.Key("sonnet-5"), "held:"+heldID(t, direct, be)).Val(); held != "300" {
		t.Fatalf("held output in Redis during the outage = %q, want 300", held)
	}

	p.up()
	eventually(t, "admitted after Redis came back", func() bool {
		w, err := be.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, time.Now())
		return err == nil && w == 0
	})
	s, err := be.State(ctx, "sonnet-5", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s.OutputTokens.Held != 0 {
		t.Errorf("after Redis came back, output held = %v, want 0: the Settle kept during the outage was applied", s.OutputTokens.Held)
	}
	if s.OutputTokens.Level < 550 {
		t.Errorf("after Redis came back, output level = %v, want ≥ 550 (600 less the 50 used)", s.OutputTokens.Level)
	}
}

// heldID returns the instance ID under which be holds output in Redis.
func heldID(t *testing.T, c *redis.Client, be *admit.Redis) string {
	t.Helper()
	fields, err := c.HKeys(context.Background(), be.Key("sonnet-5")).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if id, ok := strings.CutPrefix(f, "held:"); ok {
			return id
		}
	}
	t.Fatalf("no held:* field in %v", fields)
	return ""
}

// TestRedisFailLocal: while Redis is unreachable each instance admits from a local
// bucket of 1/Instances of the limits, starting empty; when Redis is back the shared
// buckets count again.
func TestRedisFailLocal(t *testing.T) {
	t.Parallel()
	be, p, _ := viaProxy(t, admit.RedisConfig{OnOutage: admit.FailLocal, Instances: 2})
	ctx := context.Background()
	if err := be.Init(ctx, "sonnet-5", spec60, time.Now()); err != nil {
		t.Fatal(err)
	}
	p.down()
	now := time.Now()
	w, err := be.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, now)
	if err != nil || w < 1900*time.Millisecond || w > 2*time.Second {
		t.Fatalf("first local Reserve = %v, %v, want a wait of 2s (an empty bucket refilling 30/min)", w, err)
	}
	s, err := be.State(ctx, "sonnet-5", now)
	if err != nil || s.Requests.Limit != 30 || s.InputTokens.Limit != 3000 || s.OutputTokens.Limit != 300 {
		t.Fatalf("local State = %+v, %v, want the limits halved (60, 6000, 600 over 2 instances)", s, err)
	}
	// A minute later the local bucket holds 30 requests, and no more.
	later := now.Add(time.Minute)
	n := 0
	for {
		if w, err := be.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, later); err != nil || w != 0 {
			break
		}
		n++
	}
	if n != 30 {
		t.Errorf("local Reserves admitted after a minute = %d, want 30", n)
	}
	// Headers seen during the outage: a limit reported is also shared.
	rep := admit.Report{Requests: admit.Reading{Valid: true, Limit: 120, Remaining: 100, Slack: 1}}
	if err := be.Sync(ctx, "sonnet-5", rep, later); err != nil {
		t.Fatal(err)
	}
	if s, _ := be.State(ctx, "sonnet-5", later); s.Requests.Limit != 60 {
		t.Errorf("local requests limit after a report of 120 = %d, want 60 (its half)", s.Requests.Limit)
	}

	p.up()
	eventually(t, "Redis used again", func() bool {
		s, err := be.State(ctx, "sonnet-5", time.Now())
		return err == nil && be.Available() && s.Requests.Limit == 60 && s.Requests.Capacity == 60 && s.Requests.Level > 59
	})
}

// TestRedisNothingListening: a Redis that was never there is an outage from the
// first call, handled by the policy within the timeout.
func TestRedisNothingListening(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	client := redisClient(t, &redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	be := newRedis(t, admit.RedisConfig{Client: client, Namespace: "never", Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	if err := be.Init(ctx, "sonnet-5", spec60, time.Now()); err != nil {
		t.Errorf("Init with Redis unreachable = %v, want nil (the class is created on first use)", err)
	}
	start := time.Now()
	w, err := be.Reserve(ctx, "sonnet-5", admit.Cost{Requests: 1}, time.Now())
	if err != nil || w <= 0 {
		t.Errorf("Reserve with Redis unreachable = %v, %v, want a wait (fail closed)", w, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Reserve with Redis unreachable took %v, want within the 300ms timeout", d)
	}
}

// TestRedisConcurrentSettlesAgreeWithMemory: settles of one class that arrive
// together (and so share round trips to Redis) leave the buckets where the same
// settles made one by one leave Memory's, and fewer round trips than settles
// were made when they were many at once.
func TestRedisConcurrentSettlesAgreeWithMemory(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	ctx := context.Background()
	rd := newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts), Clock: admit.ClockCaller})
	mem := admit.NewMemory()
	t0 := admittest.T0
	spec := admit.Spec{Limits: admit.Limits{RPM: 100000, ITPM: 10000000, OTPM: 1000000}, Burst: 1}
	const n = 200
	reserved := admit.Cost{Requests: 1, InputTokens: 500, OutputTokens: 400}
	actual := func(i int) admit.Cost {
		return admit.Cost{Requests: 1, InputTokens: 450 + int64(i%7)*20, OutputTokens: int64(i%13) * 37}
	}
	for _, be := range []admit.Backend{rd, mem} {
		if err := be.Init(ctx, "c", spec, t0); err != nil {
			t.Fatal(err)
		}
		for range n {
			if w, err := be.Reserve(ctx, "c", reserved, t0); w != 0 || err != nil {
				t.Fatalf("Reserve = %v, %v, want admitted at once", w, err)
			}
		}
	}
	for i := range n {
		if err := mem.Settle(ctx, "c", reserved, actual(i), t0); err != nil {
			t.Fatal(err)
		}
	}
	var calls atomic.Int64
	client.AddHook(countEval{n: &calls, delay: 10 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := rd.Settle(ctx, "c", reserved, actual(i), t0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	levelsAgree(t, fmt.Sprintf("after %d concurrent settles", n), rd, mem, t0)
	if c := calls.Load(); c > n/4 {
		t.Errorf("%d settle round trips for %d settles at once, want at most %d: they were not shared", c, n, n/4)
	} else {
		t.Logf("%d settles, %d round trips", n, c)
	}
}

// countEval counts the scripts a client runs, one per round trip of the
// backend's: an EVALSHA that a fresh Redis answers NOSCRIPT, which the client
// sends again as EVAL, counts once. With a delay, each script also waits that
// long first; while hold (if set) points to a channel, each waits until it is
// closed: Redis answering nothing. Landed (if set) counts the scripts that
// have had their answer.
type countEval struct {
	n, landed *atomic.Int64
	delay     time.Duration
	hold      *atomic.Pointer[chan struct{}]
}

func (h countEval) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countEval) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		if name != "evalsha" && name != "eval" {
			return next(ctx, cmd)
		}
		h.n.Add(1)
		time.Sleep(h.delay)
		if h.hold != nil {
			if ch := h.hold.Load(); ch != nil {
				<-*ch
			}
		}
		err := next(ctx, cmd)
		if name == "evalsha" && redis.HasErrorPrefix(err, "NOSCRIPT") {
			h.n.Add(-1) // sent again as EVAL, counted there
		} else if h.landed != nil {
			h.landed.Add(1)
		}
		return err
	}
}
func (h countEval) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestRedisConcurrentSyncsApplyNewest: reports of one class that arrive together
// share round trips, and the level ends bounded by the newest report, as when
// they are applied one by one.
func TestRedisConcurrentSyncsApplyNewest(t *testing.T) {
	t.Parallel()
	opts := redisOptions(t)
	client := redisClient(t, opts)
	ctx := context.Background()
	rd := newRedis(t, admit.RedisConfig{Client: client, Prefix: testPrefix(t, opts), Clock: admit.ClockCaller})
	t0 := admittest.T0
	spec := admit.Spec{Limits: admit.Limits{RPM: 100000, ITPM: 10000000, OTPM: 1000000}, Burst: 1}
	if err := rd.Init(ctx, "c", spec, t0); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	client.AddHook(countEval{n: &calls, delay: 10 * time.Millisecond})
	const n = 100
	// Report i, at t0 + i ms, says 90,000 - 100·i requests are left: the newest
	// (i = n-1) says 80,100.
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rep := admit.Report{Requests: admit.Reading{Valid: true, Limit: 100000, Remaining: 90000 - 100*int64(i)}}
			if err := rd.Sync(ctx, "c", rep, t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rounds := calls.Load()
	st, err := rd.State(ctx, "c", t0.Add((n-1)*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if want := 80100.0; math.Abs(st.Requests.Level-want) > 1 {
		t.Errorf("requests level after %d reports = %v, want the newest's %v", n, st.Requests.Level, want)
	}
	if rounds > n/4 {
		t.Errorf("%d sync round trips for %d reports at once, want at most %d: they were not shared", rounds, n, n/4)
	}
}

// levelsAgree checks that class "c" of got has every bucket at the level it has in
// want, at now.
func levelsAgree(t *testing.T, when string, got, want admit.Backend, now time.Time) {
	t.Helper()
	ctx := context.Background()
	w, err := want.State(ctx, "c", now)
	if err != nil {
		t.Fatal(err)
	}
	g, err := got.State(ctx, "c", now)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name      string
		got, want float64
	}{{"requests", g.Requests.Level, w.Requests.Level}, {"input", g.InputTokens.Level, w.InputTokens.Level},
		{"output", g.OutputTokens.Level, w.OutputTokens.Level}} {
		if math.Abs(d.got-d.want) > 1e-6 {
			t.Errorf("%s level %s = %v, want %v", d.name, when, d.got, d.want)
		}
	}
}
