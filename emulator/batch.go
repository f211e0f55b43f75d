package emulator

// The Message Batches engine (anthropic-api.md §4).
//
// Model. Every batch request waits in one FIFO queue shared by all batches (oldest
// batch first, items in order). The queue drains at Config.BatchProcessingRate
// requests per second of the emulator Clock, so the requests processed in a batch are
// always a prefix of it and the engine tracks only a count per batch. A batch's
// processing is over when its last request is processed, when it reaches expires_at
// (created_at + 24 h; what is left becomes expired), or when it is canceled (what is
// left becomes canceled).
//
// Source of truth. The state is computed, not sampled: every API call first advances
// the simulation to the current Clock time, so the answer is the same whether or not
// the background goroutine has run, and Clock.Advance takes effect on the next call.
// The goroutine (start/stop) only wakes at the next predicted event so that batches
// end, and are logged, without a client polling; wake makes it re-plan at once.
//
// Validation. To the client params are checked asynchronously, as the API does: a bad
// request fails nothing at create and shows up only as an errored result. Inside, the
// create call runs s.prepare on every request before it answers and records one
// outcome byte per request (plus the exact error for the few that fail), so no batch
// ever waits for validation and ended_at is exactly when processing was over.
//
// Memory. A request costs its custom_id, its raw params and one byte (about 200 bytes
// for a typical short prompt: 250,000 requests take ~50 MB); responses are generated
// again, deterministically, each time the results are downloaded. Params are dropped
// the first time an archived batch is looked at.

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/wire"
)

// DefaultBatchCacheGroup is Config.BatchCacheGroup's default: a batch's requests
// are looked up in the prompt cache 4 at a time. A prefix of k consecutive lines
// then writes in its first group only: min(k, 4 - its offset in that group)
// lines, 2.5 on average for k ≥ 4, so a cold prefix's hit rate in one batch runs
// from about 37 % (4 lines) through 75 % (10) to 97.5 % (100): the 30-98 % the
// API's docs quote for batches (anthropic-api.md §4.3), for the few-to-a-hundred
// questions per document of typical bulk work.
const DefaultBatchCacheGroup = 4

// Batch lifetimes (anthropic-api.md §4.3).
const (
	// batchExpiry is how long a batch may process: expires_at = created_at + 24 h.
	batchExpiry = 24 * time.Hour
	// defaultBatchRetention is how long results stay downloadable: archived_at =
	// created_at + 29 days (Config.BatchRetention).
	defaultBatchRetention = 29 * 24 * time.Hour
	// cancelGrace is how long (emulator clock) a canceled batch stays "canceling"
	// before it ends. The API finishes in-flight requests first; the emulator stops
	// processing at once and only delays the state change, so clients see canceling.
	cancelGrace = time.Second
	// defaultBatchMaxRequests applies when the tier has no batch limits.
	defaultBatchMaxRequests = 100_000
)

// Batch processing statuses.
const (
	batchInProgress = "in_progress"
	batchCanceling  = "canceling"
	batchEnded      = "ended"
)

// MessageBatch is the API's batch object (anthropic-api.md §4.2).
type MessageBatch struct {
	ID                string             `json:"id"`
	Type              string             `json:"type"`
	ProcessingStatus  string             `json:"processing_status"`
	RequestCounts     BatchRequestCounts `json:"request_counts"`
	EndedAt           *string            `json:"ended_at"`
	CreatedAt         string             `json:"created_at"`
	ExpiresAt         string             `json:"expires_at"`
	ArchivedAt        *string            `json:"archived_at"`
	CancelInitiatedAt *string            `json:"cancel_initiated_at"`
	ResultsURL        *string            `json:"results_url"`
}

// BatchRequestCounts tallies a batch's requests. Every request counts as processing
// until the whole batch ends; the five always add up to the batch's size.
type BatchRequestCounts struct {
	Processing int64 `json:"processing"`
	Succeeded  int64 `json:"succeeded"`
	Errored    int64 `json:"errored"`
	Canceled   int64 `json:"canceled"`
	Expired    int64 `json:"expired"`
}

// outcome is what validation decided for one request, should it be processed.
type outcome uint8

const (
	outValid   outcome = iota // succeeds
	outInvalid                // errored with the params' validation error
	outFailed                 // errored with a retryable api_error (BatchItemErrorRate)
)

// batch is one Message Batch. Fields below mu-guarded are read and written with the
// engine's mu held; the others are set before the batch is shared and then only read
// (archiving drops them under mu).
type batch struct {
	id      string
	version string // anthropic-version of the create call: its parse options apply
	created time.Time
	expires time.Time
	size    int64
	// orderSeed seeds the results' order (a hash of the custom_ids).
	orderSeed uint64
	// idSeed seeds the ids inside results (message, tool_use, request ids) so they are
	// the same at every download.
	idSeed uint64

	items    []batchItem
	outcomes []outcome
	errs     map[int32]*wire.Error // outInvalid items: prepare's error
	cache    map[int32]cacheUsage  // valid items with prompt-cache activity

	// mu-guarded
	status      string
	done        int       // requests processed: items[:done]
	cancelAt    time.Time // cancel_initiated_at (zero: not canceled)
	dueAt       time.Time // when processing was over (zero: still processing)
	due         bool      // in engine.pending, waiting to end
	unprocessed string    // what items[done:] become: "canceled" or "expired"
	endedAt     time.Time
	counts      BatchRequestCounts
}

// batchEngine runs every batch of one Server.
type batchEngine struct {
	s         *Server
	rate      float64 // requests per emulator second; 0 processes nothing
	retention time.Duration
	limit     batchLimits

	mu      sync.Mutex
	byID    map[string]*batch
	order   []*batch // oldest first
	active  []*batch // the processing queue: in_progress batches with unprocessed requests
	pending []*batch // processing over, waiting for dueAt (the cancel grace)
	queued  int64    // unprocessed requests in active batches
	cursor  time.Time
	credit  float64 // fraction of a request carried between steps
	lastNow time.Time
	stopped bool

	rpmMu sync.Mutex
	rpm   *bucket // nil: no batch RPM limit

	wakeCh    chan struct{}
	quit      chan struct{}
	startOnce sync.Once
	stopOnce  sync.Once
	wg        sync.WaitGroup
}

type batchLimits struct {
	rpm, queue, maxRequests int64
}

func newBatchEngine(s *Server) *batchEngine {
	e := &batchEngine{
		s:         s,
		rate:      math.Max(0, s.cfg.BatchProcessingRate),
		retention: s.cfg.BatchRetention,
		byID:      make(map[string]*batch),
		wakeCh:    make(chan struct{}, 1),
		quit:      make(chan struct{}),
	}
	e.limit.maxRequests = defaultBatchMaxRequests
	if bl := s.tier.Batch; bl != nil {
		e.limit = batchLimits{rpm: bl.RPM, queue: bl.Queue, maxRequests: bl.MaxRequests}
		if e.limit.maxRequests <= 0 {
			e.limit.maxRequests = defaultBatchMaxRequests
		}
	}
	if e.limit.rpm > 0 {
		b := newBucket(e.limit.rpm, s.cfg.BurstFraction, s.cfg.Now())
		e.rpm = &b
	}
	e.cursor = e.now()
	return e
}

// now is the emulator clock to the microsecond (the API's timestamp precision),
// never going backwards. Call with mu held (or before the engine is shared).
func (e *batchEngine) now() time.Time {
	t := e.s.clock.Now().Round(0).Truncate(time.Microsecond)
	if t.Before(e.lastNow) {
		return e.lastNow
	}
	e.lastNow = t
	return t
}

// wake makes the engine re-check its batches (after the clock moved).
func (e *batchEngine) wake() {
	select {
	case e.wakeCh <- struct{}{}:
	default:
	}
}

// start launches the engine's background work; stop ends it and waits.
func (e *batchEngine) start() {
	e.startOnce.Do(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.stopped {
			return
		}
		e.wg.Add(1)
		go e.run()
	})
}

func (e *batchEngine) stop() {
	e.stopOnce.Do(func() {
		e.mu.Lock()
		e.stopped = true
		e.mu.Unlock()
		close(e.quit)
	})
	e.wg.Wait()
}

// run advances the simulation at each predicted event (a batch finishing, expiring or
// ending its cancel grace) so batches end without a client asking.
func (e *batchEngine) run() {
	defer e.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		e.mu.Lock()
		now := e.now()
		e.advance(now)
		next, ok := e.nextEvent()
		e.mu.Unlock()
		d := time.Minute
		if ok {
			d = min(max(e.s.clock.RealDuration(next.Sub(now)), time.Millisecond), time.Minute)
		}
		t.Reset(d)
		select {
		case <-t.C:
		case <-e.wakeCh:
		case <-e.quit:
			return
		}
	}
}

// nextEvent is the earliest emulator time at which the state changes by itself.
func (e *batchEngine) nextEvent() (time.Time, bool) {
	var next time.Time
	take := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if len(e.active) > 0 {
		head := e.active[0]
		if e.rate > 0 {
			secs := (float64(len(head.items)-head.done) - e.credit) / e.rate
			if secs < float64(batchExpiry/time.Second) {
				take(e.cursor.Add(durationOf(secs)))
			}
		}
		for _, b := range e.active {
			take(b.expires)
		}
	}
	for _, b := range e.pending {
		take(b.dueAt)
	}
	return next, !next.IsZero()
}

// durationOf converts seconds to a Duration, saturating instead of overflowing.
func durationOf(secs float64) time.Duration {
	if secs <= 0 {
		return 0
	}
	if secs > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(secs * float64(time.Second))
}

// advance simulates the queue up to now, then ends every batch that is due. mu held.
func (e *batchEngine) advance(now time.Time) {
	for len(e.active) > 0 && now.After(e.cursor) {
		exp := e.active[0].expires
		for _, b := range e.active[1:] {
			if b.expires.Before(exp) {
				exp = b.expires
			}
		}
		segEnd := now
		if exp.Before(segEnd) {
			segEnd = exp
		}
		if segEnd.Before(e.cursor) {
			segEnd = e.cursor
		}
		avail := e.credit + segEnd.Sub(e.cursor).Seconds()*e.rate
		used := 0.0
		for len(e.active) > 0 && avail-used >= 1 {
			b := e.active[0]
			rem := len(b.items) - b.done
			k := rem
			if f := math.Floor(avail - used); f < float64(rem) {
				k = int(f)
			}
			b.done += k
			used += float64(k)
			e.queued -= int64(k)
			if b.done < len(b.items) {
				break
			}
			// The last request finished when the capacity reached used.
			at := e.cursor.Add(durationOf((used - e.credit) / e.rate))
			if at.After(segEnd) {
				at = segEnd
			}
			e.active = e.active[1:]
			e.markDue(b, at, "")
		}
		if len(e.active) == 0 {
			break
		}
		e.credit = avail - used
		e.cursor = segEnd
		if !segEnd.Before(exp) {
			kept := e.active[:0]
			for _, b := range e.active {
				if b.expires.After(segEnd) {
					kept = append(kept, b)
					continue
				}
				e.queued -= int64(len(b.items) - b.done)
				e.markDue(b, b.expires, "expired")
			}
			clear(e.active[len(kept):])
			e.active = kept
		}
	}
	if len(e.active) == 0 && now.After(e.cursor) {
		// Idle capacity is not banked.
		e.cursor, e.credit = now, 0
	}
	e.endDue(now)
}

// markDue records that b's processing is over at at; unprocessed says what its
// remaining requests become.
func (e *batchEngine) markDue(b *batch, at time.Time, unprocessed string) {
	b.dueAt = at
	b.unprocessed = unprocessed
	if !b.due {
		b.due = true
		e.pending = append(e.pending, b)
	}
}

// endDue ends the pending batches that are due by now. mu held.
func (e *batchEngine) endDue(now time.Time) {
	kept := e.pending[:0]
	for _, b := range e.pending {
		if now.Before(b.dueAt) {
			kept = append(kept, b)
			continue
		}
		e.end(b)
	}
	clear(e.pending[len(kept):])
	e.pending = kept
}

// end moves b to ended and fills its final counts. mu held.
func (e *batchEngine) end(b *batch) {
	b.due = false
	b.status = batchEnded
	b.endedAt = b.dueAt
	var c BatchRequestCounts
	for _, o := range b.outcomes[:b.done] {
		if o == outValid {
			c.Succeeded++
		} else {
			c.Errored++
		}
	}
	rest := int64(len(b.items) - b.done)
	if b.unprocessed == "canceled" {
		c.Canceled = rest
	} else {
		c.Expired = rest
	}
	b.counts = c
	e.s.log.Info("batch ended", "batch_id", b.id, "succeeded", c.Succeeded, "errored", c.Errored,
		"canceled", c.Canceled, "expired", c.Expired)
}

// removeActive takes b out of the processing queue (it was canceled). mu held.
func (e *batchEngine) removeActive(b *batch) {
	if i := slices.Index(e.active, b); i >= 0 {
		e.queued -= int64(len(b.items) - b.done)
		e.active = slices.Delete(e.active, i, i+1)
	}
}

// retentionText says a retention the way the API's message does ("29 days").
func retentionText(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + " days"
	}
	return d.String()
}

// archived reports whether b's results have been archived at now, and drops what only
// the results needed. mu held.
func (e *batchEngine) archived(b *batch, now time.Time) bool {
	if now.Before(b.created.Add(e.retention)) {
		return false
	}
	if b.status == batchEnded && b.items != nil {
		b.items, b.outcomes, b.errs, b.cache = nil, nil, nil, nil
	}
	return true
}

// judge decides every request's outcome: what s.prepare says of its params under the
// create call's API version, then BatchItemErrorRate. It runs in the create call,
// spread over GOMAXPROCS goroutines; the prompt-cache lookups, whose answers depend on
// order, then run one by one in request order.
func (s *Server) judge(b *batch) {
	opt := s.parseOptions(b.version, nil, false)
	n := len(b.items)
	b.outcomes = make([]outcome, n)
	type cached struct {
		i     int
		input cacheprefix.Scan
		min   int64
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), n/512))
	errs := make([]map[int32]*wire.Error, workers)
	caches := make([][]cached, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				it := &b.items[i]
				p, werr := s.prepareBatchItem(it.params, opt)
				switch {
				case werr != nil:
					b.outcomes[i] = outInvalid
					if errs[w] == nil {
						errs[w] = make(map[int32]*wire.Error)
					}
					errs[w][int32(i)] = werr
				case s.cfg.BatchItemErrorRate > 0 && itemRoll(s.cfg.Seed, it) < s.cfg.BatchItemErrorRate:
					b.outcomes[i] = outFailed
				default:
					b.outcomes[i] = outValid
					if len(p.input.Breakpoints) > 0 {
						caches[w] = append(caches[w], cached{i, p.input, p.class.MinCacheTokens})
					}
				}
			}
		})
	}
	wg.Wait()
	for _, m := range errs {
		for i, e := range m {
			if b.errs == nil {
				b.errs = make(map[int32]*wire.Error)
			}
			b.errs[i] = e
		}
	}
	// The prompt cache is consulted once per request, in request order, in groups
	// of Config.BatchCacheGroup consecutive requests processed together: a write is
	// read by the later groups, not by its own group's other requests (the API's
	// batch caching is best effort: it processes requests concurrently). The
	// answer is kept so every download reports the same usage. Chunks are
	// contiguous and in order, so this is request order.
	group := int32(s.cfg.BatchCacheGroup)
	var reqs []cacheLookup
	var idx []int32
	var out []cacheUsage
	flush := func() {
		if len(reqs) == 0 {
			return
		}
		out = slices.Grow(out[:0], len(reqs))[:len(reqs)]
		s.cache.storeGroup(reqs, s.cfg.Now(), out)
		for k, cu := range out {
			if cu.read != 0 || cu.write5m != 0 || cu.write1h != 0 || cu.uncached != reqs[k].input.Total {
				if b.cache == nil {
					b.cache = make(map[int32]cacheUsage)
				}
				b.cache[idx[k]] = cu
			}
		}
		reqs, idx = reqs[:0], idx[:0]
	}
	for _, cs := range caches {
		for _, c := range cs {
			if len(idx) > 0 && idx[0]/group != int32(c.i)/group {
				flush()
			}
			reqs = append(reqs, cacheLookup{c.input, c.min})
			idx = append(idx, int32(c.i))
		}
	}
	flush()
}

// prepareBatchItem is s.prepare plus the batch-only rule: no streaming.
func (s *Server) prepareBatchItem(params []byte, opt wire.ParseOptions) (*prepared, *wire.Error) {
	p, werr := s.prepare(params, opt)
	if werr != nil {
		return nil, werr
	}
	if p.req.Stream {
		return nil, wire.Errorf(wire.InvalidRequest, "stream: Streaming is not supported in the Message Batches API")
	}
	return p, nil
}

// itemRoll is a uniform number in [0, 1) fixed by the seed and the request, deciding
// BatchItemErrorRate failures deterministically.
func itemRoll(seed int64, it *batchItem) float64 {
	h := fnv.New64a()
	var sb [8]byte
	for i := range sb {
		sb[i] = byte(uint64(seed) >> (8 * i))
	}
	h.Write(sb[:])
	h.Write([]byte(it.customID))
	h.Write([]byte{0})
	h.Write(it.params)
	return float64(h.Sum64()>>11) / (1 << 53)
}

// derivedID is an id shaped like newID's, fixed by (seed, n).
func derivedID(prefix string, seed, n uint64) string {
	rng := rand.New(rand.NewPCG(seed, n))
	var b [24]byte
	b[0], b[1] = '0', '1'
	for i := 2; i < len(b); i++ {
		b[i] = base62[rng.IntN(62)]
	}
	return prefix + string(b[:])
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// view is b's API object at now. mu held.
func (e *batchEngine) view(b *batch, now time.Time, base string) MessageBatch {
	v := MessageBatch{
		ID: b.id, Type: "message_batch", ProcessingStatus: b.status,
		CreatedAt: batchTime(b.created), ExpiresAt: batchTime(b.expires),
	}
	if b.status == batchEnded {
		v.RequestCounts = b.counts
		v.EndedAt = ptr(batchTime(b.endedAt))
		v.ResultsURL = ptr(base + "/v1/messages/batches/" + b.id + "/results")
	} else {
		v.RequestCounts.Processing = b.size
	}
	if !b.cancelAt.IsZero() {
		v.CancelInitiatedAt = ptr(batchTime(b.cancelAt))
	}
	if e.archived(b, now) {
		v.ArchivedAt = ptr(batchTime(b.created.Add(e.retention)))
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// batchTime formats t as the API does: RFC 3339, microseconds, Z.
func batchTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

// resultsBase is the absolute base of results_url: Config.BaseURL, else the host the
// client reached (the SDKs that follow results_url must land on this emulator).
func (s *Server) resultsBase(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimRight(s.cfg.BaseURL, "/")
	}
	host := r.Host
	if host == "" {
		host = "localhost"
	}
	return "http://" + host
}

// admitBatchRPM takes one request from the batch RPM bucket or writes a 429
// rate_limit_error with retry-after and reports false. Every call to a batch endpoint
// counts, whatever its outcome (404s and 400s too): the limit is applied before the
// request is looked at. The bucket refills continuously in real time, like the
// Messages buckets, with capacity RPM × Config.BurstFraction.
func (s *Server) admitBatchRPM(w http.ResponseWriter, c *call) bool {
	e := s.batches
	if e.rpm == nil {
		return true
	}
	now := s.cfg.Now()
	e.rpmMu.Lock()
	e.rpm.refill(now)
	wait := e.rpm.wait(1)
	if wait == 0 {
		e.rpm.level--
	}
	e.rpmMu.Unlock()
	if wait == 0 {
		return true
	}
	w.Header().Set("retry-after", strconv.FormatInt(retryAfterSeconds(wait), 10))
	s.writeError(w, c.requestID, wire.Errorf(wire.RateLimit,
		"This request would exceed the rate limit for your organization (%s) of %s Message Batches API requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. Please try again later.",
		s.cfg.OrganizationID, commas(e.limit.rpm)))
	return false
}

// batchPreamble is what every batch endpoint does first: the batch RPM limit, then the
// fault model. It reports whether to go on.
func (s *Server) batchPreamble(w http.ResponseWriter, r *http.Request, c *call) bool {
	if !s.admitBatchRPM(w, c) {
		return false
	}
	return !s.injectFault(w, r, c)
}

func notFoundBatch(id string) *wire.Error {
	return wire.Errorf(wire.NotFound, "message_batch: %s not found", id)
}
