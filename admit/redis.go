package admit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/internal/roundtrip"
)

// ErrUnavailable is returned by a Redis backend's State while Redis cannot be reached
// under FailClosed (the other methods have an answer for that case; see OutagePolicy).
var ErrUnavailable = errors.New("admit: redis unreachable")

// RedisClock picks the clock the Redis backend's buckets run on.
type RedisClock int

const (
	// ClockRedis uses Redis TIME, read inside each script: every process sharing the
	// buckets then agrees on the time whatever their own clocks say. The now passed
	// to the Backend methods is ignored, except that a Sync's report counts as
	// time.Since(now) older than Redis's time (so stale reports are still recognised)
	// and a Pause lasts until − time.Now() from Redis's time.
	ClockRedis RedisClock = iota
	// ClockCaller uses the now passed to each method, as Memory does. For tests (the
	// conformance suite drives the backend with explicit times), or for processes
	// whose clocks are known to agree.
	ClockCaller
)

// OutagePolicy is what a Redis backend does while Redis does not answer (a refused
// connection, a timeout, a server still loading or read-only). Errors Redis itself
// returns for a request (a bad script, a wrong type) are returned as they are.
type OutagePolicy int

const (
	// FailClosed admits nothing while Redis is unreachable: Reserve answers "wait
	// RetryInterval" (not an error), so Limiter.Wait keeps its callers waiting and
	// retries, and no request is sent without a shared admission. Settle and Pause are
	// kept (summed per class) and applied when Redis answers again, so refunds and
	// held output are not lost; Sync is dropped (the next response reports again); Init
	// is remembered and the class created on first use; State returns ErrUnavailable.
	//
	// It is the default because the promise of a shared budget is no 429 storms: any
	// local fallback must guess how much of the organisation's limits this process may
	// use, and a wrong guess, times every process, is such a storm. Waiting costs
	// throughput only for as long as the outage lasts.
	FailClosed OutagePolicy = iota
	// FailLocal falls back to an in-process Memory backend while Redis is unreachable:
	// each class gets the limits of its Init spec (then of the headers) divided by
	// RedisConfig.Instances, starting empty, so that the processes sharing the budget
	// together stay within it if Instances is right. Each outage starts a new Memory;
	// when Redis answers again the shared buckets are used again. Calls in flight at a
	// switch settle where they end: refunds of calls reserved in Redis and settled
	// during the outage are lost (erring on the safe side; their held output lapses
	// after HeldLease), and calls reserved locally and settled after it are settled in
	// Redis as the calls in flight when Redis loses a class are (see Redis): refunded
	// no more than this instance's calls took from Redis, their output charged in full.
	FailLocal
)

func (p OutagePolicy) String() string {
	switch p {
	case FailClosed:
		return "fail-closed"
	case FailLocal:
		return "fail-local"
	}
	return fmt.Sprintf("OutagePolicy(%d)", int(p))
}

// RedisConfig configures a Redis backend.
type RedisConfig struct {
	// Client is the connection to Redis (a *redis.Client, a failover or cluster
	// client). Required. Set its MaxRetries to -1: the scripts are not idempotent, and a
	// retry after a lost reply would apply a Settle twice. ParseRedisURL does.
	Client redis.UniversalClient

	// Prefix starts every key. Default "clade:ratelimit".
	Prefix string
	// Namespace names the organisation whose limits the keys hold: processes that
	// share one organisation's budget use the same, and two organisations on one
	// Redis use different ones. A class's state is one hash at
	// Prefix:Namespace:class. Default "default".
	Namespace string

	// Clock is the buckets' clock. Default ClockRedis.
	Clock RedisClock

	// OnOutage is what happens while Redis is unreachable. Default FailClosed.
	OnOutage OutagePolicy
	// Instances is how many processes share the namespace; under FailLocal each takes
	// 1/Instances of every limit during an outage. Required (at least 1) with
	// FailLocal; unused otherwise.
	Instances int
	// RetryInterval is how long an outage lasts before Redis is tried again (by one
	// call; the others keep the outage policy meanwhile). Default 1 s.
	RetryInterval time.Duration
	// Timeout bounds each call to Redis; one that takes longer counts as an outage.
	// Default 1 s.
	Timeout time.Duration

	// HeldLease is how long another instance's held output (see Backend.Settle) counts
	// after that instance last reserved or settled in the class. It frees the output a
	// crashed process held; it must exceed the longest call, or a long call's output
	// stops being held (the headers then correct the level). Default 15 min.
	HeldLease time.Duration
	// TTL is how long a class's hash lives after its last write. A class that expired
	// is recreated empty, as one Redis lost is (see Redis). Default 1 h.
	TTL time.Duration

	// Lease, when positive, lets this process take up to Lease's worth of a
	// class's limits (at most 64 calls' worth) from Redis with one call and admit
	// the next calls from it without a round trip each; a lease in use is renewed
	// in the background before it runs out (holding at most one and a half
	// leases' worth), so that the calls do not wait for Redis; what a lease has
	// not given out goes back Lease after its last renewal, at a pause, and at
	// ReturnLeases. Other processes cannot use what one holds meanwhile, so it
	// is kept short (tens of milliseconds). Where the limits allow less than one
	// more call per Lease there is no lease. Default 0: every call reserves in
	// Redis.
	Lease time.Duration

	// Background says that the process makes its Settles and Syncs off its
	// calls' path (clade serve makes them once an answer has gone): each then
	// waits 20 ms for others of its class to share its round trip even when
	// none queued behind another, so that at a few hundred calls a second a
	// class makes one round trip for several calls, not one per call. Without
	// it, a round trip waits only once the class's round trips queue, so that a
	// caller that settles in sequence does not wait each time.
	Background bool

	// Logger receives the outage transitions and the classes Redis lost. Default:
	// discard.
	Logger *slog.Logger
}

const (
	defaultRedisPrefix    = "clade:ratelimit"
	defaultRedisNamespace = "default"
	defaultRedisRetry     = time.Second
	defaultRedisTimeout   = time.Second
	defaultHeldLease      = 15 * time.Minute
	defaultRedisTTL       = time.Hour
	maxReportAge          = time.Minute
)

func (c RedisConfig) withDefaults() RedisConfig {
	if c.Prefix == "" {
		c.Prefix = defaultRedisPrefix
	}
	if c.Namespace == "" {
		c.Namespace = defaultRedisNamespace
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = defaultRedisRetry
	}
	if c.Timeout == 0 {
		c.Timeout = defaultRedisTimeout
	}
	if c.HeldLease == 0 {
		c.HeldLease = defaultHeldLease
	}
	if c.TTL == 0 {
		c.TTL = defaultRedisTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c RedisConfig) validate() error {
	var errs []error
	if c.Client == nil {
		errs = append(errs, errors.New("client: required"))
	}
	if c.Clock != ClockRedis && c.Clock != ClockCaller {
		errs = append(errs, fmt.Errorf("clock %d: unknown", c.Clock))
	}
	switch c.OnOutage {
	case FailClosed:
	case FailLocal:
		if c.Instances < 1 {
			errs = append(errs, fmt.Errorf("instances %d: must be at least 1 with fail-local", c.Instances))
		}
	default:
		errs = append(errs, fmt.Errorf("outage policy %d: unknown", c.OnOutage))
	}
	if c.Lease < 0 || c.Lease > time.Minute {
		errs = append(errs, fmt.Errorf("lease %v: must be between 0 and 1m", c.Lease))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{{"retry interval", c.RetryInterval, time.Millisecond}, {"timeout", c.Timeout, time.Millisecond},
		{"held lease", c.HeldLease, time.Second}, {"ttl", c.TTL, time.Second}} {
		if d.v < d.min {
			errs = append(errs, fmt.Errorf("%s %v: must be at least %v", d.name, d.v, d.min))
		}
	}
	return errors.Join(errs...)
}

// Redis is a Backend in Redis, shared by every Limiter (in any process, on any
// machine) configured with the same Redis and namespace: one organisation's budget,
// one set of buckets. Each method is one Lua script, run atomically by Redis on one
// hash per class. Its bucket math is Memory's; see RedisConfig for the clock, the
// outage policy and how state is cleaned up. Create it with NewRedis; it does not
// own the client.
//
// # Lost classes
//
// A class that this instance initialised and finds missing from Redis was lost (a
// restart of a Redis that keeps nothing on disk, a flush, the TTL). It is recreated
// from the spec given to Init with empty buckets, refilling at the limits' rates from
// then on, and Logger is told ("admit redis lost a class, recreated it empty").
//
// Not full: the API's buckets may be as drained as the lost ones were, by the
// namespace's calls of the last minute, and every process would spend a full bucket at
// once, hundreds of calls in the first second, then 429s. Not seeded from what this
// process last saw either: it cannot see the others' use since; every process would
// spend a level seeded too high before the first response's headers pulled it down;
// and those headers count as room the output that calls in flight have yet to
// generate. An empty bucket cannot admit more than the API has room for, but for
// that output, which is charged when its calls settle. Empty costs one bucket's worth
// of calls, once (the minute after a loss goes at the limits' rate, with no burst),
// and nothing in steady state, where a saturated bucket is empty anyway.
//
// The calls in flight at the loss settle into buckets that never charged them: no
// refund, and their output charged in full, as the API counted it while it was
// generated, partly after the loss. The first limit a response reports for a
// recreated bucket (auto mode recreates it at StartTier's) is adopted without moving
// the level, which holds only what refilled since the loss, not capacity less calls in
// flight.
//
// A class missing at this instance's first Init is created full, as Backend requires
// and as the API's buckets are after a minute unused: Redis cannot tell a namespace
// never used from one it lost, and a first start should not wait a minute for buckets
// that are full unless the organisation was busy. So a process that starts after a
// loss, before any process that was running touches the class, gets full buckets; its
// first responses' headers, and a 429's pause, correct them.
type Redis struct {
	cfg      RedisConfig
	id       string // this instance, for its held output
	leaseArg string
	ttlArg   string

	classes sync.Map // class name → *redisClass, for those this instance initialised

	leases    sync.Map       // class name → *redisLease (RedisConfig.Lease)
	returning sync.WaitGroup // leases on their way back
	renewing  sync.WaitGroup // lease renewals on their way (renewAhead)

	settles roundtrip.Group[string, []settle]   // Settle's round trips, by class
	syncs   roundtrip.Group[string, syncReport] // Sync's, by class

	down    atomic.Bool // fast path: no outage
	mu      sync.Mutex  // guards the outage state below
	since   time.Time   // when the outage began
	retryAt time.Time   // when Redis may be tried again
	probing bool        // a call is trying Redis during an outage
	pending map[string]*pendingOps
	local   *Memory // FailLocal: this outage's fallback
	localOK map[string]bool
}

type redisClass struct {
	key  string
	spec Spec
	args [5]string // rpm, itpm, otpm, burst, headroom
}

// pendingOps are what FailClosed keeps of one class during an outage.
type pendingOps struct {
	reserved, actual Cost
	settles          int
	pause            time.Time
}

var _ Backend = (*Redis)(nil)

// NewRedis returns a Redis backend for cfg, with defaults applied to its zero fields.
// It does not contact Redis; the first call does.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("admit redis config: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	r := &Redis{
		cfg:      cfg,
		id:       hex.EncodeToString(b[:]),
		leaseArg: strconv.FormatInt(cfg.HeldLease.Microseconds(), 10),
		ttlArg:   strconv.FormatInt(cfg.TTL.Milliseconds(), 10),
		pending:  map[string]*pendingOps{},
	}
	// Once a class's settles or syncs queue behind each other (with Background,
	// always), each round trip waits redisLinger for more to share it.
	r.settles.Linger, r.syncs.Linger = redisLinger, redisLinger
	r.settles.Always, r.syncs.Always = cfg.Background, cfg.Background
	return r, nil
}

// redisLinger is how long a busy class's settle or sync round trip waits for
// others to join it: at a thousand calls a second, one round trip for twenty.
// Settles and syncs are off the calls' path (a call's reservation stays until
// its settle lands, so a longer linger only keeps it a little longer), and each
// round trip costs Redis and this process a script run on the cores the calls
// share: with 5 ms, clade bench gateway at 1,000 req/s measured 78 to 102 µs of
// Redis CPU per call, with 20 ms 43 to 50.
const redisLinger = 20 * time.Millisecond

// Key returns the key of class's hash.
func (r *Redis) Key(class string) string {
	return r.cfg.Prefix + ":" + r.cfg.Namespace + ":" + class
}

// Available reports whether the last call reached Redis.
func (r *Redis) Available() bool { return !r.down.Load() }

// args returns the leading script arguments for class at now (see redis_scripts.go),
// with room for n more.
func (r *Redis) args(rc *redisClass, now time.Time, age time.Duration, n int) []any {
	a := make([]any, 10, 10+n)
	a[0], a[1] = "", "0"
	if r.cfg.Clock == ClockCaller {
		a[0] = strconv.FormatInt(now.UnixMicro(), 10)
	} else if age > 0 {
		a[1] = strconv.FormatInt(min(age, maxReportAge).Microseconds(), 10)
	}
	a[2], a[3], a[4] = r.id, r.leaseArg, r.ttlArg
	for i := range 5 {
		a[5+i] = ""
		if rc.spec.Burst > 0 {
			a[5+i] = rc.args[i]
		}
	}
	return a
}

// class returns what this instance knows of class; only the key when it never
// initialised it.
func (r *Redis) class(class string) *redisClass {
	if v, ok := r.classes.Load(class); ok {
		return v.(*redisClass)
	}
	return &redisClass{key: r.Key(class)}
}

// run runs script on class's hash. It returns the reply, or (nil, nil) when the call
// must follow the outage policy instead (Redis unreachable now or recently).
func (r *Redis) run(ctx context.Context, s *redis.Script, rc *redisClass, args []any) ([]string, error) {
	if !r.route() {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		r.endProbe()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	reply, err := s.Run(cctx, r.cfg.Client, []string{rc.key}, args...).StringSlice()
	cancel()
	switch {
	case err == nil:
		r.reached(ctx)
		if n := len(reply); n > 0 && reply[n-1] == "recreated" {
			reply = reply[:n-1]
			r.cfg.Logger.Warn("admit redis lost a class, recreated it empty", "key", rc.key)
		}
		if len(reply) > 0 && reply[0] == "unknown" {
			return nil, ErrUnknownClass
		}
		return reply, nil
	case ctx.Err() != nil:
		r.endProbe()
		return nil, ctx.Err()
	case unreachable(err):
		r.unreached(err)
		return nil, nil
	}
	r.reached(ctx)
	return nil, err
}

// unreachable reports whether err means Redis did not answer, as opposed to an error
// Redis answered with.
func unreachable(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return true // network, timeout, closed client or pool
	}
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// route reports whether a call should go to Redis: always outside an outage; during
// one, only one call at a time once RetryInterval has passed.
func (r *Redis) route() bool {
	if !r.down.Load() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.down.Load() {
		return true
	}
	if r.probing || time.Now().Before(r.retryAt) {
		return false
	}
	r.probing = true
	return true
}

func (r *Redis) endProbe() {
	if r.down.Load() {
		r.mu.Lock()
		r.probing = false
		r.mu.Unlock()
	}
}

// unreached starts or prolongs an outage.
func (r *Redis) unreached(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.retryAt = now.Add(r.cfg.RetryInterval)
	r.probing = false
	if r.down.Load() {
		return
	}
	r.since = now
	r.down.Store(true)
	r.cfg.Logger.Warn("admit redis unreachable", "policy", r.cfg.OnOutage.String(),
		"retry_every", r.cfg.RetryInterval, "err", err)
}

// reached ends an outage, if any, and applies what FailClosed kept during it.
func (r *Redis) reached(ctx context.Context) {
	if !r.down.Load() {
		return
	}
	r.mu.Lock()
	if !r.down.Load() {
		r.mu.Unlock()
		return
	}
	r.down.Store(false)
	r.probing = false
	r.local, r.localOK = nil, nil
	pending := r.pending
	r.pending = map[string]*pendingOps{}
	outage := time.Since(r.since)
	r.mu.Unlock()
	r.cfg.Logger.Info("admit redis reachable again", "outage", outage.Round(time.Millisecond), "replayed_classes", len(pending))
	for class, p := range pending {
		if err := r.replay(context.WithoutCancel(ctx), class, p); err != nil {
			r.cfg.Logger.Warn("admit redis replay", "class", class, "err", err)
		}
	}
}

// replay applies what an outage kept of class: its summed settles, then its pause.
// What cannot be applied (another outage) is kept again.
func (r *Redis) replay(ctx context.Context, class string, p *pendingOps) error {
	// Not through Settle and Pause: replay runs inside a round trip of
	// theirs, or of a Reserve holding the class's lease (redis_lease.go).
	if p.settles > 0 {
		if err := r.settle(ctx, class, []settle{{p.reserved, p.actual, time.Now()}}); err != nil {
			return err
		}
	}
	if !p.pause.IsZero() {
		return r.pause(ctx, class, p.pause)
	}
	return nil
}

// keep records, under FailClosed, a Settle or Pause made during an outage.
func (r *Redis) keep(class string, fn func(p *pendingOps)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending[class]
	if p == nil {
		p = &pendingOps{}
		r.pending[class] = p
	}
	fn(p)
}

// fallback returns, under FailLocal, this outage's Memory with class initialised
// (its Init spec's limits divided by Instances, the buckets empty).
func (r *Redis) fallback(class string, now time.Time) (*Memory, error) {
	v, ok := r.classes.Load(class)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownClass, class)
	}
	spec := v.(*redisClass).spec
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.local == nil {
		r.local, r.localOK = NewMemory(), map[string]bool{}
	}
	m := r.local
	if r.localOK[class] {
		return m, nil
	}
	n := int64(r.cfg.Instances)
	spec.Limits = Limits{RPM: max(1, spec.Limits.RPM/n), ITPM: max(1, spec.Limits.ITPM/n), OTPM: max(1, spec.Limits.OTPM/n)}
	ctx := context.Background()
	if err := m.Init(ctx, class, spec, now); err != nil {
		return nil, err
	}
	// Start empty: the shared buckets may be drained, and every instance falls back
	// at once.
	s, _ := m.State(ctx, class, now)
	full := Cost{Requests: int64(s.Requests.Capacity), InputTokens: int64(s.InputTokens.Capacity), OutputTokens: int64(s.OutputTokens.Capacity)}
	if w, err := m.Reserve(ctx, class, full, now); err == nil && w == 0 {
		m.Settle(ctx, class, full, full, now)
	}
	r.localOK[class] = true
	return m, nil
}

// Init implements Backend. The spec is remembered, so that a class Redis lost is
// recreated. A class missing from Redis is created full, as Backend requires, unless
// this instance initialised it before (another Limiter on this backend): then Redis
// lost it, and it is recreated empty (see Redis).
func (r *Redis) Init(ctx context.Context, class string, spec Spec, now time.Time) error {
	if !spec.valid() {
		return fmt.Errorf("init class %s: invalid spec %+v", class, spec)
	}
	rc := &redisClass{key: r.Key(class), spec: spec, args: [5]string{
		strconv.FormatInt(spec.Limits.RPM, 10), strconv.FormatInt(spec.Limits.ITPM, 10), strconv.FormatInt(spec.Limits.OTPM, 10),
		strconv.FormatFloat(spec.Burst, 'g', -1, 64), strconv.FormatFloat(spec.Headroom, 'g', -1, 64),
	}}
	start := "full"
	if v, loaded := r.classes.LoadOrStore(class, rc); loaded {
		rc, start = v.(*redisClass), "empty"
	}
	if _, err := r.run(ctx, redisInit, rc, append(r.args(rc, now, 0, 1), start)); err != nil {
		return opErr("init", class, err)
	}
	return nil // during an outage the class is created on first use
}

// Reserve implements Backend. With RedisConfig.Lease, most calls are admitted
// from what an earlier one took (redis_lease.go).
func (r *Redis) Reserve(ctx context.Context, class string, c Cost, now time.Time) (time.Duration, error) {
	if r.cfg.Lease > 0 {
		return r.reserveLeased(ctx, class, c, now)
	}
	return r.reserve(ctx, class, c, now)
}

// reserve reserves c in Redis, or by the outage policy.
func (r *Redis) reserve(ctx context.Context, class string, c Cost, now time.Time) (time.Duration, error) {
	rc := r.class(class)
	a := r.args(rc, now, 0, 3)
	a = append(a, strconv.FormatInt(c.Requests, 10), strconv.FormatInt(c.InputTokens, 10), strconv.FormatInt(c.OutputTokens, 10))
	reply, err := r.run(ctx, redisReserve, rc, a)
	if err != nil {
		return 0, opErr("reserve", class, err)
	}
	if reply == nil { // outage
		if r.cfg.OnOutage == FailLocal {
			m, err := r.fallback(class, now)
			if err != nil {
				return 0, err
			}
			return m.Reserve(ctx, class, c, now)
		}
		return r.outageWait(), nil
	}
	if reply[0] == "ok" {
		return 0, nil
	}
	if len(reply) != 3 || reply[0] != "wait" {
		return 0, fmt.Errorf("redis reserve %s: unexpected reply %q", class, reply)
	}
	pause, err1 := strconv.ParseFloat(reply[1], 64)
	secs, err2 := strconv.ParseFloat(reply[2], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("redis reserve %s: %w", class, err)
	}
	wait := time.Duration(pause) * time.Microsecond
	if secs > 0 {
		wait = max(wait, secondsCeil(secs))
	}
	return max(wait, time.Microsecond), nil
}

// outageWait is how long FailClosed tells a Reserve to wait: until Redis is tried
// again.
func (r *Redis) outageWait() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := time.Until(r.retryAt); w > time.Millisecond {
		return w
	}
	return max(r.cfg.RetryInterval/4, time.Millisecond) // another call is probing
}

// Settle implements Backend.
//
// The settles of a class that arrive while one of its settles is on its way to
// Redis go together in the next round trip, one script applying each in turn:
// at a high call rate a class sees one settle round trip at a time, not one
// per call.
func (r *Redis) Settle(ctx context.Context, class string, reserved, actual Cost, now time.Time) error {
	_, err := r.settles.Do(class, []settle{{reserved, actual, now}},
		func(a, b []settle) []settle { return append(a, b...) },
		func(all []settle) ([]settle, error) {
			// The opener's context ends only its own wait; the round trip serves
			// the others too.
			return nil, r.settle(context.WithoutCancel(ctx), class, all)
		})
	return err
}

// settle is one settle of Settle: a reserved and an actual cost.
type settle struct {
	reserved, actual Cost
	now              time.Time
}

// settle applies the settles all of class in one round trip.
func (r *Redis) settle(ctx context.Context, class string, all []settle) error {
	rc := r.class(class)
	now := all[0].now
	for _, st := range all[1:] {
		if st.now.After(now) {
			now = st.now
		}
	}
	a := r.args(rc, now, 0, 6*len(all))
	for _, st := range all {
		for _, v := range []int64{st.reserved.Requests, st.reserved.InputTokens, st.reserved.OutputTokens,
			st.actual.Requests, st.actual.InputTokens, st.actual.OutputTokens} {
			a = append(a, strconv.FormatInt(v, 10))
		}
	}
	reply, err := r.run(ctx, redisSettle, rc, a)
	if err != nil {
		return opErr("settle", class, err)
	}
	if reply != nil {
		return nil
	}
	if r.cfg.OnOutage == FailLocal {
		m, err := r.fallback(class, now)
		if err != nil {
			return err
		}
		for _, st := range all {
			if err := m.Settle(ctx, class, st.reserved, st.actual, st.now); err != nil {
				return err
			}
		}
		return nil
	}
	r.keep(class, func(p *pendingOps) {
		for _, st := range all {
			p.reserved = addCost(p.reserved, st.reserved)
			p.actual = addCost(p.actual, st.actual)
			p.settles++
		}
	})
	return nil
}

func addCost(a, b Cost) Cost {
	return Cost{Requests: a.Requests + b.Requests, InputTokens: a.InputTokens + b.InputTokens, OutputTokens: a.OutputTokens + b.OutputTokens}
}

// Sync implements Backend.
//
// Syncs of a class that arrive while one is on its way to Redis are merged into
// the next round trip, which applies the newest of them (the latest now): each
// report is what the API said was left at its now, so the newest bounds the
// level as tightly as the older ones and their refill since would.
func (r *Redis) Sync(ctx context.Context, class string, rep Report, now time.Time) error {
	_, err := r.syncs.Do(class, syncReport{rep, now},
		func(a, b syncReport) syncReport {
			if b.now.After(a.now) {
				return b
			}
			return a
		},
		func(s syncReport) (syncReport, error) {
			// The opener's context ends only its own wait.
			return s, r.sync(context.WithoutCancel(ctx), class, s.rep, s.now)
		})
	return err
}

// syncReport is one Sync's report and its now.
type syncReport struct {
	rep Report
	now time.Time
}

func (r *Redis) sync(ctx context.Context, class string, rep Report, now time.Time) error {
	rc := r.class(class)
	a := r.args(rc, now, time.Since(now), 12)
	for _, rd := range rep.dims() {
		valid := "0"
		if rd.Valid {
			valid = "1"
		}
		a = append(a, valid, strconv.FormatInt(rd.Limit, 10), strconv.FormatInt(rd.Remaining, 10), strconv.FormatInt(rd.Slack, 10))
	}
	reply, err := r.run(ctx, redisSync, rc, a)
	if err != nil {
		return opErr("sync", class, err)
	}
	if reply != nil || r.cfg.OnOutage == FailClosed {
		return nil
	}
	m, err := r.fallback(class, now)
	if err != nil {
		return err
	}
	n := int64(r.cfg.Instances)
	scaled := rep
	for _, rd := range []*Reading{&scaled.Requests, &scaled.InputTokens, &scaled.OutputTokens} {
		if rd.Limit > 0 {
			rd.Limit = max(1, rd.Limit/n)
		}
	}
	return m.Sync(ctx, class, scaled, now)
}

// Pause implements Backend.
func (r *Redis) Pause(ctx context.Context, class string, until time.Time) error {
	r.dropLease(class)
	return r.pause(ctx, class, until)
}

func (r *Redis) pause(ctx context.Context, class string, until time.Time) error {
	rc := r.class(class)
	a := r.args(rc, time.Now(), 0, 1) // the time only matters if the class must be recreated
	if r.cfg.Clock == ClockCaller {
		a = append(a, strconv.FormatInt(until.UnixMicro(), 10))
	} else {
		a = append(a, strconv.FormatInt(time.Until(until).Microseconds(), 10))
	}
	reply, err := r.run(ctx, redisPause, rc, a)
	if err != nil {
		return opErr("pause", class, err)
	}
	if reply != nil {
		return nil
	}
	// Outage: pause now, and in Redis once it answers (other processes will want to
	// know about a 429).
	r.keep(class, func(p *pendingOps) {
		if until.After(p.pause) {
			p.pause = until
		}
	})
	if r.cfg.OnOutage == FailLocal {
		m, err := r.fallback(class, time.Now())
		if err != nil {
			return err
		}
		return m.Pause(ctx, class, until)
	}
	return nil
}

// State implements Backend. With ClockRedis the times returned are converted to this
// process's clock.
func (r *Redis) State(ctx context.Context, class string, now time.Time) (State, error) {
	rc := r.class(class)
	reply, err := r.run(ctx, redisState, rc, r.args(rc, now, 0, 0))
	if err != nil {
		return State{}, opErr("state", class, err)
	}
	if reply == nil {
		if r.cfg.OnOutage == FailLocal {
			m, err := r.fallback(class, now)
			if err != nil {
				return State{}, err
			}
			return m.State(ctx, class, now)
		}
		return State{}, fmt.Errorf("state %s: %w", class, ErrUnavailable)
	}
	if len(reply) != 14 {
		return State{}, fmt.Errorf("redis state %s: unexpected reply %q", class, reply)
	}
	v := make([]float64, len(reply)-1)
	for i, s := range reply[1:] {
		if v[i], err = strconv.ParseFloat(s, 64); err != nil {
			return State{}, fmt.Errorf("redis state %s: %w", class, err)
		}
	}
	var offset time.Duration // this process's clock minus the script's
	if r.cfg.Clock == ClockRedis {
		offset = time.Since(time.UnixMicro(int64(v[0])))
	}
	at := func(us float64) time.Time {
		if us == 0 {
			return time.Time{}
		}
		return time.UnixMicro(int64(us)).Add(offset)
	}
	bs := func(i int) BucketState {
		return BucketState{Limit: int64(v[1+3*i]), Capacity: v[2+3*i], Level: v[3+3*i]}
	}
	s := State{Requests: bs(0), InputTokens: bs(1), OutputTokens: bs(2), PausedUntil: at(v[11]), SyncedAt: at(v[12])}
	s.OutputTokens.Held = v[10]
	return s, nil
}

// opErr wraps an error of operation op on class.
func opErr(op, class string, err error) error {
	if errors.Is(err, ErrUnknownClass) {
		return fmt.Errorf("%w %q", ErrUnknownClass, class)
	}
	return fmt.Errorf("redis %s %s: %w", op, class, err)
}
