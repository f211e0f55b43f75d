package serve

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names; every label takes values from a closed set: teams from the client-keys
// file (plus "none" for calls that named no valid key), the endpoint names below, the
// HTTP statuses the gateway writes (others as "other"), token directions, and the
// model classes of the catalog.
const (
	metricRequests   = "clade_serve_requests_total"
	metricQueueDepth = "clade_serve_queue_depth"
	metricQueueWait  = "clade_serve_queue_wait_seconds"
	metricTokens     = "clade_serve_tokens_total"
	metricUpstream   = "clade_serve_upstream_throttled_total"
	metricRetries    = "clade_serve_upstream_retries_total"
	metricInFlight   = "clade_serve_upstream_in_flight"
	teamNone         = "none"
)

// Endpoint label values.
const (
	epMessages    = "messages"
	epCountTokens = "count_tokens"
	epModels      = "models"
	epBatches     = "batches"
	epOther       = "other"
)

var knownStatus = map[int]bool{200: true, 400: true, 401: true, 402: true, 403: true, 404: true, 405: true, 408: true,
	409: true, 413: true, 429: true, 499: true, 500: true, 502: true, 503: true, 504: true, 529: true}

func statusLabel(code int) string {
	if knownStatus[code] {
		return strconv.Itoa(code)
	}
	if code >= 200 && code < 300 {
		return "2xx"
	}
	return "other"
}

type metrics struct {
	requests  *prometheus.CounterVec   // team, endpoint, code
	depth     *prometheus.GaugeVec     // team
	wait      *prometheus.HistogramVec // team
	tokens    *prometheus.CounterVec   // team, direction
	throttled *prometheus.CounterVec   // class, code (429, 529)
	retries   *prometheus.CounterVec   // reason
	inFlight  prometheus.Gauge
	// budgetRefused counts calls refused by a USD budget (402).
	budgetRefused prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRequests,
			Help: "Client calls answered by the gateway, by team, endpoint and HTTP status (499: the client left)."},
			[]string{"team", "endpoint", "code"}),
		depth: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricQueueDepth,
			Help: "Messages calls waiting for admission, by team."}, []string{"team"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricQueueWait,
			Help:    "Time Messages calls waited for admission (fair queue and rate limits), by team.",
			Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}},
			[]string{"team"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricTokens,
			Help: "Tokens of Messages responses relayed, by team and direction (input, output, cache_read, cache_write)."},
			[]string{"team", "direction"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricUpstream,
			Help: "Upstream 429 (rate_limit_error) and 529 (overloaded_error) responses, by model class and code."},
			[]string{"class", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRetries,
			Help: "Messages calls the gateway sent again after an upstream 429 or 529, by reason."},
			[]string{"reason"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: metricInFlight,
			Help: "Calls sent upstream and not yet finished."}),
		budgetRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "clade_serve_budget_refused_total",
			Help: "Messages calls refused with 402 billing_error because a team's or a key's USD budget had no room."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.depth, m.wait, m.tokens, m.throttled, m.retries, m.inFlight, m.budgetRefused)
	}
	return m
}
