package batch_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
)

// TestMetricsWhileRunning scrapes the run's metrics while batches are in flight:
// the request states add up to the input, and the counters count the batches.
func TestMetricsWhileRunning(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{BatchProcessingRate: 40})
	input := writeInput(t, e.dir, 40)
	reg := prometheus.NewRegistry()
	cfg := e.config(input, 10)
	cfg.QueueLimit = 20 // two batches of 10 at a time: the others wait
	cfg.Registry = reg
	done := make(chan error, 1)
	go func() {
		_, err := batch.Run(context.Background(), cfg)
		done <- err
	}()
	seen := false
	for deadline := time.Now().Add(20 * time.Second); !seen && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		states := map[string]float64{}
		var created float64
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch mf.GetName() {
				case "clade_batch_requests":
					states[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
				case "clade_batch_batches_created_total":
					created = m.GetCounter().GetValue()
				}
			}
		}
		if states["succeeded"] > 0 && states["waiting"] > 0 {
			seen = true
			var sum float64
			for _, v := range states {
				sum += v
			}
			if sum != 40 {
				t.Errorf("request states %v add up to %v, want 40", states, sum)
			}
			if created < 1 {
				t.Errorf("batches created = %v, want ≥ 1", created)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Error("never scraped a run with results and requests still waiting")
	}
}
