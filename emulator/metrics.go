package emulator

// Prometheus metrics and the per-request log line.
//
// Every label takes its values from a closed set: the endpoint names of endpointName,
// HTTP status codes the emulator writes, model classes from the catalog (never a model
// string from a request), the three limits and the wire error types. Nothing that
// identifies a key, a prompt or a completion is ever a label or a log attribute.
//
// The hot path is cheap: label children are resolved once and kept in fixed tables
// indexed by small integers, so an observation is a few array reads and atomic adds.
// Bucket levels are read from the limiter only when /metrics is scraped.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names. All carry the clade_emulator_ prefix; units are in the name or, for
// bucket levels, in the limit label (requests or tokens).
const (
	metricResponses   = "clade_emulator_responses_total"
	metricDuration    = "clade_emulator_request_duration_seconds"
	metricTokens      = "clade_emulator_tokens_total"
	metricRateLimited = "clade_emulator_rate_limited_total"
	metricErrors      = "clade_emulator_errors_total"
	metricOverloaded  = "clade_emulator_overloaded_total"
	metricRemaining   = "clade_emulator_ratelimit_remaining"
	metricCapacity    = "clade_emulator_ratelimit_capacity"
	metricLimitPerMin = "clade_emulator_ratelimit_limit_per_minute"
	noClass           = "none"  // label value when a request named no (known) model
	otherValue        = "other" // label value for anything outside a closed set
)

// Closed label sets, in index order.
var (
	endpointNames = [...]string{"messages", "count_tokens", "batches", "models", otherValue}
	statusCodes   = [...]int{200, 400, 401, 402, 403, 404, 405, 408, 409, 413, 429, 500, 503, 504, 529}
	limitNames    = [...]string{"requests", "input_tokens", "output_tokens"}
	directions    = [...]string{"input", "output", "cache_read", "cache_write"}
	errorTypes    = [...]string{
		wire.InvalidRequest, wire.Authentication, wire.Billing, wire.Permission, wire.NotFound,
		wire.Conflict, wire.RequestTooLarge, wire.RateLimit, wire.APIError, wire.Timeout,
		wire.Overloaded,
	}
)

// durationBuckets spans an instant reply with latency off (about a millisecond) to a
// long generation at 40 tokens/s (minutes).
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// metrics holds the emulator's collectors and the pre-resolved label children.
type metrics struct {
	responses   *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	tokens      *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	errorsByTyp *prometheus.CounterVec
	overloaded  prometheus.Counter

	// classes maps a model class to its index; index 0 is noClass and the last is
	// otherValue. Written once by watch (in New, before serving), then only read.
	classes    map[string]int
	classNames []string

	// Lazily filled child tables, indexed [endpoint][status][class] and so on. A nil
	// slot is resolved on first use; racing resolvers store the same child.
	respSlots []atomic.Pointer[responseChildren]
	tokSlots  []atomic.Pointer[tokenChildren]
	rlSlots   []atomic.Pointer[prometheus.Counter]
	errByType map[string]prometheus.Counter
	errOther  prometheus.Counter
}

type responseChildren struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

type tokenChildren struct {
	in, out, cacheRead, cacheWrite prometheus.Counter
}

// newMetrics creates the collectors and registers them on reg. Registering on a
// registry that already holds them (two servers, one registry) reuses the existing
// collectors, so their counts add up.
func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		responses: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricResponses,
			Help: "API responses by endpoint, HTTP status code and model class (none: the request named no known model).",
		}, []string{"endpoint", "code", "class"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricDuration,
			Help:    "Time from receiving an API request to the end of its response (the whole stream for SSE), by endpoint and model class.",
			Buckets: durationBuckets,
		}, []string{"endpoint", "class"})),
		tokens: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricTokens,
			Help: "Tokens of admitted Messages requests by model class and direction: input (uncached input_tokens), output, cache_read, cache_write.",
		}, []string{"class", "direction"})),
		rateLimited: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricRateLimited,
			Help: "Requests refused with 429 rate_limit_error by the rate-limit buckets, by model class and the limit that refused (requests, input_tokens, output_tokens).",
		}, []string{"class", "limit"})),
		errorsByTyp: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricErrors,
			Help: "Errors sent, as a response or a mid-stream SSE error event, by error type.",
		}, []string{"type"})),
		overloaded: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: metricOverloaded,
			Help: "overloaded_error (529) errors sent, as a response or a mid-stream SSE error event.",
		})),
	}
	m.errByType = make(map[string]prometheus.Counter, len(errorTypes))
	for _, t := range errorTypes {
		m.errByType[t] = m.errorsByTyp.WithLabelValues(t)
	}
	m.errOther = m.errorsByTyp.WithLabelValues(otherValue)
	m.setClasses(nil)
	return m
}

// register registers c on reg, or returns the collector already registered under the
// same descriptors.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a name clash with a different metric: a programming error
	}
	return c
}

// watch binds the metrics to a server's catalog and limiter: it fixes the closed set
// of class labels and registers the bucket gauges, read at scrape time. New calls it
// once, before the server handles any request.
func (m *metrics) watch(reg *prometheus.Registry, cat *catalog.Catalog, l *limiter, now func() time.Time) {
	names := make([]string, 0, len(cat.Classes))
	for name := range cat.Classes {
		names = append(names, name)
	}
	m.setClasses(names)
	bc := &bucketCollector{cat: cat, limits: l, now: now}
	if err := reg.Register(bc); err != nil {
		// Another server already reports buckets on this registry; two sets of the
		// same series cannot be gathered, so this one's stay unreported.
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(err)
		}
	}
}

func (m *metrics) setClasses(names []string) {
	m.classNames = append([]string{noClass}, names...)
	m.classNames = append(m.classNames, otherValue)
	m.classes = make(map[string]int, len(m.classNames))
	for i, n := range m.classNames {
		m.classes[n] = i
	}
	m.classes[""] = 0
	nc := len(m.classNames)
	m.respSlots = make([]atomic.Pointer[responseChildren], len(endpointNames)*(len(statusCodes)+1)*nc)
	m.tokSlots = make([]atomic.Pointer[tokenChildren], nc)
	m.rlSlots = make([]atomic.Pointer[prometheus.Counter], nc*(len(limitNames)+1))
}

func (m *metrics) classIndex(class string) int {
	if i, ok := m.classes[class]; ok {
		return i
	}
	return len(m.classNames) - 1 // other
}

func endpointIndex(endpoint string) int {
	for i, e := range endpointNames {
		if e == endpoint {
			return i
		}
	}
	return len(endpointNames) - 1 // other
}

// statusIndex returns the index of code in statusCodes, or len(statusCodes) for any
// other code (labelled with its number, still bounded: the emulator writes only
// codes it chooses).
func statusIndex(code int) int {
	for i, c := range statusCodes {
		if c == code {
			return i
		}
	}
	return len(statusCodes)
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// observeResponse records one API response: its count and its duration.
func (m *metrics) observeResponse(endpoint, class string, status int, d time.Duration) {
	ei, si, ci := endpointIndex(endpoint), statusIndex(status), m.classIndex(class)
	slot := &m.respSlots[(ei*(len(statusCodes)+1)+si)*len(m.classNames)+ci]
	ch := slot.Load()
	if ch == nil {
		code := strconv.Itoa(status)
		if si < len(statusCodes) {
			code = strconv.Itoa(statusCodes[si])
		}
		ch = &responseChildren{
			count:    m.responses.WithLabelValues(endpointNames[ei], code, m.classNames[ci]),
			duration: m.duration.WithLabelValues(endpointNames[ei], m.classNames[ci]),
		}
		slot.Store(ch)
	}
	ch.count.Inc()
	ch.duration.Observe(d.Seconds())
}

// observeError records an error sent, as a response or a mid-stream event, by type.
func (m *metrics) observeError(e *wire.Error) {
	if e == nil {
		return
	}
	if c, ok := m.errByType[e.Type]; ok {
		c.Inc()
	} else {
		m.errOther.Inc()
	}
	if e.Type == wire.Overloaded || e.Status == 529 {
		m.overloaded.Inc()
	}
}

// observeTokens records the usage of one admitted Messages request for a model class.
func (m *metrics) observeTokens(class string, input, output, cacheRead, cacheWrite int64) {
	ci := m.classIndex(class)
	ch := m.tokSlots[ci].Load()
	if ch == nil {
		cn := m.classNames[ci]
		ch = &tokenChildren{
			in:         m.tokens.WithLabelValues(cn, directions[0]),
			out:        m.tokens.WithLabelValues(cn, directions[1]),
			cacheRead:  m.tokens.WithLabelValues(cn, directions[2]),
			cacheWrite: m.tokens.WithLabelValues(cn, directions[3]),
		}
		m.tokSlots[ci].Store(ch)
	}
	ch.in.Add(float64(input))
	ch.out.Add(float64(output))
	if cacheRead != 0 {
		ch.cacheRead.Add(float64(cacheRead))
	}
	if cacheWrite != 0 {
		ch.cacheWrite.Add(float64(cacheWrite))
	}
}

// observeRateLimited records a 429 from the buckets for a class and the limit that
// refused ("requests", "input_tokens" or "output_tokens").
func (m *metrics) observeRateLimited(class, limit string) {
	li := len(limitNames)
	for i, n := range limitNames {
		if n == limit {
			li = i
		}
	}
	ci := m.classIndex(class)
	slot := &m.rlSlots[ci*(len(limitNames)+1)+li]
	c := slot.Load()
	if c == nil {
		ln := otherValue
		if li < len(limitNames) {
			ln = limitNames[li]
		}
		cnt := m.rateLimited.WithLabelValues(m.classNames[ci], ln)
		c = &cnt
		slot.Store(c)
	}
	(*c).Inc()
}

// bucketCollector reports every catalog class's rate-limit buckets at scrape time.
type bucketCollector struct {
	cat    *catalog.Catalog
	limits *limiter
	now    func() time.Time
}

var (
	descRemaining = prometheus.NewDesc(metricRemaining,
		"Rate-limit bucket level by model class and limit, in requests or tokens; negative while a request that used more than was admitted is paid back.",
		[]string{"class", "limit"}, nil)
	descCapacity = prometheus.NewDesc(metricCapacity,
		"Most a rate-limit bucket holds (the per-minute limit times the burst fraction), in requests or tokens.",
		[]string{"class", "limit"}, nil)
	descLimit = prometheus.NewDesc(metricLimitPerMin,
		"The tier's per-minute limit for a model class, in requests or tokens per minute.",
		[]string{"class", "limit"}, nil)
)

func (b *bucketCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRemaining
	ch <- descCapacity
	ch <- descLimit
}

func (b *bucketCollector) Collect(ch chan<- prometheus.Metric) {
	now := b.now()
	for class := range b.cat.Classes {
		s := b.limits.snapshot(class, now)
		for i, bk := range [...]bucket{s.req, s.in, s.out} {
			ch <- prometheus.MustNewConstMetric(descRemaining, prometheus.GaugeValue, bk.level, class, limitNames[i])
			ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, bk.capacity, class, limitNames[i])
			ch <- prometheus.MustNewConstMetric(descLimit, prometheus.GaugeValue, bk.limit, class, limitNames[i])
		}
	}
}

// logRequest writes the one Debug line per API request. It names the model class,
// never the model string, the key, the prompt or the completion.
func (s *Server) logRequest(ctx context.Context, c *call, status int, d time.Duration) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	class := c.class
	if class == "" {
		class = noClass
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "api request",
		slog.String("request_id", c.requestID),
		slog.String("endpoint", c.endpoint),
		slog.Int("status", status),
		slog.String("model_class", class),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
	)
}
