package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clade-dev/clade/internal/spend"
)

// Spend periods: the budget windows of clade serve, each starting at a UTC
// boundary (PeriodStart).
const (
	PeriodDay   = "day"
	PeriodWeek  = "week"
	PeriodMonth = "month"
)

// Periods lists the spend periods, shortest first. AddSpend adds to each.
var Periods = []string{PeriodDay, PeriodWeek, PeriodMonth}

// PeriodStart returns the start of the period holding t, in UTC: midnight of t's
// day, of the Monday of its week (ISO weeks), or of the 1st of its month. It
// returns the zero time for an unknown period.
func PeriodStart(period string, t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	switch period {
	case PeriodDay:
		return day
	case PeriodWeek:
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	case PeriodMonth:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Time{}
}

// PeriodEnd returns when the period holding t ends (the next one starts), in
// UTC; the zero time for an unknown period.
func PeriodEnd(period string, t time.Time) time.Time {
	s := PeriodStart(period, t)
	switch period {
	case PeriodDay:
		return s.AddDate(0, 0, 1)
	case PeriodWeek:
		return s.AddDate(0, 0, 7)
	case PeriodMonth:
		return s.AddDate(0, 1, 0)
	}
	return time.Time{}
}

// SpendRow is one scope's spend in one period.
type SpendRow struct {
	Scope  string
	Period string
	Start  time.Time // UTC
	Spent  spend.Micros
}

// AddSpend adds micros to what every scope spent in every period holding at, in
// one transaction: all the sums move, or none. Scopes are names the caller
// chooses (clade serve: "team:NAME", "key:LABEL"); a scope given twice counts
// twice. Adding 0 or less does nothing.
func (s *Store) AddSpend(ctx context.Context, scopes []string, at time.Time, micros spend.Micros) (err error) {
	if micros <= 0 || len(scopes) == 0 {
		return nil
	}
	tx, err := s.b.begin(ctx)
	if err != nil {
		return fmt.Errorf("add spend: %w", err)
	}
	defer func() {
		if err != nil {
			tx.rollback(context.WithoutCancel(ctx))
		}
	}()
	for _, scope := range scopes {
		if scope == "" {
			return errors.New("add spend: empty scope")
		}
		for _, p := range Periods {
			if _, err := tx.exec(ctx, `INSERT INTO clade_spend (scope, period, period_start, micros) VALUES ($1, $2, $3, $4)
				ON CONFLICT (scope, period, period_start) DO UPDATE SET micros = clade_spend.micros + excluded.micros`,
				scope, p, PeriodStart(p, at).UnixMicro(), int64(micros)); err != nil {
				return fmt.Errorf("add spend %s %s: %w", scope, p, err)
			}
		}
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("add spend: %w", err)
	}
	return nil
}

// SpendOf returns what scope spent in the period holding at (0 when nothing).
func (s *Store) SpendOf(ctx context.Context, scope, period string, at time.Time) (spend.Micros, error) {
	start := PeriodStart(period, at)
	if start.IsZero() {
		return 0, fmt.Errorf("spend of %s: unknown period %q (want day, week or month)", scope, period)
	}
	var m int64
	err := s.b.reader().queryRow(ctx, `SELECT COALESCE(SUM(micros), 0) FROM clade_spend WHERE scope = $1 AND period = $2 AND period_start = $3`,
		scope, period, start.UnixMicro()).Scan(&m)
	if err != nil {
		return 0, fmt.Errorf("spend of %s %s: %w", scope, period, err)
	}
	return spend.Micros(m), nil
}

// Spends returns every recorded sum whose period holds at (at zero: every sum
// recorded), by scope, then period (day, week, month), then start.
func (s *Store) Spends(ctx context.Context, at time.Time) ([]SpendRow, error) {
	rs, err := s.b.reader().query(ctx, `SELECT scope, period, period_start, micros FROM clade_spend ORDER BY scope,
		CASE period WHEN 'day' THEN 0 WHEN 'week' THEN 1 ELSE 2 END, period_start`)
	if err != nil {
		return nil, fmt.Errorf("list spend: %w", err)
	}
	defer rs.Close()
	var out []SpendRow
	for rs.Next() {
		var r SpendRow
		var start, m int64
		if err := rs.Scan(&r.Scope, &r.Period, &start, &m); err != nil {
			return nil, fmt.Errorf("list spend: %w", err)
		}
		r.Start, r.Spent = time.UnixMicro(start).UTC(), spend.Micros(m)
		if !at.IsZero() && !r.Start.Equal(PeriodStart(r.Period, at)) {
			continue
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list spend: %w", err)
	}
	return out, nil
}
