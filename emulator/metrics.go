package emulator

// STUB: replaced by the metrics implementation. Keeps the package compiling.

import (
	"net/http"
	"time"

	"github.com/clade-dev/clade/internal/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct{}

func newMetrics(reg *prometheus.Registry) *metrics { return &metrics{} }

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// observeResponse records one API response.
func (m *metrics) observeResponse(endpoint, class string, status int, d time.Duration) {}

// observeError records an error response by type.
func (m *metrics) observeError(e *wire.Error) {}

// observeTokens records the usage of one Messages response for a model class.
func (m *metrics) observeTokens(class string, input, output, cacheRead, cacheWrite int64) {}

// observeRateLimited records a 429 for a class and the limit that refused.
func (m *metrics) observeRateLimited(class, limit string) {}
