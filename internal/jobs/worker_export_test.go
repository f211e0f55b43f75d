package jobs

import "context"

// StopHeartbeat stops the worker's heartbeat without deleting its row, as a
// frozen or partitioned process would.
func (w *Worker) StopHeartbeat() { w.stopHeartbeat() }

// RunningBy counts the running request jobs by their last attempted_by (the
// River client ID that fetched them; "" for none).
func (s *Store) RunningBy(ctx context.Context) (map[string]int64, error) {
	d := s.dialect()
	rs, err := s.b.query(ctx, `SELECT coalesce(`+d.lastAttemptedBy+`, ''), count(*) FROM river_job j
		WHERE kind = '`+JobKind+`' AND state = 'running' GROUP BY 1`)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := map[string]int64{}
	for rs.Next() {
		var id string
		var n int64
		if err := rs.Scan(&id, &n); err != nil {
			return nil, err
		}
		out[id] = n
	}
	return out, rs.Err()
}

// Released counts the request job rows that ReleaseDead finalized (cancelled with
// the clade_released mark).
func (s *Store) Released(ctx context.Context) (int64, error) {
	d := s.dialect()
	var n int64
	err := s.b.queryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = '`+JobKind+`' AND state = 'cancelled' AND `+d.released).Scan(&n)
	return n, err
}

// Attempts counts the request jobs in state by their attempt number.
func (s *Store) Attempts(ctx context.Context, state string) (map[int]int64, error) {
	rs, err := s.b.query(ctx, `SELECT attempt, count(*) FROM river_job WHERE kind = '`+JobKind+`' AND CAST(state AS TEXT) = $1 GROUP BY attempt`, state)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := map[int]int64{}
	for rs.Next() {
		var a int
		var n int64
		if err := rs.Scan(&a, &n); err != nil {
			return nil, err
		}
		out[a] = n
	}
	return out, rs.Err()
}

// MarkRunningBy marks n available request jobs running under the worker id, as
// a fetch whose answer the network lost leaves them: the database says the
// worker has them, its client never got them.
func (s *Store) MarkRunningBy(ctx context.Context, n int, id string) (int64, error) {
	d := s.dialect()
	attemptedBy := `json_array($1)`
	if s.b.kind() == "postgres" {
		attemptedBy = `ARRAY[$1::text]`
	}
	return s.b.exec(ctx, `UPDATE river_job SET state = 'running', attempt = attempt + 1, attempted_at = `+d.jobNow+`,
		attempted_by = `+attemptedBy+` WHERE id IN (SELECT id FROM river_job WHERE kind = '`+JobKind+`' AND state = 'available' ORDER BY id LIMIT $2)`, id, n)
}

// HoldWriteConn takes the SQLite store's one write connection (no transaction,
// no lock on the file) until release is called: every write of the store's
// that is not on a connection of its own waits, as behind a queue of writes.
func (s *Store) HoldWriteConn(ctx context.Context) (release func(), err error) {
	conn, err := s.b.(*sqliteBackend).db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return func() { conn.Close() }, nil
}
