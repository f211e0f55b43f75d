package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// Store is the durable state of runs: clade's tables and River's queue in one
// database. It is safe for concurrent use.
type Store struct {
	b      backend
	logger *slog.Logger
	now    func() time.Time
}

// Option configures Open.
type Option func(*Store)

// WithLogger sets the logger the store and its River clients log to. By default
// nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.logger = l
		}
	}
}

// WithClock sets the time source for created_at and finished_at. Defaults to
// time.Now.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// Open opens (creating if needed) the store at dsn and migrates River's and
// clade's tables. A dsn starting with postgres:// or postgresql:// is a Postgres
// database (pgx pool; a search_path=name parameter puts the tables in that
// schema); anything else is the path of a SQLite file (pure-Go driver, WAL, one
// connection for writes, busy timeout 10 s). A leading "sqlite:" is stripped.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	s := &Store{logger: discardLogger, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.b, err = openPostgres(ctx, dsn)
	case dsn == "":
		return nil, errors.New("open store: empty path")
	default:
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == ":memory:" || strings.HasPrefix(path, "file::memory:") {
			return nil, errors.New("open store: in-memory SQLite is not supported (it has no second connection for reads); use a file")
		}
		s.b, err = openSQLite(ctx, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", redactDSN(dsn), err)
	}
	if err := s.migrate(ctx); err != nil {
		s.b.close()
		return nil, fmt.Errorf("migrate store %s: %w", redactDSN(dsn), err)
	}
	return s, nil
}

// Backend returns "sqlite" or "postgres".
func (s *Store) Backend() string { return s.b.kind() }

// Close closes the database. Stop every Client of the store first.
func (s *Store) Close() error { return s.b.close() }

func (s *Store) migrate(ctx context.Context) error {
	unlock, err := s.b.migrateLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.b.migrateRiver(ctx); err != nil {
		return fmt.Errorf("river: %w", err)
	}
	if _, err := s.b.exec(ctx, `CREATE TABLE IF NOT EXISTS clade_migration (
		version    BIGINT NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL)`); err != nil {
		return err
	}
	migrations := sqliteMigrations
	if s.b.kind() == "postgres" {
		migrations = postgresMigrations
	}
	for i, stmts := range migrations {
		version := i + 1
		if err := s.inTx(ctx, func(tx txn) error {
			var n int
			if err := tx.queryRow(ctx, `SELECT count(*) FROM clade_migration WHERE version = $1`, version).Scan(&n); err != nil || n > 0 {
				return err
			}
			for _, q := range stmts {
				if _, err := tx.exec(ctx, q); err != nil {
					return fmt.Errorf("migration %d: %w", version, err)
				}
			}
			_, err := tx.exec(ctx, `INSERT INTO clade_migration (version, applied_at) VALUES ($1, $2)`, version, s.now().UnixMicro())
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx txn) error) error {
	tx, err := s.b.begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.commit(ctx)
}

// redactDSN hides a password in a Postgres URL.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return dsn[:scheme+3] + userinfo[:i] + ":xxxxx" + dsn[at:]
	}
	return dsn
}
