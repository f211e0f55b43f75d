package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clade-dev/clade/internal/spend"
)

// BatchHold is the worst case of one Message Batch sent through clade serve,
// held against the budgets of its scopes until the batch ends (SettleBatchHold)
// or is released (ReleaseBatchHold).
type BatchHold struct {
	BatchID string
	Scopes  []string // the scopes whose budgets it counts toward ("team:NAME", "key:LABEL")
	Worst   spend.Micros
	Created time.Time // UTC
}

// AddBatchHold records h. A hold of the same batch id already present is an
// error: a batch id names one batch.
func (s *Store) AddBatchHold(ctx context.Context, h BatchHold) error {
	if h.BatchID == "" || len(h.Scopes) == 0 {
		return errors.New("add batch hold: empty batch id or no scope")
	}
	for _, sc := range h.Scopes {
		if sc == "" || strings.Contains(sc, "\n") {
			return fmt.Errorf("add batch hold %s: bad scope %q", h.BatchID, sc)
		}
	}
	if _, err := s.b.exec(ctx, `INSERT INTO clade_batch_hold (batch_id, scopes, worst_micros, created_at) VALUES ($1, $2, $3, $4)`,
		h.BatchID, strings.Join(h.Scopes, "\n"), int64(h.Worst), h.Created.UnixMicro()); err != nil {
		return fmt.Errorf("add batch hold %s: %w", h.BatchID, err)
	}
	return nil
}

// BatchHolds returns every pending hold, oldest first.
func (s *Store) BatchHolds(ctx context.Context) ([]BatchHold, error) {
	rs, err := s.b.query(ctx, `SELECT batch_id, scopes, worst_micros, created_at FROM clade_batch_hold ORDER BY created_at, batch_id`)
	if err != nil {
		return nil, fmt.Errorf("list batch holds: %w", err)
	}
	defer rs.Close()
	var out []BatchHold
	for rs.Next() {
		var h BatchHold
		var scopes string
		var worst, created int64
		if err := rs.Scan(&h.BatchID, &scopes, &worst, &created); err != nil {
			return nil, fmt.Errorf("list batch holds: %w", err)
		}
		h.Scopes, h.Worst, h.Created = strings.Split(scopes, "\n"), spend.Micros(worst), time.UnixMicro(created).UTC()
		out = append(out, h)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("list batch holds: %w", err)
	}
	return out, nil
}

// BatchHeld returns the sum of the pending holds counting toward scope.
func (s *Store) BatchHeld(ctx context.Context, scope string) (spend.Micros, error) {
	holds, err := s.BatchHolds(ctx)
	if err != nil {
		return 0, err
	}
	var sum spend.Micros
	for _, h := range holds {
		for _, sc := range h.Scopes {
			if sc == scope {
				sum += h.Worst
				break
			}
		}
	}
	return sum, nil
}

// SettleBatchHold ends the hold of batchID in one transaction: it claims the row
// (DELETE ... RETURNING) and adds cost to what each of its scopes spent in every
// period holding at. It reports whether this call claimed it: with several
// gateways reconciling one store, only one settles a batch, and its cost is
// counted once. A cost of 0 or less only deletes the hold.
func (s *Store) SettleBatchHold(ctx context.Context, batchID string, at time.Time, cost spend.Micros) (claimed bool, err error) {
	tx, err := s.b.begin(ctx)
	if err != nil {
		return false, fmt.Errorf("settle batch hold %s: %w", batchID, err)
	}
	defer func() {
		if err != nil || !claimed {
			tx.rollback(context.WithoutCancel(ctx))
		}
	}()
	var scopes string
	if err := tx.queryRow(ctx, `DELETE FROM clade_batch_hold WHERE batch_id = $1 RETURNING scopes`, batchID).Scan(&scopes); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		return false, fmt.Errorf("settle batch hold %s: %w", batchID, err)
	}
	if cost > 0 {
		for _, scope := range strings.Split(scopes, "\n") {
			for _, p := range Periods {
				if _, err := tx.exec(ctx, `INSERT INTO clade_spend (scope, period, period_start, micros) VALUES ($1, $2, $3, $4)
					ON CONFLICT (scope, period, period_start) DO UPDATE SET micros = clade_spend.micros + excluded.micros`,
					scope, p, PeriodStart(p, at).UnixMicro(), int64(cost)); err != nil {
					return false, fmt.Errorf("settle batch hold %s: spend of %s %s: %w", batchID, scope, p, err)
				}
			}
		}
	}
	if err := tx.commit(ctx); err != nil {
		return false, fmt.Errorf("settle batch hold %s: %w", batchID, err)
	}
	return true, nil
}

// batchHoldMigration holds the worst cases of clade serve's Message Batches in
// flight (Store.AddBatchHold): one row per batch, with the scopes it counts toward
// (newline-separated), its worst case in micro-dollars and when it was created
// (µs since the epoch). The same SQL on both backends.
var batchHoldMigration = []string{
	`CREATE TABLE clade_batch_hold (
		batch_id     TEXT   NOT NULL PRIMARY KEY,
		scopes       TEXT   NOT NULL,
		worst_micros BIGINT NOT NULL,
		created_at   BIGINT NOT NULL
	)`,
}
