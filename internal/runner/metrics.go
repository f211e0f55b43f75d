package runner

import "github.com/prometheus/client_golang/prometheus"

// metrics are the run's Prometheus metrics; label values come from closed sets.
type metrics struct {
	results     *prometheus.CounterVec
	tokens      *prometheus.CounterVec
	rateLimited prometheus.Counter
	overloaded  prometheus.Counter
	cost        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clade_run_results_total", Help: "Results written, by type (succeeded, errored).",
		}, []string{"type"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clade_tokens_total", Help: "Tokens used by succeeded requests, by direction (input includes cache reads and writes).",
		}, []string{"direction"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clade_upstream_rate_limited_total", Help: "Responses with status 429.",
		}),
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clade_upstream_overloaded_total", Help: "Responses with status 529.",
		}),
		cost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clade_cost_usd_total", Help: "Cost of succeeded requests at realtime prices, in USD.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.results, m.tokens, m.rateLimited, m.overloaded, m.cost)
	}
	return m
}
