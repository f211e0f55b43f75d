package jobs

// The store side of the hybrid mode (package hybrid): a run whose requests go to
// Message Batches first and, when a deadline comes close, to realtime workers as
// well. Batch dispatch owns a request while it has no River job; EnqueueUnfinished
// hands the rest of the run to realtime; a worker skips a request that a batch
// finished meanwhile (see worker.Work).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ModelNeed is what the unfinished requests of one model still need.
type ModelNeed struct {
	Model       string
	Requests    int64
	InputTokens int64 // estimated (clade_request.est_input_tokens)
	MaxTokens   int64 // sum of max_tokens
}

// RemainingNeed sums, by model, the requests of the run that have no result.
// When inBatch is false, requests in an open (intent or created) batch are left
// out.
func (s *Store) RemainingNeed(ctx context.Context, runID int64, inBatch bool) ([]ModelNeed, error) {
	q := `SELECT r.model, count(*), coalesce(sum(r.est_input_tokens), 0), coalesce(sum(r.max_tokens), 0)
		FROM clade_request r
		WHERE r.run_id = $1 AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)`
	if !inBatch {
		q += ` AND NOT EXISTS (SELECT 1 FROM clade_batch_item i JOIN clade_batch b ON b.id = i.batch_row
				WHERE i.request_id = r.id AND b.state <> 'done')`
	}
	return s.need(ctx, q, runID)
}

// FreshNeed sums, by model, the requests of the run that have no result and have
// never been in a batch: what batches may still be created for.
func (s *Store) FreshNeed(ctx context.Context, runID int64) ([]ModelNeed, error) {
	return s.need(ctx, `SELECT r.model, count(*), coalesce(sum(r.est_input_tokens), 0), coalesce(sum(r.max_tokens), 0)
		FROM clade_request r
		WHERE r.run_id = $1 AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
			AND NOT EXISTS (SELECT 1 FROM clade_batch_item i WHERE i.request_id = r.id)`, runID)
}

func (s *Store) need(ctx context.Context, q string, runID int64) ([]ModelNeed, error) {
	rs, err := s.b.reader().query(ctx, q+` GROUP BY r.model ORDER BY r.model`, runID)
	if err != nil {
		return nil, fmt.Errorf("remaining need: %w", err)
	}
	defer rs.Close()
	var out []ModelNeed
	for rs.Next() {
		var n ModelNeed
		if err := rs.Scan(&n.Model, &n.Requests, &n.InputTokens, &n.MaxTokens); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rs.Err()
}

// EnqueueUnfinished gives a River job, so that realtime workers send it, to every
// request of the run that has no result and no unfinished job, and is in no open
// batch or in one of the open batches listed in batchRows (clade_batch ids). It
// returns how many. Requests in no open batch come first, in input order; then
// those of the listed batches, the most recently recorded batch first, from its
// last line back (the API works a batch from its front). River runs jobs of equal
// priority in insertion order.
func (s *Store) EnqueueUnfinished(ctx context.Context, runID int64, maxAttempts int, batchRows []int64) (int64, error) {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	in := "0"
	for _, r := range batchRows {
		in += "," + strconv.FormatInt(r, 10)
	}
	rs, err := s.b.reader().query(ctx, `SELECT id FROM (SELECT r.id, r.line,
			coalesce((SELECT max(i.batch_row) FROM clade_batch_item i JOIN clade_batch b ON b.id = i.batch_row
				WHERE i.request_id = r.id AND b.state <> 'done'), 0) AS open_batch
		FROM clade_request r
		WHERE r.run_id = $1
			AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
			AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.kind = '`+JobKind+`' AND j.state IN `+unfinishedStates+`
				AND `+s.b.runOfJob()+` = $1 AND `+s.b.requestOfJob()+` = r.id)) q
		WHERE open_batch IN (`+in+`)
		ORDER BY open_batch = 0 DESC, open_batch DESC, CASE WHEN open_batch = 0 THEN line ELSE -line END`, runID)
	if err != nil {
		return 0, fmt.Errorf("enqueue unfinished: %w", err)
	}
	ids, err := scanIDs(rs)
	if err != nil {
		return 0, err
	}
	return s.enqueue(ctx, runID, ids, maxAttempts)
}

// EnqueueRetries gives a River job, so that realtime workers send it, to every
// request of the run that has no result and no unfinished job, is in no open
// batch, and has been in a batch before: with `clade batch --retry-via realtime`,
// the requests whose batch line was expired, canceled or a retryable error (or
// that their batch never answered for). A canceled run (CancelBatchRun) has none.
// It returns how many, enqueued in input order.
func (s *Store) EnqueueRetries(ctx context.Context, runID int64, maxAttempts int) (int64, error) {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	rs, err := s.b.reader().query(ctx, `SELECT r.id FROM clade_request r
		WHERE r.run_id = $1
			AND EXISTS (SELECT 1 FROM clade_batch_item i WHERE i.request_id = r.id)
			AND NOT EXISTS (SELECT 1 FROM clade_batch_item i JOIN clade_batch b ON b.id = i.batch_row
				WHERE i.request_id = r.id AND b.state <> 'done')
			AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
			AND NOT EXISTS (SELECT 1 FROM clade_batch_run c WHERE c.run_id = r.run_id AND c.canceled_at IS NOT NULL)
			AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.kind = '`+JobKind+`' AND j.state IN `+unfinishedStates+`
				AND `+s.b.runOfJob()+` = $1 AND `+s.b.requestOfJob()+` = r.id)
		ORDER BY r.line`, runID)
	if err != nil {
		return 0, fmt.Errorf("enqueue retries: %w", err)
	}
	ids, err := scanIDs(rs)
	if err != nil {
		return 0, err
	}
	return s.enqueue(ctx, runID, ids, maxAttempts)
}

// scanIDs reads a one-column result of ids and closes it.
func scanIDs(rs rows) ([]int64, error) {
	defer rs.Close()
	var ids []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rs.Err()
}

// enqueue inserts a River job for each of ids, a thousand per transaction.
func (s *Store) enqueue(ctx context.Context, runID int64, ids []int64, maxAttempts int) (int64, error) {
	const chunk = 1000
	for i := 0; i < len(ids); i += chunk {
		part := ids[i:min(i+chunk, len(ids))]
		if err := s.inTx(ctx, func(tx txn) error { return tx.insertJobs(ctx, runID, part, maxAttempts) }); err != nil {
			return int64(i), fmt.Errorf("enqueue: %w", err)
		}
	}
	return int64(len(ids)), nil
}

// CoveredBatches returns the run's open (created) batches whose every request
// already has a result: realtime did their work, so they can be cancelled.
func (s *Store) CoveredBatches(ctx context.Context, runID int64) ([]BatchRecord, error) {
	open, err := s.Batches(ctx, runID, BatchCreated)
	if err != nil {
		return nil, err
	}
	var out []BatchRecord
	for _, b := range open {
		var left int64
		err := s.b.reader().queryRow(ctx, `SELECT count(*) FROM clade_batch_item i
			WHERE i.batch_row = $1 AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = i.request_id)`, b.Row).Scan(&left)
		if err != nil {
			return nil, fmt.Errorf("covered batches: %w", err)
		}
		if left == 0 {
			out = append(out, b)
		}
	}
	return out, nil
}

// PrepareHybrid creates the hybrid mode's table if it does not exist.
func (s *Store) PrepareHybrid(ctx context.Context) error {
	big := "INTEGER"
	if s.b.kind() == "postgres" {
		big = "BIGINT"
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS clade_hybrid (
			run_id     ` + big + ` PRIMARY KEY,
			spilled_at ` + big + ` NOT NULL
		)`,
		// Added after the first release: CREATE IF NOT EXISTS upgrades older stores.
		`CREATE TABLE IF NOT EXISTS clade_hybrid_deadline (
			run_id   ` + big + ` PRIMARY KEY,
			spec     TEXT NOT NULL,
			deadline ` + big + ` NOT NULL
		)`,
	} {
		if _, err := s.b.exec(ctx, q); err != nil {
			return fmt.Errorf("prepare hybrid tables: %w", err)
		}
	}
	return nil
}

// SetRunDeadline records the run's deadline, at, and the --deadline text it came
// from, replacing any earlier one.
func (s *Store) SetRunDeadline(ctx context.Context, runID int64, spec string, at time.Time) error {
	_, err := s.b.exec(ctx, `INSERT INTO clade_hybrid_deadline (run_id, spec, deadline) VALUES ($1, $2, $3)
		ON CONFLICT (run_id) DO UPDATE SET spec = excluded.spec, deadline = excluded.deadline`, runID, spec, at.UnixMicro())
	if err != nil {
		return fmt.Errorf("set run deadline: %w", err)
	}
	return nil
}

// RunDeadline returns the run's recorded deadline and the --deadline text it came
// from; the zero time if none was recorded.
func (s *Store) RunDeadline(ctx context.Context, runID int64) (spec string, at time.Time, err error) {
	var us int64
	err = s.b.reader().queryRow(ctx, `SELECT spec, deadline FROM clade_hybrid_deadline WHERE run_id = $1`, runID).Scan(&spec, &us)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("run deadline: %w", err)
	}
	return spec, time.UnixMicro(us).UTC(), nil
}

// MarkSpilled records that the run moved to realtime at at (the first time only).
func (s *Store) MarkSpilled(ctx context.Context, runID int64, at time.Time) error {
	_, err := s.b.exec(ctx, `INSERT INTO clade_hybrid (run_id, spilled_at) VALUES ($1, $2) ON CONFLICT (run_id) DO NOTHING`,
		runID, at.UnixMicro())
	if err != nil {
		return fmt.Errorf("mark spilled: %w", err)
	}
	return nil
}

// SpilledAt returns when the run moved to realtime, or the zero time.
func (s *Store) SpilledAt(ctx context.Context, runID int64) (time.Time, error) {
	var at int64
	err := s.b.reader().queryRow(ctx, `SELECT spilled_at FROM clade_hybrid WHERE run_id = $1`, runID).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("spilled at: %w", err)
	}
	return time.UnixMicro(at).UTC(), nil
}
