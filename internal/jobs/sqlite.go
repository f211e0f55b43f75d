package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sync"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/clade-dev/clade/internal/intake"
)

// SQLite settings. WAL lets readers run beside the one writer; synchronous=NORMAL
// in WAL mode loses no committed transaction on a process crash (only, possibly,
// the last ones on power loss); busy_timeout makes another process's writer wait
// instead of failing; _txlock=immediate takes the write lock at BEGIN, so two
// processes never deadlock upgrading a read transaction.
const (
	sqliteBusyTimeoutMS = 10000
	sqliteReadConns     = 4
)

type sqliteBackend struct {
	db   *sql.DB                // one connection: all writes, and River
	ro   *sql.DB                // read-only pool for long reads
	ins  *river.Client[*sql.Tx] // insert-only
	path string
}

func sqliteDSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS))
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	if readOnly {
		q.Add("_pragma", "query_only(ON)")
	} else {
		q.Set("_txlock", "immediate")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func openSQLite(ctx context.Context, path string) (*sqliteBackend, error) {
	db, err := sql.Open("sqlite", sqliteDSN(path, false))
	if err != nil {
		return nil, err
	}
	// River's SQLite driver needs one connection: SQLite allows one writer, and
	// River runs work in parallel that would otherwise fail with SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	ro, err := sql.Open("sqlite", sqliteDSN(path, true))
	if err != nil {
		db.Close()
		return nil, err
	}
	ro.SetMaxOpenConns(sqliteReadConns)
	ins, err := river.NewClient(riversqlite.New(db), &river.Config{Logger: discardLogger})
	if err != nil {
		db.Close()
		ro.Close()
		return nil, err
	}
	return &sqliteBackend{db: db, ro: ro, ins: ins, path: path}, nil
}

func (b *sqliteBackend) kind() string     { return "sqlite" }
func (b *sqliteBackend) runOfJob() string { return "json_extract(args, '$.run')" }
func (b *sqliteBackend) greatest() string { return "max" }
func (b *sqliteBackend) reader() querier  { return sqlQuerier{b.ro} }

func (b *sqliteBackend) close() error {
	return errors.Join(b.ro.Close(), b.db.Close())
}

func (b *sqliteBackend) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return sqlQuerier{b.db}.exec(ctx, q, args...)
}

func (b *sqliteBackend) query(ctx context.Context, q string, args ...any) (rows, error) {
	return sqlQuerier{b.db}.query(ctx, q, args...)
}

func (b *sqliteBackend) queryRow(ctx context.Context, q string, args ...any) row {
	return sqlQuerier{b.db}.queryRow(ctx, q, args...)
}

func (b *sqliteBackend) migrateRiver(ctx context.Context) error {
	m, err := rivermigrate.New(riversqlite.New(b.db), &rivermigrate.Config{Logger: discardLogger})
	if err != nil {
		return err
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// migrateLock is a no-op: each migration runs in a BEGIN IMMEDIATE transaction,
// which SQLite serialises between processes.
func (b *sqliteBackend) migrateLock(context.Context) (func(), error) { return func() {}, nil }

func (b *sqliteBackend) newClient(cfg *river.Config) (riverClient, error) {
	return river.NewClient(riversqlite.New(b.db), cfg)
}

func (b *sqliteBackend) begin(ctx context.Context) (txn, error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqliteTx{sqlQuerier: sqlQuerier{tx}, tx: tx, b: b}, nil
}

type sqliteTx struct {
	sqlQuerier
	tx *sql.Tx
	b  *sqliteBackend
}

func (t *sqliteTx) commit(context.Context) error   { return t.tx.Commit() }
func (t *sqliteTx) rollback(context.Context) error { return t.tx.Rollback() }

func (t *sqliteTx) insertRequests(ctx context.Context, runID int64, reqs []*intake.Request) ([]int64, error) {
	stmt, err := t.tx.PrepareContext(ctx, `INSERT INTO clade_request
		(run_id, custom_id, line, model, max_tokens, est_input_tokens, params)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
		ON CONFLICT (run_id, custom_id) DO NOTHING
		RETURNING id`)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	ids := make([]int64, len(reqs))
	for i, r := range reqs {
		err := stmt.QueryRowContext(ctx, runID, r.CustomID, r.Line, r.Model, r.MaxTokens, r.EstInputTokens, []byte(r.Params)).Scan(&ids[i])
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	return ids, nil
}

func (t *sqliteTx) insertJobs(ctx context.Context, params []river.InsertManyParams) error {
	_, err := t.b.ins.InsertManyFastTx(ctx, t.tx, params)
	return err
}

func (t *sqliteTx) completeJob(ctx context.Context, job *river.Job[requestArgs]) error {
	_, err := river.JobCompleteTx[*riversqlite.Driver](ctx, t.tx, job)
	return err
}

// sqlQuerier runs Postgres-style SQL on database/sql with SQLite placeholders.
type sqlQuerier struct {
	db interface {
		ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	}
}

var pgPlaceholder = regexp.MustCompile(`\$(\d+)`)

var sqliteQueries sync.Map // Postgres-style query → SQLite query

func toSQLite(q string) string {
	if v, ok := sqliteQueries.Load(q); ok {
		return v.(string)
	}
	s := pgPlaceholder.ReplaceAllString(q, "?$1")
	sqliteQueries.Store(q, s)
	return s
}

func (s sqlQuerier) exec(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := s.db.ExecContext(ctx, toSQLite(q), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQuerier) query(ctx context.Context, q string, args ...any) (rows, error) {
	r, err := s.db.QueryContext(ctx, toSQLite(q), args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (s sqlQuerier) queryRow(ctx context.Context, q string, args ...any) row {
	return s.db.QueryRowContext(ctx, toSQLite(q), args...)
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
