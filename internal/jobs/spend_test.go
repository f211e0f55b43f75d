package jobs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/spend"
)

func TestPeriodStart(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 19, 37, 0, 0, time.FixedZone("X", -8*3600)) // Thursday 03:37 UTC, Dec 3
	for _, tc := range []struct {
		period     string
		start, end time.Time
	}{
		{jobs.PeriodDay, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)},
		{jobs.PeriodWeek, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)},
		{jobs.PeriodMonth, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if got := jobs.PeriodStart(tc.period, at); !got.Equal(tc.start) || got.Location() != time.UTC {
			t.Errorf("PeriodStart(%s, %v) = %v, want %v", tc.period, at, got, tc.start)
		}
		if got := jobs.PeriodEnd(tc.period, at); !got.Equal(tc.end) {
			t.Errorf("PeriodEnd(%s, %v) = %v, want %v", tc.period, at, got, tc.end)
		}
	}
	// A Monday's week starts that day; a Sunday's the Monday before.
	mon := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	if got := jobs.PeriodStart(jobs.PeriodWeek, mon); !got.Equal(mon) {
		t.Errorf("PeriodStart(week, %v) = %v, want itself", mon, got)
	}
	if got := jobs.PeriodStart(jobs.PeriodWeek, mon.Add(-time.Second)); !got.Equal(mon.AddDate(0, 0, -7)) {
		t.Errorf("PeriodStart(week, Sunday 23:59:59) = %v, want %v", got, mon.AddDate(0, 0, -7))
	}
	if got := jobs.PeriodStart("year", at); !got.IsZero() {
		t.Errorf("PeriodStart(year) = %v, want zero", got)
	}
}

// TestStoreSpend: AddSpend adds to every period of every scope; SpendOf reads one
// period back; two handles on one store (two gateways) adding at once lose
// nothing; a new period starts from 0.
func TestStoreSpend(t *testing.T) {
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
			var wg sync.WaitGroup
			const n = 20
			for i := range n {
				s := []*jobs.Store{s1, s2}[i%2]
				wg.Go(func() {
					if err := s.AddSpend(ctx, []string{"team:a", "key:k1"}, at, 1500); err != nil {
						t.Errorf("AddSpend error = %v", err)
					}
				})
			}
			wg.Wait()
			for _, p := range jobs.Periods {
				for _, scope := range []string{"team:a", "key:k1"} {
					if got, err := s1.SpendOf(ctx, scope, p, at); err != nil || got != n*1500 {
						t.Errorf("SpendOf(%s, %s) = %v, %v, want %v", scope, p, got, err, spend.Micros(n*1500))
					}
				}
			}
			next := at.AddDate(0, 0, 1) // Friday: same week and month, a new day
			if err := s2.AddSpend(ctx, []string{"team:a"}, next, 7); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				period string
				want   spend.Micros
			}{{jobs.PeriodDay, 7}, {jobs.PeriodWeek, n*1500 + 7}, {jobs.PeriodMonth, n*1500 + 7}} {
				if got, err := s1.SpendOf(ctx, "team:a", tc.period, next); err != nil || got != tc.want {
					t.Errorf("SpendOf(team:a, %s, next day) = %v, %v, want %v", tc.period, got, err, tc.want)
				}
			}
			if got, _ := s1.SpendOf(ctx, "team:b", jobs.PeriodDay, at); got != 0 {
				t.Errorf("SpendOf(team:b) = %v, want 0", got)
			}
			if _, err := s1.SpendOf(ctx, "team:a", "year", at); err == nil {
				t.Error("SpendOf(year) = nil error, want one")
			}
			rows, err := s1.Spends(ctx, next)
			if err != nil || len(rows) != 5 { // team:a: day, week, month; key:k1: week, month (its day is the day before)
				t.Errorf("Spends(next) = %+v, %v, want 5 rows", rows, err)
			}
		})
	}
}
