package hybrid_test

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/dashboard"
	"github.com/clade-dev/clade/internal/hybrid"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestHybridDashboard runs a hybrid run that spills to realtime (as
// TestHybridSpillsToRealtime) with one dashboard feed given to both modes, as
// clade run --dashboard does: the dashboard shows the batches' progress first,
// then the realtime display's (which counts the whole run), to its last line.
func TestHybridDashboard(t *testing.T) {
	const n = 100
	e := setup(t, n, emulator.Config{Tier: "tier-4", BatchProcessingRate: 2, ClockSpeed: 2})
	var progress testkit.Buffer
	cfg := e.config(time.Now().Add(12*time.Second), &progress)
	cfg.Batch.MaxRequests = 34
	cfg.Slack = 3 * time.Second
	feed := &dashboard.Feed{}
	cfg.Realtime.Spec.Progress = &progress
	cfg.Realtime.Spec.Dashboard, cfg.Batch.Spec.Dashboard = feed, feed
	d, err := dashboard.New(dashboard.Config{Source: feed, Every: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.Run(ctx) })
	sum, err := hybrid.Run(context.Background(), cfg)
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	if !sum.Spilled {
		t.Fatalf("the run did not spill to realtime: the test saw only the batches\n%s", progress.String())
	}
	last := d.Record(context.Background(), time.Now())
	var batchSeen, realtimeSeen bool
	for _, s := range d.Samples(0) {
		if p := s.Progress; p != nil {
			batchSeen = batchSeen || (p.Mode == "batch" && p.Total == n)
			realtimeSeen = realtimeSeen || (p.Mode == "realtime" && p.Total == n)
			if p.Mode == "batch" && realtimeSeen {
				t.Errorf("sample %d at %s: the batches' progress after the realtime display's", s.Seq, s.At)
			}
		}
	}
	if !batchSeen || !realtimeSeen {
		t.Errorf("samples: the batches' progress %v, the realtime display's %v; want both", batchSeen, realtimeSeen)
	}
	// The dashboard shows what the display shows: its last line's done/total.
	lines := regexp.MustCompile(`(?m)^(\d+)/(\d+) \(`).FindAllStringSubmatch(progress.String(), -1)
	if len(lines) == 0 {
		t.Fatalf("the realtime display drew no line:\n%s", progress.String())
	}
	want := lines[len(lines)-1][1] + "/" + lines[len(lines)-1][2]
	if p := last.Progress; p == nil || p.Mode != "realtime" || fmt.Sprintf("%d/%d", p.Done, p.Total) != want {
		t.Errorf("last sample progress %+v, want the realtime display's last %s\n%s", p, want, progress.String())
	}
}
