package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// cacheWarmMigration holds the prompt-cache prefixes of a run that processes
// sharing the store have warmed or are warming (Store.ClaimCacheWarm): one row
// per run, model and prefix key. warm_until is when the prefix's cache entry runs
// out (µs, the database's clock: 0 while never warm); claimed_by names the worker
// (clade_worker.id) whose warming request is in flight, until claim_until at
// most. The same SQL on both backends.
var cacheWarmMigration = []string{
	`CREATE TABLE clade_cache_warm (
		run_id      BIGINT NOT NULL,
		model       TEXT   NOT NULL,
		prefix      TEXT   NOT NULL,
		warm_until  BIGINT NOT NULL DEFAULT 0,
		claimed_by  TEXT,
		claimed_at  BIGINT,
		claim_until BIGINT,
		PRIMARY KEY (run_id, model, prefix)
	)`,
}

// CachePrefix names one prompt-cache prefix of a run as sent to one model
// (caches are per model): the key is cacheprefix.Key.String().
type CachePrefix struct {
	RunID int64
	Model string
	Key   string
}

// CacheWarmth is what the store knows of a prefix when asked (ClaimCacheWarm,
// CacheWarmState), with durations counted from the database's clock at the
// statement, so that processes on hosts whose clocks differ agree.
type CacheWarmth struct {
	// Mine: the caller holds the warming claim; it sends the warming request,
	// then calls MarkCacheWarm (its first byte) or ReleaseCacheWarm (failed).
	Mine bool
	// WarmFor is how long the prefix stays warm (<= 0: cold).
	WarmFor time.Duration
	// Claimed: another live worker holds the claim (and it is not warm).
	Claimed bool
}

// cacheClaimLive is the SQL condition that the row t's claim is held by a live
// worker: claimed, within its claim timeout, by a worker whose heartbeat is
// within its dead-after window (the workers' own rule: ReleaseDead), all by the
// database's clock.
func (s *Store) cacheClaimLive(t string) string {
	now := s.dialect().now
	return `(` + t + `.claimed_by IS NOT NULL AND ` + t + `.claim_until > ` + now + ` AND EXISTS (SELECT 1 FROM clade_worker w
		WHERE w.id = ` + t + `.claimed_by AND w.dead_at IS NULL AND w.heartbeat_at + w.dead_after >= ` + now + `))`
}

// ClaimCacheWarm asks, in one atomic statement, for the warming claim of prefix
// p for worker: it gets it (Mine) if the prefix is neither warm for more than
// margin (a prefix within margin of running out is warmed again) nor claimed by
// another live worker, and holds it for at most timeout; otherwise it learns how
// long the prefix stays warm, or that another worker warms it (poll
// CacheWarmState until it is warm or the claim is dead, then ask again).
func (s *Store) ClaimCacheWarm(ctx context.Context, p CachePrefix, worker string, margin, timeout time.Duration) (CacheWarmth, error) {
	now := s.dialect().now
	free := `(clade_cache_warm.warm_until <= ` + now + ` + $6 AND (clade_cache_warm.claimed_by = excluded.claimed_by OR NOT ` +
		s.cacheClaimLive("clade_cache_warm") + `))`
	var by *string
	var warmUntil, at int64
	err := s.b.queryRow(ctx, `INSERT INTO clade_cache_warm (run_id, model, prefix, warm_until, claimed_by, claimed_at, claim_until)
		VALUES ($1, $2, $3, 0, $4, `+now+`, `+now+` + $5)
		ON CONFLICT (run_id, model, prefix) DO UPDATE SET
			claimed_by  = CASE WHEN `+free+` THEN excluded.claimed_by ELSE clade_cache_warm.claimed_by END,
			claimed_at  = CASE WHEN `+free+` THEN excluded.claimed_at ELSE clade_cache_warm.claimed_at END,
			claim_until = CASE WHEN `+free+` THEN excluded.claim_until ELSE clade_cache_warm.claim_until END
		RETURNING claimed_by, warm_until, `+now,
		p.RunID, p.Model, p.Key, worker, timeout.Microseconds(), margin.Microseconds()).Scan(&by, &warmUntil, &at)
	if err != nil {
		return CacheWarmth{}, fmt.Errorf("claim cache prefix %s: %w", p.Key, err)
	}
	w := CacheWarmth{WarmFor: time.Duration(warmUntil-at) * time.Microsecond}
	switch {
	case w.WarmFor > margin:
	case by != nil && *by == worker:
		w.Mine = true
	default:
		w.Claimed = true
	}
	return w, nil
}

// CacheWarmState reads what the store knows of prefix p, without writing: how
// long it stays warm, and whether a live worker other than worker holds its
// claim. A waiting process polls it.
func (s *Store) CacheWarmState(ctx context.Context, p CachePrefix, worker string) (CacheWarmth, error) {
	var warmUntil, at, live int64
	var by *string
	err := s.b.queryRow(ctx, `SELECT c.warm_until, c.claimed_by, CASE WHEN `+s.cacheClaimLive("c")+` THEN 1 ELSE 0 END, `+s.dialect().now+`
		FROM clade_cache_warm c WHERE c.run_id = $1 AND c.model = $2 AND c.prefix = $3`,
		p.RunID, p.Model, p.Key).Scan(&warmUntil, &by, &live, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return CacheWarmth{}, nil
	}
	if err != nil {
		return CacheWarmth{}, fmt.Errorf("read cache prefix %s: %w", p.Key, err)
	}
	return CacheWarmth{WarmFor: time.Duration(warmUntil-at) * time.Microsecond, Claimed: live == 1 && (by == nil || *by != worker)}, nil
}

// MarkCacheWarm records that prefix p is warm for ttl from now (the warming
// answer's first byte) and drops worker's claim on it.
func (s *Store) MarkCacheWarm(ctx context.Context, p CachePrefix, worker string, ttl time.Duration) error {
	now := s.dialect().now
	_, err := s.b.exec(ctx, `UPDATE clade_cache_warm SET warm_until = `+s.b.greatest()+`(warm_until, `+now+` + $4),
			claimed_at  = CASE WHEN claimed_by = $5 THEN NULL ELSE claimed_at END,
			claim_until = CASE WHEN claimed_by = $5 THEN NULL ELSE claim_until END,
			claimed_by  = CASE WHEN claimed_by = $5 THEN NULL ELSE claimed_by END
		WHERE run_id = $1 AND model = $2 AND prefix = $3`, p.RunID, p.Model, p.Key, ttl.Microseconds(), worker)
	if err != nil {
		return fmt.Errorf("mark cache prefix %s warm: %w", p.Key, err)
	}
	return nil
}

// ReleaseCacheWarm drops worker's claim on prefix p, whose warming request
// failed, so that the next process to ask warms it.
func (s *Store) ReleaseCacheWarm(ctx context.Context, p CachePrefix, worker string) error {
	_, err := s.b.exec(ctx, `UPDATE clade_cache_warm SET claimed_by = NULL, claimed_at = NULL, claim_until = NULL
		WHERE run_id = $1 AND model = $2 AND prefix = $3 AND claimed_by = $4`, p.RunID, p.Model, p.Key, worker)
	if err != nil {
		return fmt.Errorf("release cache prefix %s: %w", p.Key, err)
	}
	return nil
}

// RefreshCacheWarm extends prefix p's warmth to ttl from now, as a cache read
// does at the API. The runner calls it at most once per prefix per tenth of the
// TTL, not per request.
func (s *Store) RefreshCacheWarm(ctx context.Context, p CachePrefix, ttl time.Duration) error {
	_, err := s.b.exec(ctx, `UPDATE clade_cache_warm SET warm_until = `+s.b.greatest()+`(warm_until, `+s.dialect().now+` + $4)
		WHERE run_id = $1 AND model = $2 AND prefix = $3`, p.RunID, p.Model, p.Key, ttl.Microseconds())
	if err != nil {
		return fmt.Errorf("refresh cache prefix %s: %w", p.Key, err)
	}
	return nil
}

// ColdCacheWarm records prefix p cold again, unless a worker claims it: the
// warming request that MarkCacheWarm recorded at its first byte was answered with
// an API error, which writes no cache.
func (s *Store) ColdCacheWarm(ctx context.Context, p CachePrefix) error {
	_, err := s.b.exec(ctx, `UPDATE clade_cache_warm SET warm_until = 0
		WHERE run_id = $1 AND model = $2 AND prefix = $3 AND claimed_by IS NULL`, p.RunID, p.Model, p.Key)
	if err != nil {
		return fmt.Errorf("mark cache prefix %s cold: %w", p.Key, err)
	}
	return nil
}
