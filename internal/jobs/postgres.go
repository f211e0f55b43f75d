package jobs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/clade-dev/clade/internal/intake"
)

// postgresMaxConns is the pool size when the DSN does not set pool_max_conns:
// enough for River's own connections plus one completing transaction per worker
// for typical worker counts.
const postgresMaxConns = 32

var pgIdent = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

type postgresBackend struct {
	pool   *pgxpool.Pool
	ins    *river.Client[pgx.Tx] // insert-only
	schema string                // from search_path, or "" for the server's default
}

func openPostgres(ctx context.Context, dsn string) (*postgresBackend, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = postgresMaxConns
	}
	// A search_path of one plain name selects the schema for clade's and River's
	// tables (created when missing); tests use one schema each.
	schema := ""
	if sp := strings.TrimSpace(cfg.ConnConfig.RuntimeParams["search_path"]); sp != "" && pgIdent.MatchString(sp) {
		schema = sp
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if schema != "" {
		if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			var pgErr *pgconn.PgError
			// Concurrent CREATE SCHEMA IF NOT EXISTS can still race on the catalog.
			if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
				pool.Close()
				return nil, fmt.Errorf("create schema %s: %w", schema, err)
			}
		}
	}
	ins, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: discardLogger, Schema: schema})
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &postgresBackend{pool: pool, ins: ins, schema: schema}, nil
}

func (b *postgresBackend) kind() string     { return "postgres" }
func (b *postgresBackend) runOfJob() string { return "(args->>'run')::bigint" }
func (b *postgresBackend) requestOfJob() string {
	return "(args->>'req')::bigint"
}
func (b *postgresBackend) greatest() string { return "greatest" }
func (b *postgresBackend) reader() querier  { return pgQuerier{b.pool} }

// heartbeat is the pool: it has connections enough that a beat does not wait
// long for one.
func (b *postgresBackend) heartbeat() querier { return pgQuerier{b.pool} }
func (b *postgresBackend) close() error       { b.pool.Close(); return nil }

func (b *postgresBackend) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return pgQuerier{b.pool}.exec(ctx, q, args...)
}

func (b *postgresBackend) query(ctx context.Context, q string, args ...any) (rows, error) {
	return pgQuerier{b.pool}.query(ctx, q, args...)
}

func (b *postgresBackend) queryRow(ctx context.Context, q string, args ...any) row {
	return pgQuerier{b.pool}.queryRow(ctx, q, args...)
}

func (b *postgresBackend) migrateRiver(ctx context.Context) error {
	m, err := rivermigrate.New(riverpgxv5.New(b.pool), &rivermigrate.Config{Logger: discardLogger, Schema: b.schema})
	if err != nil {
		return err
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// migrateLock holds a session advisory lock so that two processes opening the
// same database at once migrate one after the other.
func (b *postgresBackend) migrateLock(ctx context.Context) (func(), error) {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	key := "clade_migrate:" + b.schema
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", key); err != nil {
		conn.Release()
		return nil, err
	}
	return func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", key)
		conn.Release()
	}, nil
}

func (b *postgresBackend) newClient(cfg *river.Config) (riverClient, error) {
	cfg.Schema = b.schema
	return river.NewClient(riverpgxv5.New(b.pool), cfg)
}

func (b *postgresBackend) begin(ctx context.Context) (txn, error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &postgresTx{pgQuerier: pgQuerier{tx}, tx: tx, b: b}, nil
}

type postgresTx struct {
	pgQuerier
	tx pgx.Tx
	b  *postgresBackend
}

func (t *postgresTx) commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t *postgresTx) rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

// insertRequests inserts the whole batch in one statement over unnest'ed arrays.
// ON CONFLICT DO NOTHING skips ids already in the run, and the later of two equal
// ids within the batch (rows go in ordinality order).
func (t *postgresTx) insertRequests(ctx context.Context, runID int64, reqs []*intake.Request) ([]int64, error) {
	n := len(reqs)
	ids, lines, models := make([]string, n), make([]int64, n), make([]string, n)
	maxTok, est, params := make([]int64, n), make([]int64, n), make([][]byte, n)
	prefix, prefixTok, ttl := make([]*string, n), make([]*int64, n), make([]*int64, n)
	at := make(map[int64]int, n)
	for i, r := range reqs {
		ids[i], lines[i], models[i] = r.CustomID, int64(r.Line), r.Model
		maxTok[i], est[i], params[i] = r.MaxTokens, r.EstInputTokens, r.Params
		if k, tk, tl := prefixColumns(r.Cache); k != nil {
			ks, tks, tls := k.(string), tk.(int64), tl.(int64)
			prefix[i], prefixTok[i], ttl[i] = &ks, &tks, &tls
		}
		at[int64(r.Line)] = i
	}
	q := `INSERT INTO clade_request
			(run_id, custom_id, line, model, max_tokens, est_input_tokens, params)
		SELECT $1, u.custom_id, u.line, u.model, u.max_tokens, u.est, u.params
		FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bytea[])
			WITH ORDINALITY AS u (custom_id, line, model, max_tokens, est, params, ord)
		ORDER BY u.ord
		ON CONFLICT (run_id, custom_id) DO NOTHING
		RETURNING id, line`
	args := []any{runID, ids, lines, models, maxTok, est, params}
	if anyPrefix(reqs) { // the cache columns are written only by a batch that has a prefix
		q = `INSERT INTO clade_request
			(run_id, custom_id, line, model, max_tokens, est_input_tokens, params, cache_prefix, cache_prefix_tokens, cache_ttl)
		SELECT $1, u.custom_id, u.line, u.model, u.max_tokens, u.est, u.params, u.prefix, u.prefix_tokens, u.ttl
		FROM unnest($2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bytea[], $8::text[], $9::bigint[], $10::bigint[])
			WITH ORDINALITY AS u (custom_id, line, model, max_tokens, est, params, prefix, prefix_tokens, ttl, ord)
		ORDER BY u.ord
		ON CONFLICT (run_id, custom_id) DO NOTHING
		RETURNING id, line`
		args = append(args, prefix, prefixTok, ttl)
	}
	rs, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := make([]int64, n)
	for rs.Next() {
		var id, line int64
		if err := rs.Scan(&id, &line); err != nil {
			return nil, err
		}
		out[at[line]] = id
	}
	return out, rs.Err()
}

// insertJobs uses River's InsertManyFastTx (COPY FROM).
func (t *postgresTx) insertJobs(ctx context.Context, runID int64, ids []int64, maxAttempts int) error {
	opts := &river.InsertOpts{MaxAttempts: maxAttempts}
	params := make([]river.InsertManyParams, 0, len(ids))
	for _, id := range ids {
		if id != 0 {
			params = append(params, river.InsertManyParams{Args: requestArgs{Run: runID, Request: id}, InsertOpts: opts})
		}
	}
	if len(params) == 0 {
		return nil
	}
	_, err := t.b.ins.InsertManyFastTx(ctx, t.tx, params)
	return err
}

func (t *postgresTx) completeJob(ctx context.Context, job *river.Job[requestArgs]) error {
	_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, t.tx, job)
	return err
}

// pgQuerier runs SQL on a pgx pool or transaction.
type pgQuerier struct {
	db interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	}
}

func (p pgQuerier) exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := p.db.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (p pgQuerier) query(ctx context.Context, q string, args ...any) (rows, error) {
	return p.db.Query(ctx, q, args...)
}

func (p pgQuerier) queryRow(ctx context.Context, q string, args ...any) row {
	return p.db.QueryRow(ctx, q, args...)
}
