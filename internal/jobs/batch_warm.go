package jobs

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
)

// Prompt-cache warming for batches (`clade batch --cache-warm realtime`): before a
// prefix's lines go into a batch, one of them goes through realtime workers (a
// River job) so the prefix is cached when the batch is created.

// BatchWarmPrefix is one prompt-cache prefix of a run's requests that batch
// dispatch would send (no result, in no open batch), as BatchWarmPrefixes counts
// them: per prefix key and line model.
type BatchWarmPrefix struct {
	Prefix cacheprefix.Prefix
	Model  string // the lines' model as imported (aliases unresolved)
	// Lines counts its pending requests; Jobs those of them with an unfinished
	// River job (a warming request in flight, or queued).
	Lines, Jobs int64
	// First is the first of its pending requests in line order that has no
	// unfinished job (0: none): the one a warm call sends.
	First int64
	// Group is the line of the prefix's first request in the input, answered or
	// not: its place in the order of BatchPending.
	Group int
}

// BatchWarmPrefixes returns the prompt-cache prefixes of the run's requests
// that have no result and are in no open batch (fresh: and were never in a
// batch, as BatchFresh), one entry per prefix and model, in the order
// BatchPending sends them: by the prefix's first line in the input. A canceled
// run has none.
func (s *Store) BatchWarmPrefixes(ctx context.Context, runID int64, fresh bool) ([]BatchWarmPrefix, error) {
	and := ""
	if fresh {
		and = `AND NOT EXISTS (SELECT 1 FROM clade_batch_item i WHERE i.request_id = r.id)`
	}
	rs, err := s.b.reader().query(ctx, `SELECT r.id, r.model, r.cache_prefix, r.cache_prefix_tokens, r.cache_ttl,
			CASE WHEN EXISTS (SELECT 1 FROM river_job j WHERE j.kind = '`+JobKind+`' AND j.state IN `+unfinishedStates+`
				AND `+s.b.runOfJob()+` = $1 AND `+s.b.requestOfJob()+` = r.id) THEN 1 ELSE 0 END,
			(SELECT min(g.line) FROM clade_request g WHERE g.run_id = r.run_id AND g.cache_prefix = r.cache_prefix)
		FROM clade_request r
		WHERE r.run_id = $1 AND r.cache_prefix IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
			AND NOT EXISTS (SELECT 1 FROM clade_batch_item i JOIN clade_batch b ON b.id = i.batch_row
				WHERE i.request_id = r.id AND b.state <> 'done')
			AND NOT EXISTS (SELECT 1 FROM clade_batch_run c WHERE c.run_id = r.run_id AND c.canceled_at IS NOT NULL)
			`+and+`
		ORDER BY r.line`, runID)
	if err != nil {
		return nil, fmt.Errorf("batch warm prefixes: %w", err)
	}
	defer rs.Close()
	type id struct {
		key   string
		model string
	}
	at := map[id]int{}
	var out []BatchWarmPrefix
	for rs.Next() {
		var reqID, tokens, ttl, job int64
		var group int
		var model, key string
		if err := rs.Scan(&reqID, &model, &key, &tokens, &ttl, &job, &group); err != nil {
			return nil, fmt.Errorf("batch warm prefixes: %w", err)
		}
		k := id{key, model}
		i, ok := at[k]
		if !ok {
			p := scanPrefix(&key, &tokens, &ttl)
			if p.Key == (cacheprefix.Key{}) {
				continue
			}
			i = len(out)
			at[k] = i
			out = append(out, BatchWarmPrefix{Prefix: p, Model: model, Group: group})
		}
		w := &out[i]
		w.Lines++
		if job == 1 {
			w.Jobs++
		} else if w.First == 0 {
			w.First = reqID
		}
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("batch warm prefixes: %w", err)
	}
	slices.SortStableFunc(out, func(a, b BatchWarmPrefix) int { return a.Group - b.Group })
	return out, nil
}

// EnqueueWarm gives request id of the run a River job, so that realtime workers
// send it, unless it has a result or an unfinished job already. It reports
// whether it did.
func (s *Store) EnqueueWarm(ctx context.Context, runID, id int64, maxAttempts int) (bool, error) {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	rs, err := s.b.query(ctx, `SELECT r.id FROM clade_request r
		WHERE r.run_id = $1 AND r.id = $2
			AND NOT EXISTS (SELECT 1 FROM clade_result x WHERE x.request_id = r.id)
			AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.kind = '`+JobKind+`' AND j.state IN `+unfinishedStates+`
				AND `+s.b.runOfJob()+` = $1 AND `+s.b.requestOfJob()+` = r.id)`, runID, id)
	if err != nil {
		return false, fmt.Errorf("enqueue warm: %w", err)
	}
	ids, err := scanIDs(rs)
	if err != nil || len(ids) == 0 {
		return false, err
	}
	n, err := s.enqueue(ctx, runID, ids, maxAttempts)
	return n == 1, err
}

// RequestsWithJobs returns the run's requests that have an unfinished River
// job: realtime workers will send them, so batch dispatch leaves them out.
func (s *Store) RequestsWithJobs(ctx context.Context, runID int64) (map[int64]bool, error) {
	rs, err := s.b.reader().query(ctx, `SELECT `+s.b.requestOfJob()+` FROM river_job j WHERE j.kind = '`+JobKind+`'
		AND j.state IN `+unfinishedStates+` AND `+s.b.runOfJob()+` = $1`, runID)
	if err != nil {
		return nil, fmt.Errorf("requests with jobs: %w", err)
	}
	ids, err := scanIDs(rs)
	if err != nil {
		return nil, fmt.Errorf("requests with jobs: %w", err)
	}
	out := make(map[int64]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// RequestResult is what the store holds of one request's result.
type RequestResult struct {
	Type    string // "" while it has none
	CostUSD float64
	// CacheWrite and CacheRead are its prompt-cache tokens (both TTLs written).
	CacheWrite, CacheRead int64
	FinishedAt            time.Time
}

// ResultOf returns request id's result, or a zero RequestResult if it has none.
func (s *Store) ResultOf(ctx context.Context, id int64) (RequestResult, error) {
	rs, err := s.b.reader().query(ctx, `SELECT type, cost_usd, cache_write_5m_tokens + cache_write_1h_tokens, cache_read_tokens, finished_at
		FROM clade_result WHERE request_id = $1`, id)
	if err != nil {
		return RequestResult{}, fmt.Errorf("result of request %d: %w", id, err)
	}
	defer rs.Close()
	var r RequestResult
	if rs.Next() {
		var at int64
		if err := rs.Scan(&r.Type, &r.CostUSD, &r.CacheWrite, &r.CacheRead, &at); err != nil {
			return RequestResult{}, fmt.Errorf("result of request %d: %w", id, err)
		}
		r.FinishedAt = time.UnixMicro(at).UTC()
	}
	return r, rs.Err()
}
