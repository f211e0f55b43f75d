package jobs_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/spend"
)

// TestStoreBatchHolds: a hold is listed and summed per scope; a batch id is held
// once; ten settles of one hold from two handles (two gateways) at once claim it
// once, the cost added once to each scope, in every period; a release adds nothing.
func TestStoreBatchHolds(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dsn := b.NewDSN(t)
			s1 := jobstest.Open(t, ctx, dsn)
			s2 := jobstest.Open(t, ctx, dsn)
			at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
			for _, h := range []jobs.BatchHold{
				{BatchID: "msgbatch_a", Scopes: []string{"team:a", "key:k1"}, Worst: 7000, Created: at},
				{BatchID: "msgbatch_b", Scopes: []string{"team:a"}, Worst: 500, Created: at.Add(time.Second)},
			} {
				if err := s1.AddBatchHold(ctx, h); err != nil {
					t.Fatal(err)
				}
			}
			if err := s2.AddBatchHold(ctx, jobs.BatchHold{BatchID: "msgbatch_a", Scopes: []string{"team:a"}, Worst: 1, Created: at}); err == nil {
				t.Error("a second hold of msgbatch_a was accepted")
			}
			if m, err := s2.BatchHeld(ctx, "team:a"); err != nil || m != 7500 {
				t.Errorf("BatchHeld(team:a) = %d, %v; want 7500", m, err)
			}
			var claimed atomic.Int64
			var wg sync.WaitGroup
			for i := range 10 {
				s := []*jobs.Store{s1, s2}[i%2]
				wg.Go(func() {
					ok, err := s.SettleBatchHold(ctx, "msgbatch_a", at, 1234)
					if err != nil {
						t.Errorf("SettleBatchHold: %v", err)
					}
					if ok {
						claimed.Add(1)
					}
				})
			}
			wg.Wait()
			if claimed.Load() != 1 {
				t.Errorf("%d settles claimed the hold, want 1", claimed.Load())
			}
			for _, scope := range []string{"team:a", "key:k1"} {
				for _, p := range jobs.Periods {
					if m, err := s1.SpendOf(ctx, scope, p, at); err != nil || m != spend.Micros(1234) {
						t.Errorf("SpendOf(%s, %s) = %d, %v; want 1234 once", scope, p, m, err)
					}
				}
			}
			if ok, err := s2.SettleBatchHold(ctx, "msgbatch_b", at, 0); err != nil || !ok {
				t.Errorf("release = %v, %v", ok, err)
			}
			holds, err := s1.BatchHolds(ctx)
			if err != nil || len(holds) != 0 {
				t.Errorf("holds left = %+v, %v", holds, err)
			}
			if m, _ := s1.SpendOf(ctx, "team:a", jobs.PeriodDay, at); m != 1234 {
				t.Errorf("after a release team:a spent %d, want 1234", m)
			}
		})
	}
}
