package bench_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/bench"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestRunGatewayMeasuresEveryTarget: one short rate, both modes, the three targets,
// the gateway with budgets and Redis-shared limits: every call answered, every
// point in the report.
func TestRunGatewayMeasuresEveryTarget(t *testing.T) {
	t.Parallel()
	rep, err := bench.RunGateway(context.Background(), bench.GatewayConfig{
		Rates: []float64{100}, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond,
		RedisURL: testkit.RedisURL(t), DB: t.TempDir() + "/spend.db",
	})
	if err != nil {
		t.Fatalf("RunGateway error: %v", err)
	}
	for _, mode := range []string{bench.ModeJSON, bench.ModeSSE} {
		for _, target := range []string{bench.TargetDirect, bench.TargetProxy, bench.TargetGateway} {
			p := rep.Point(target, mode, 100)
			if p == nil {
				t.Fatalf("report has no point for %s %s", target, mode)
			}
			if r := p.Result; r.Requests != 30 || r.Status[200] != 30 || r.Errors != 0 || r.Incomplete != 0 {
				t.Errorf("%s %s = %v, want 30 complete 200s", target, mode, r)
			}
		}
	}
	var b bytes.Buffer
	rep.WriteMarkdown(&b)
	if s := b.String(); !strings.Contains(s, "| 100 | sse | gateway |") || !strings.Contains(s, "shared through Redis") {
		t.Errorf("WriteMarkdown = %s, want the gateway's SSE row and the Redis limits", s)
	}
}
