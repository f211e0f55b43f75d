package jobs

// The store side of batch dispatch (package batch): which requests went in which
// Message Batch, and the results written from batch results files.
//
// clade_batch has one row per batch clade meant to create. The row is written, with
// its clade_batch_item rows (one per request), before the create call, in state
// "intent"; the API's batch id is recorded right after the call returns (state
// "created"); the row becomes "done" once every result line of the batch has been
// read into clade_result. A request is pending for batch dispatch when it has no
// result and is in no intent or created batch, so the requests of a batch whose
// lines were expired, canceled or retryably errored become pending again when the
// batch is done, and are resubmitted.
//
// clade_batch_run holds what is decided for a run as a whole: canceled_at is set by
// `clade batch cancel` (CancelBatchRun). A canceled run has no pending requests for
// batch dispatch: its requests without a result are in no later batch, and get a
// final canceled result instead (see package batch).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clade-dev/clade/catalog"
)

// BatchState is the state of a clade_batch row.
type BatchState string

// Batch row states.
const (
	// BatchIntent: recorded before the create call; the batch may or may not exist.
	BatchIntent BatchState = "intent"
	// BatchCreated: the API's batch id is known; results not read yet.
	BatchCreated BatchState = "created"
	// BatchDone: every result line of the batch was read into the store.
	BatchDone BatchState = "done"
)

// BatchRecord is one clade_batch row.
type BatchRecord struct {
	Row     int64 // clade_batch.id
	RunID   int64
	BatchID string // the API's id; "" for an intent
	State   BatchState
	// Requests and BodyBytes are the size of the create call.
	Requests  int64
	BodyBytes int64
	// Fingerprint is the hex SHA-256 of the batch's custom_ids, sorted, one per line.
	Fingerprint string
	// AttemptedAt is when the intent was recorded (our clock); CreatedAt is the API's
	// created_at (zero for an intent).
	AttemptedAt time.Time
	CreatedAt   time.Time
	// EndedAt is the API's ended_at of a done batch (zero otherwise).
	EndedAt time.Time
}

// BatchCounts are an ended batch's request counts, as the API reported them.
type BatchCounts struct {
	Succeeded, Errored, Canceled, Expired int64
}

// RecordBatchCounts stores the request counts of the ended batch at row (the last
// report counts).
func (s *Store) RecordBatchCounts(ctx context.Context, row int64, c BatchCounts) error {
	_, err := s.b.exec(ctx, `INSERT INTO clade_batch_counts (batch_row, succeeded, errored, canceled, expired)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (batch_row) DO UPDATE SET succeeded = excluded.succeeded, errored = excluded.errored,
			canceled = excluded.canceled, expired = excluded.expired`,
		row, c.Succeeded, c.Errored, c.Canceled, c.Expired)
	if err != nil {
		return fmt.Errorf("record batch counts: %w", err)
	}
	return nil
}

// BatchCountsOf returns the recorded request counts of the run's ended batches, by
// clade_batch row.
func (s *Store) BatchCountsOf(ctx context.Context, runID int64) (map[int64]BatchCounts, error) {
	rs, err := s.b.query(ctx, `SELECT c.batch_row, c.succeeded, c.errored, c.canceled, c.expired
		FROM clade_batch_counts c JOIN clade_batch b ON b.id = c.batch_row WHERE b.run_id = $1`, runID)
	if err != nil {
		return nil, fmt.Errorf("batch counts: %w", err)
	}
	defer rs.Close()
	out := map[int64]BatchCounts{}
	for rs.Next() {
		var row int64
		var c BatchCounts
		if err := rs.Scan(&row, &c.Succeeded, &c.Errored, &c.Canceled, &c.Expired); err != nil {
			return nil, err
		}
		out[row] = c
	}
	return out, rs.Err()
}

// BatchItem is one request of a batch.
type BatchItem struct {
	RequestID int64
	CustomID  string
	Line      int
	Model     string
	// Attempt is 1 for the request's first batch, 2 for its second, ...
	Attempt int
}

// BatchResult is a final result of a batch item, to be written to clade_result.
type BatchResult struct {
	Item BatchItem
	Type ResultType
	// Line is the result line as the API sent it (no newline).
	Line    []byte
	Usage   catalog.Usage
	CostUSD float64
}

// PrepareBatches creates the batch tables if they do not exist. Call it before any
// other batch method.
func (s *Store) PrepareBatches(ctx context.Context) error {
	unlock, err := s.b.migrateLock(ctx)
	if err != nil {
		return fmt.Errorf("prepare batch tables: %w", err)
	}
	defer unlock()
	id, big := "INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"
	if s.b.kind() == "postgres" {
		id, big = "BIGSERIAL PRIMARY KEY", "BIGINT"
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS clade_batch (
			id           ` + id + `,
			run_id       ` + big + ` NOT NULL,
			batch_id     TEXT UNIQUE,
			state        TEXT NOT NULL,
			requests     ` + big + ` NOT NULL,
			body_bytes   ` + big + ` NOT NULL,
			fingerprint  TEXT NOT NULL,
			attempted_at ` + big + ` NOT NULL,
			created_at   ` + big + `,
			ended_at     ` + big + `
		)`,
		`CREATE INDEX IF NOT EXISTS clade_batch_run_state ON clade_batch (run_id, state)`,
		`CREATE TABLE IF NOT EXISTS clade_batch_item (
			batch_row  ` + big + ` NOT NULL,
			request_id ` + big + ` NOT NULL,
			attempt    ` + big + ` NOT NULL,
			PRIMARY KEY (batch_row, request_id)
		)`,
		`CREATE INDEX IF NOT EXISTS clade_batch_item_request ON clade_batch_item (request_id)`,
		// Added after the first release: CREATE IF NOT EXISTS upgrades older stores.
		`CREATE TABLE IF NOT EXISTS clade_batch_run (
			run_id      ` + big + ` PRIMARY KEY,
			canceled_at ` + big + `
		)`,
		`CREATE TABLE IF NOT EXISTS clade_batch_counts (
			batch_row ` + big + ` PRIMARY KEY,
			succeeded ` + big + ` NOT NULL,
			errored   ` + big + ` NOT NULL,
			canceled  ` + big + ` NOT NULL,
			expired   ` + big + ` NOT NULL
		)`,
	} {
		if _, err := s.b.exec(ctx, q); err != nil {
			return fmt.Errorf("prepare batch tables: %w", err)
		}
	}
	return nil
}

// DropRequestJobs deletes the run's River jobs that have not finished, so that no
// realtime worker sends a request that batch dispatch owns. It returns how many.
func (s *Store) DropRequestJobs(ctx context.Context, runID int64) (int64, error) {
	return s.b.exec(ctx, `DELETE FROM river_job WHERE kind = '`+JobKind+`' AND state IN `+unfinishedStates+`
		AND `+s.b.runOfJob()+` = $1`, runID)
}

// BatchCursor is a position in the order of BatchPending: the requests after it
// have a greater Group, or the same Group and a greater Line. The zero cursor is
// the start.
type BatchCursor struct {
	// Group is the line of the first request of the run with the same
	// prompt-cache prefix (cache_prefix); the request's own line without one.
	Group int
	Line  int
}

// BatchRef is a pending request's place in the order of BatchPending: its
// clade_request id and the cursor at it. BatchRequests loads the requests.
type BatchRef struct {
	ID int64
	At BatchCursor
}

// BatchPending returns up to limit requests of the run after the cursor that have
// no result and are in no open (intent or created) batch: the requests to put in a
// batch. They come by prefix group: the requests of one prompt-cache prefix
// together, at the place of the prefix's first line in the input, and each request
// without a prefix at its own line, so a run without cache_control is in line
// order. The order depends only on the input (a prefix's first line counts whether
// it has a result or not), so a resumed run forms the same groups. A canceled run
// (CancelBatchRun) has none.
//
// It returns references, not rows: the order of a run with prefixes is a sort of
// all its pending requests, made once for many (tens of thousands of) requests,
// whose rows are then read a page at a time.
func (s *Store) BatchPending(ctx context.Context, runID int64, after BatchCursor, limit int) ([]BatchRef, error) {
	return s.unsent(ctx, runID, after, limit, `AND NOT EXISTS (SELECT 1 FROM clade_batch_run c
		WHERE c.run_id = r.run_id AND c.canceled_at IS NOT NULL)`, false)
}

// BatchFresh is BatchPending less the requests that have been in a batch before:
// with `clade batch --retry-via realtime`, batch dispatch sends each request once
// and realtime workers take those that come back expired or retryably errored
// (EnqueueRetries).
func (s *Store) BatchFresh(ctx context.Context, runID int64, after BatchCursor, limit int) ([]BatchRef, error) {
	return s.unsent(ctx, runID, after, limit, `AND NOT EXISTS (SELECT 1 FROM clade_batch_run c
		WHERE c.run_id = r.run_id AND c.canceled_at IS NOT NULL)
			AND NOT EXISTS (SELECT 1 FROM clade_batch_item i WHERE i.request_id = r.id)`, false)
}

// BatchUnsent returns up to limit requests of the run after line afterLine that have
// no result and are in no open batch, canceled run or not, in line order.
func (s *Store) BatchUnsent(ctx context.Context, runID int64, afterLine, limit int) ([]Request, error) {
	refs, err := s.unsent(ctx, runID, BatchCursor{Group: afterLine, Line: afterLine}, limit, "", true)
	if err != nil {
		return nil, err
	}
	return s.BatchRequests(ctx, refs)
}

// unsent is the query of BatchPending, BatchFresh and BatchUnsent (byLine: in line
// order, not by prefix group). A run without any prefix (one seek in
// clade_request_run_prefix) is read in line order by the index on (run_id, line)
// up to limit entries, as before prefix groups. With prefixes, every request
// after the cursor has a line after after.Group (a group's lines are at or after
// its first), which bounds the scan, and the group of a request with a prefix is
// one seek in clade_request_run_prefix; the sort takes ids, not params.
func (s *Store) unsent(ctx context.Context, runID int64, after BatchCursor, limit int, and string, byLine bool) ([]BatchRef, error) {
	db := s.b.reader() // a fill pages through the run while the import (a writer) goes on
	if !byLine {
		var grouped bool
		if err := db.queryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clade_request WHERE run_id = $1 AND cache_prefix IS NOT NULL)`,
			runID).Scan(&grouped); err != nil {
			return nil, fmt.Errorf("batch pending: %w", err)
		}
		byLine = !grouped
	}
	pending := `clade_request r
		WHERE r.run_id = $1 AND r.line > $2
			AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
			AND NOT EXISTS (SELECT 1 FROM clade_batch_item i JOIN clade_batch b ON b.id = i.batch_row
				WHERE i.request_id = r.id AND b.state <> 'done')
			` + and
	q, args := `SELECT r.id, r.line, r.line FROM `+pending+` ORDER BY r.line LIMIT $3`, []any{runID, after.Line, limit}
	if !byLine {
		q = `SELECT g.id, g.line, g.grp FROM (SELECT r.id, r.line, CASE WHEN r.cache_prefix IS NULL THEN r.line
				ELSE (SELECT min(p.line) FROM clade_request p WHERE p.run_id = r.run_id AND p.cache_prefix = r.cache_prefix) END AS grp
				FROM ` + pending + `) g
			WHERE g.grp > $2 OR (g.grp = $2 AND g.line > $3)
			ORDER BY g.grp, g.line LIMIT $4`
		args = []any{runID, after.Group, after.Line, limit}
	}
	rs, err := db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("batch pending: %w", err)
	}
	defer rs.Close()
	var out []BatchRef
	for rs.Next() {
		var r BatchRef
		if err := rs.Scan(&r.ID, &r.At.Line, &r.At.Group); err != nil {
			return nil, fmt.Errorf("batch pending: %w", err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("batch pending: %w", err)
	}
	return out, nil
}

// BatchRequests loads the requests refs name, in their order. Keep refs to a
// page (a thousand): the rows carry params.
func (s *Store) BatchRequests(ctx context.Context, refs []BatchRef) ([]Request, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	ph := make([]string, len(refs))
	args := make([]any, len(refs))
	at := make(map[int64]int, len(refs))
	for i, r := range refs {
		ph[i], args[i], at[r.ID] = fmt.Sprintf("$%d", i+1), r.ID, i
	}
	rs, err := s.b.reader().query(ctx, `SELECT r.id, r.run_id, r.custom_id, r.line, r.model, r.max_tokens, r.est_input_tokens, r.params,
			r.cache_prefix, r.cache_prefix_tokens, r.cache_ttl
		FROM clade_request r WHERE r.id IN (`+strings.Join(ph, ", ")+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("batch requests: %w", err)
	}
	defer rs.Close()
	got := make([]*Request, len(refs))
	for rs.Next() {
		var r Request
		var params []byte
		var prefix *string
		var prefixTokens, ttl *int64
		if err := rs.Scan(&r.ID, &r.RunID, &r.CustomID, &r.Line, &r.Model, &r.MaxTokens, &r.EstInputTokens, &params,
			&prefix, &prefixTokens, &ttl); err != nil {
			return nil, fmt.Errorf("batch requests: %w", err)
		}
		r.Params, r.Cache = params, scanPrefix(prefix, prefixTokens, ttl)
		got[at[r.ID]] = &r
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("batch requests: %w", err)
	}
	out := make([]Request, 0, len(refs))
	for _, r := range got {
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// BatchPendingCounts returns how many requests of the run have no result yet: in
// open (intent or created) batches, and in none (not sent yet, or waiting to be
// sent again).
func (s *Store) BatchPendingCounts(ctx context.Context, runID int64) (inBatches, unsent int64, err error) {
	err = s.b.queryRow(ctx, `SELECT
			coalesce(sum(CASE WHEN o.request_id IS NULL THEN 0 ELSE 1 END), 0),
			coalesce(sum(CASE WHEN o.request_id IS NULL THEN 1 ELSE 0 END), 0)
		FROM clade_request r
		LEFT JOIN (SELECT DISTINCT i.request_id FROM clade_batch_item i JOIN clade_batch b ON b.id = i.batch_row
			WHERE b.run_id = $1 AND b.state <> 'done') o ON o.request_id = r.id
		WHERE r.run_id = $1 AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)`, runID).Scan(&inBatches, &unsent)
	if err != nil {
		return 0, 0, fmt.Errorf("batch pending counts: %w", err)
	}
	return inBatches, unsent, nil
}

// CancelBatchRun records that the run was canceled, now (the first time counts):
// from then on it has no pending requests for batch dispatch.
func (s *Store) CancelBatchRun(ctx context.Context, runID int64) error {
	_, err := s.b.exec(ctx, `INSERT INTO clade_batch_run (run_id, canceled_at) VALUES ($1, $2)
		ON CONFLICT (run_id) DO UPDATE SET canceled_at = coalesce(clade_batch_run.canceled_at, excluded.canceled_at)`,
		runID, s.now().UnixMicro())
	if err != nil {
		return fmt.Errorf("cancel run %d: %w", runID, err)
	}
	return nil
}

// BatchRunCanceled returns when the run was canceled; the zero time if it was not.
func (s *Store) BatchRunCanceled(ctx context.Context, runID int64) (time.Time, error) {
	var at sql.NullInt64
	err := s.b.queryRow(ctx, `SELECT canceled_at FROM clade_batch_run WHERE run_id = $1`, runID).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !at.Valid) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("run %d canceled: %w", runID, err)
	}
	return time.UnixMicro(at.Int64).UTC(), nil
}

// ReopenCanceledRun undoes CancelBatchRun: in one transaction it clears the mark and
// deletes the run's canceled results, so that their requests are pending again. It
// returns how many results it deleted; a run that is not canceled is left as it is.
func (s *Store) ReopenCanceledRun(ctx context.Context, runID int64) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx txn) error {
		marked, err := tx.exec(ctx, `UPDATE clade_batch_run SET canceled_at = NULL WHERE run_id = $1 AND canceled_at IS NOT NULL`, runID)
		if err != nil || marked == 0 {
			return err
		}
		n, err = tx.exec(ctx, `DELETE FROM clade_result WHERE run_id = $1 AND type = $2`, runID, string(Canceled))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reopen canceled run %d: %w", runID, err)
	}
	return n, nil
}

// RecordBatchIntent records, in one transaction, a batch about to be created and its
// requests, each with its attempt number (1 + the batches it was in before).
func (s *Store) RecordBatchIntent(ctx context.Context, runID int64, requestIDs []int64, bodyBytes int64, fingerprint string) (*BatchRecord, error) {
	rec := &BatchRecord{RunID: runID, State: BatchIntent, Requests: int64(len(requestIDs)), BodyBytes: bodyBytes,
		Fingerprint: fingerprint, AttemptedAt: s.now().UTC()}
	err := s.inTx(ctx, func(tx txn) error {
		if err := tx.queryRow(ctx, `INSERT INTO clade_batch (run_id, state, requests, body_bytes, fingerprint, attempted_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			runID, string(BatchIntent), rec.Requests, bodyBytes, fingerprint, rec.AttemptedAt.UnixMicro()).Scan(&rec.Row); err != nil {
			return err
		}
		for _, id := range requestIDs {
			if _, err := tx.exec(ctx, `INSERT INTO clade_batch_item (batch_row, request_id, attempt)
				VALUES ($1, $2, 1 + (SELECT count(*) FROM clade_batch_item WHERE request_id = $2))`, rec.Row, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record batch intent: %w", err)
	}
	return rec, nil
}

// RecordBatchCreated records the API's id of an intent.
func (s *Store) RecordBatchCreated(ctx context.Context, row int64, batchID string, createdAt time.Time) error {
	n, err := s.b.exec(ctx, `UPDATE clade_batch SET batch_id = $2, state = $3, created_at = $4 WHERE id = $1 AND state = $5`,
		row, batchID, string(BatchCreated), createdAt.UnixMicro(), string(BatchIntent))
	if err != nil {
		return fmt.Errorf("record batch %s: %w", batchID, err)
	}
	if n != 1 {
		return fmt.Errorf("record batch %s: intent %d is not open", batchID, row)
	}
	return nil
}

// DropBatchIntent deletes an intent whose batch was not created: its requests are
// pending again.
func (s *Store) DropBatchIntent(ctx context.Context, row int64) error {
	return s.inTx(ctx, func(tx txn) error {
		n, err := tx.exec(ctx, `DELETE FROM clade_batch WHERE id = $1 AND state = $2`, row, string(BatchIntent))
		if err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("drop batch intent %d: not an intent", row)
		}
		_, err = tx.exec(ctx, `DELETE FROM clade_batch_item WHERE batch_row = $1`, row)
		return err
	})
}

// FinishBatch marks a created batch done: its results are all in the store.
func (s *Store) FinishBatch(ctx context.Context, row int64, endedAt time.Time) error {
	_, err := s.b.exec(ctx, `UPDATE clade_batch SET state = $2, ended_at = $3 WHERE id = $1`,
		row, string(BatchDone), endedAt.UnixMicro())
	return err
}

const batchColumns = `id, run_id, batch_id, state, requests, body_bytes, fingerprint, attempted_at, created_at, ended_at`

// Batches returns the run's batch rows in the given states (all when none), oldest
// first. A runID of 0 means every run.
func (s *Store) Batches(ctx context.Context, runID int64, states ...BatchState) ([]BatchRecord, error) {
	q := `SELECT ` + batchColumns + ` FROM clade_batch WHERE ($1 = 0 OR run_id = $1)`
	args := []any{runID}
	if len(states) > 0 {
		ph := make([]string, len(states))
		for i, st := range states {
			args = append(args, string(st))
			ph[i] = fmt.Sprintf("$%d", i+2)
		}
		q += ` AND state IN (` + strings.Join(ph, ", ") + `)`
	}
	rs, err := s.b.query(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("batches: %w", err)
	}
	defer rs.Close()
	var out []BatchRecord
	for rs.Next() {
		var b BatchRecord
		var batchID sql.NullString
		var state string
		var attempted int64
		var created, ended sql.NullInt64
		if err := rs.Scan(&b.Row, &b.RunID, &batchID, &state, &b.Requests, &b.BodyBytes, &b.Fingerprint, &attempted, &created, &ended); err != nil {
			return nil, err
		}
		if ended.Valid && ended.Int64 > 0 {
			b.EndedAt = time.UnixMicro(ended.Int64).UTC()
		}
		b.BatchID, b.State = batchID.String, BatchState(state)
		b.AttemptedAt = time.UnixMicro(attempted).UTC()
		if created.Valid {
			b.CreatedAt = time.UnixMicro(created.Int64).UTC()
		}
		out = append(out, b)
	}
	return out, rs.Err()
}

// BatchIDKnown reports whether a batch id is recorded in the store (any run).
func (s *Store) BatchIDKnown(ctx context.Context, batchID string) (bool, error) {
	var n int64
	err := s.b.queryRow(ctx, `SELECT count(*) FROM clade_batch WHERE batch_id = $1`, batchID).Scan(&n)
	return n > 0, err
}

// OpenBatchRequests returns how many requests of the run are in intent or created
// batches: the run's share of the tier's processing queue.
func (s *Store) OpenBatchRequests(ctx context.Context, runID int64) (int64, error) {
	var n int64
	err := s.b.queryRow(ctx, `SELECT coalesce(sum(requests), 0) FROM clade_batch WHERE run_id = $1 AND state <> 'done'`, runID).Scan(&n)
	return n, err
}

// BatchItems returns the requests of a batch row.
func (s *Store) BatchItems(ctx context.Context, row int64) ([]BatchItem, error) {
	rs, err := s.b.query(ctx, `SELECT r.id, r.custom_id, r.line, r.model, i.attempt
		FROM clade_batch_item i JOIN clade_request r ON r.id = i.request_id
		WHERE i.batch_row = $1`, row)
	if err != nil {
		return nil, fmt.Errorf("batch items: %w", err)
	}
	defer rs.Close()
	var out []BatchItem
	for rs.Next() {
		var it BatchItem
		if err := rs.Scan(&it.RequestID, &it.CustomID, &it.Line, &it.Model, &it.Attempt); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rs.Err()
}

// WriteBatchResults writes final results in one transaction. A request that already
// has a result keeps it (a batch whose results are read again after a crash), so
// each request ends with exactly one result. It returns the results it wrote.
func (s *Store) WriteBatchResults(ctx context.Context, runID int64, results []BatchResult) ([]BatchResult, error) {
	for _, r := range results {
		if !r.Type.Valid() {
			return nil, fmt.Errorf("result of %s: unknown type %q", r.Item.CustomID, r.Type)
		}
	}
	var wrote []BatchResult
	err := s.inTx(ctx, func(tx txn) error {
		wrote = wrote[:0]
		now := s.now().UnixMicro()
		// Many rows per INSERT: one statement per line made the store most of the
		// time of reading a batch's results (docs/benchmarks.md). RETURNING names
		// the rows written; a request that already had a result is skipped.
		var q strings.Builder
		args := make([]any, 0, resultCols*min(len(results), resultRowsPerInsert))
		inserted := map[int64]bool{}
		for start := 0; start < len(results); start += resultRowsPerInsert {
			chunk := results[start:min(start+resultRowsPerInsert, len(results))]
			q.Reset()
			q.WriteString(`INSERT INTO clade_result (request_id, run_id, custom_id, line, type, result_line,
				input_tokens, output_tokens, cache_write_5m_tokens, cache_write_1h_tokens, cache_read_tokens,
				cost_usd, attempt, finished_at) VALUES `)
			args = args[:0]
			for i, r := range chunk {
				if i > 0 {
					q.WriteByte(',')
				}
				q.WriteByte('(')
				for c := range resultCols {
					if c > 0 {
						q.WriteByte(',')
					}
					fmt.Fprintf(&q, "$%d", len(args)+c+1)
				}
				q.WriteByte(')')
				u := r.Usage
				args = append(args, r.Item.RequestID, runID, r.Item.CustomID, r.Item.Line, string(r.Type), r.Line,
					u.InputTokens, u.OutputTokens, u.CacheWrite5mTokens, u.CacheWrite1hTokens, u.CacheReadTokens,
					r.CostUSD, r.Item.Attempt, now)
			}
			q.WriteString(` ON CONFLICT (request_id) DO NOTHING RETURNING request_id`)
			rs, err := tx.query(ctx, q.String(), args...)
			if err != nil {
				return fmt.Errorf("write results: %w", err)
			}
			for rs.Next() {
				var id int64
				if err := rs.Scan(&id); err != nil {
					rs.Close()
					return err
				}
				inserted[id] = true
			}
			rs.Close()
			if err := rs.Err(); err != nil {
				return fmt.Errorf("write results: %w", err)
			}
		}
		for _, r := range results {
			if inserted[r.Item.RequestID] {
				wrote = append(wrote, r)
				delete(inserted, r.Item.RequestID) // a request twice in results counts once
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return wrote, nil
}

// resultCols is the number of values of one clade_result row; resultRowsPerInsert
// how many rows one INSERT carries (14 × 100 parameters, within both databases'
// limits).
const (
	resultCols          = 14
	resultRowsPerInsert = 100
)
