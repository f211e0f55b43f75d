package batch

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/internal/jobs"
)

// collector exports a run's progress as Prometheus metrics. The numbers are read
// from the store at each scrape (the store is authoritative, and another process
// may have written results), and from the dispatcher's counters.
type collector struct{ d *dispatcher }

var (
	descRequests = prometheus.NewDesc("clade_batch_requests",
		"Requests of the run by state: succeeded, errored, expired, canceled (results), in_flight (in open batches), waiting (for a batch).",
		[]string{"state"}, nil)
	descTokens = prometheus.NewDesc("clade_batch_tokens",
		"Tokens of the run's results, by direction (input includes cache reads and writes).", []string{"direction"}, nil)
	descCost = prometheus.NewDesc("clade_batch_cost_usd",
		"Cost of the run's results at batch prices, in USD.", nil, nil)
	descCreated = prometheus.NewDesc("clade_batch_batches_created_total",
		"Message Batches this process created (or adopted).", nil, nil)
	descResubmitted = prometheus.NewDesc("clade_batch_resubmitted_total",
		"Requests this process sent to a later batch (expired, canceled, retryably errored).", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descTokens, descCost, descCreated, descResubmitted} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descCreated, prometheus.CounterValue, float64(c.d.batches.Load()))
	ch <- prometheus.MustNewConstMetric(descResubmitted, prometheus.CounterValue, float64(c.d.resubmitted.Load()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.d.cfg.Store.Status(ctx, c.d.runID)
	if err != nil {
		return
	}
	inFlight, err := c.d.cfg.Store.OpenBatchRequests(ctx, c.d.runID)
	if err != nil {
		return
	}
	for _, t := range []jobs.ResultType{jobs.Succeeded, jobs.Errored, jobs.Expired, jobs.Canceled} {
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.GaugeValue, float64(st.Results[t]), string(t))
	}
	ch <- prometheus.MustNewConstMetric(descRequests, prometheus.GaugeValue, float64(inFlight), "in_flight")
	ch <- prometheus.MustNewConstMetric(descRequests, prometheus.GaugeValue, float64(max(st.Pending-inFlight, 0)), "waiting")
	in := st.Usage.InputTokens + st.Usage.CacheWrite5mTokens + st.Usage.CacheWrite1hTokens + st.Usage.CacheReadTokens
	ch <- prometheus.MustNewConstMetric(descTokens, prometheus.GaugeValue, float64(in), "input")
	ch <- prometheus.MustNewConstMetric(descTokens, prometheus.GaugeValue, float64(st.Usage.OutputTokens), "output")
	ch <- prometheus.MustNewConstMetric(descCost, prometheus.GaugeValue, st.CostUSD)
}
