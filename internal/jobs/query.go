package jobs

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/intake"
)

// Status is a run's progress. Requests, Problems and Results come from clade's
// tables, which are authoritative; Jobs counts River's queue rows by state
// (available, running, retryable, scheduled, completed, discarded, cancelled),
// which River deletes some time after they finish.
type Status struct {
	RunID    int64
	Imported bool
	Requests int64
	Problems int64
	// Results counts results by type; Pending is Requests less all results.
	Results map[ResultType]int64
	Pending int64
	// Usage and CostUSD sum over the results.
	Usage   catalog.Usage
	CostUSD float64
}

// Status returns the run's progress.
func (s *Store) Status(ctx context.Context, runID int64) (*Status, error) {
	run, err := s.RunByID(ctx, runID)
	if err != nil {
		return nil, err
	}
	st := &Status{RunID: runID, Imported: run.Imported, Requests: run.Requests, Problems: run.Problems,
		Results: map[ResultType]int64{}}
	rd := s.b.reader()
	rs, err := rd.query(ctx, `SELECT type, count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
			coalesce(sum(cache_write_5m_tokens), 0), coalesce(sum(cache_write_1h_tokens), 0),
			coalesce(sum(cache_read_tokens), 0), coalesce(sum(cost_usd), 0)
		FROM clade_result WHERE run_id = $1 GROUP BY type`, runID)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	done := int64(0)
	for rs.Next() {
		var typ string
		var n int64
		var u catalog.Usage
		var cost float64
		if err := rs.Scan(&typ, &n, &u.InputTokens, &u.OutputTokens, &u.CacheWrite5mTokens, &u.CacheWrite1hTokens, &u.CacheReadTokens, &cost); err != nil {
			rs.Close()
			return nil, err
		}
		st.Results[ResultType(typ)] = n
		done += n
		st.Usage.InputTokens += u.InputTokens
		st.Usage.OutputTokens += u.OutputTokens
		st.Usage.CacheWrite5mTokens += u.CacheWrite5mTokens
		st.Usage.CacheWrite1hTokens += u.CacheWrite1hTokens
		st.Usage.CacheReadTokens += u.CacheReadTokens
		st.CostUSD += cost
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, err
	}
	st.Pending = st.Requests - done
	return st, nil
}

// JobCounts returns the run's River jobs by state. It reads every job of the store
// (a job's run is in its JSON args), so it is kept out of Status, which the
// dispatchers call often.
func (s *Store) JobCounts(ctx context.Context, runID int64) (map[string]int64, error) {
	rs, err := s.b.reader().query(ctx, `SELECT state, count(*) FROM river_job WHERE kind = '`+JobKind+`' AND `+s.b.runOfJob()+` = $1 GROUP BY state`, runID)
	if err != nil {
		return nil, fmt.Errorf("job counts: %w", err)
	}
	defer rs.Close()
	out := map[string]int64{}
	for rs.Next() {
		var state string
		var n int64
		if err := rs.Scan(&state, &n); err != nil {
			return nil, err
		}
		out[state] = n
	}
	return out, rs.Err()
}

// unfinishedStates are River job states that will still run.
const unfinishedStates = `('available', 'pending', 'running', 'retryable', 'scheduled')`

// Unfinished returns how many of the run's jobs may still run.
func (s *Store) Unfinished(ctx context.Context, runID int64) (int64, error) {
	var n int64
	err := s.b.reader().queryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = '`+JobKind+`'
		AND state IN `+unfinishedStates+` AND `+s.b.runOfJob()+` = $1`, runID).Scan(&n)
	return n, err
}

// firstPending returns the line of the first request at or after line fromLine
// that has no result, or 0 when there is none.
func (s *Store) firstPending(ctx context.Context, runID int64, fromLine int) (int, error) {
	var line int
	err := s.b.reader().queryRow(ctx, `SELECT r.line FROM clade_request r
		WHERE r.run_id = $1 AND r.line >= $2
			AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
		ORDER BY r.line LIMIT 1`, runID, fromLine).Scan(&line)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return line, err
}

// Wait blocks until every request of the run has a result (nil), ctx ends, or no
// job is left to run while requests still lack a result (an error). It checks
// every poll (default 250 ms).
//
// Each check costs what the run advanced since the last one: it looks for the
// first request without a result from where the previous check stopped, so a
// million-request run is not counted on every poll. Only when that request has
// not moved for stallAfter does it count the run's unfinished River jobs, to tell
// a slow request from one whose job is gone.
func (s *Store) Wait(ctx context.Context, runID int64, poll time.Duration) error {
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	const stallAfter = 5 * time.Second
	t := time.NewTicker(poll)
	defer t.Stop()
	cursor, moved := 0, time.Now()
	for {
		run, err := s.RunByID(ctx, runID)
		if err != nil {
			return err
		}
		line, err := s.firstPending(ctx, runID, cursor)
		if err != nil {
			return err
		}
		switch {
		case line == 0 && run.Imported:
			return nil
		case line == 0:
			// Everything imported so far has a result; the import goes on.
		case line != cursor:
			cursor, moved = line, time.Now()
		case run.Imported && time.Since(moved) >= stallAfter:
			n, err := s.Unfinished(ctx, runID)
			if err != nil {
				return err
			}
			if n == 0 {
				if line, err = s.firstPending(ctx, runID, cursor); err != nil || line == 0 {
					return err
				}
				return fmt.Errorf("wait for run %d: the request on line %d has no result and no job left to run", runID, line)
			}
			moved = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ReleaseRunning puts every running request job back in the queue, in place,
// without counting its attempt, and returns how many. It cannot tell a dead
// process's jobs from a live one's: call it only when no other process works the
// store (one process per SQLite store), and only before this process's Client
// starts. Wherever processes may share a store (Postgres, or to be safe always),
// use Register instead: it runs ReleaseDead, which gives back only dead
// workers' jobs, at once for a process gone from this machine.
func (s *Store) ReleaseRunning(ctx context.Context) (int64, error) {
	return s.b.exec(ctx, `UPDATE river_job SET state = 'available', attempt = `+s.b.greatest()+`(attempt - 1, 0)
		WHERE kind = '`+JobKind+`' AND state = 'running'`)
}

// Problems calls fn for each rejected line of the run, in line order.
func (s *Store) Problems(ctx context.Context, runID int64, fn func(intake.Problem) error) error {
	rs, err := s.b.reader().query(ctx, `SELECT line, custom_id, field, reason FROM clade_problem WHERE run_id = $1 ORDER BY line, id`, runID)
	if err != nil {
		return fmt.Errorf("problems: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var p intake.Problem
		if err := rs.Scan(&p.Line, &p.CustomID, &p.Field, &p.Reason); err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return rs.Err()
}

// Pending returns up to limit requests of the run that have no result, in line
// order, after line afterLine (0 to start): keyset pagination for batch dispatch
// and for listing what is left.
func (s *Store) Pending(ctx context.Context, runID int64, afterLine, limit int) ([]Request, error) {
	rs, err := s.b.reader().query(ctx, `SELECT r.id, r.run_id, r.custom_id, r.line, r.model, r.max_tokens, r.est_input_tokens, r.params
		FROM clade_request r
		WHERE r.run_id = $1 AND r.line > $2
			AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
		ORDER BY r.line LIMIT $3`, runID, afterLine, limit)
	if err != nil {
		return nil, fmt.Errorf("pending: %w", err)
	}
	return scanRequests(rs)
}

// Export writes the run's results as results.jsonl (the Message Batches results
// format), one line per request that has a result: exactly one per custom_id.
// With ordered, lines follow the input's order; otherwise the store's order
// (cheapest). Requests without a result yet are not written. It returns the
// number of lines written.
func (s *Store) Export(ctx context.Context, runID int64, w io.Writer, ordered bool) (int64, error) {
	q := `SELECT result_line FROM clade_result WHERE run_id = $1`
	if ordered {
		q += ` ORDER BY line`
	}
	rs, err := s.b.reader().query(ctx, q, runID)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	defer rs.Close()
	bw := bufio.NewWriterSize(w, 256<<10)
	var n int64
	var line []byte
	for rs.Next() {
		if err := rs.Scan(&line); err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		bw.Write(line)
		if err := bw.WriteByte('\n'); err != nil {
			return n, fmt.Errorf("export: %w", err)
		}
		n++
	}
	if err := rs.Err(); err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("export: %w", err)
	}
	return n, nil
}

// scanRequests reads rows of (id, run_id, custom_id, line, model, max_tokens,
// est_input_tokens, params) into Requests and closes rs.
func scanRequests(rs rows) ([]Request, error) {
	defer rs.Close()
	var out []Request
	for rs.Next() {
		var r Request
		var params []byte
		if err := rs.Scan(&r.ID, &r.RunID, &r.CustomID, &r.Line, &r.Model, &r.MaxTokens, &r.EstInputTokens, &params); err != nil {
			return nil, err
		}
		r.Params = params
		out = append(out, r)
	}
	return out, rs.Err()
}
