package jobs

import "context"

// OpenBeforeLastMigration opens dsn as a store made by the version before the
// last migration of its backend: every migration but the last is applied. Not
// safe for parallel tests: it swaps the migration lists while it opens.
func OpenBeforeLastMigration(ctx context.Context, dsn string) (*Store, error) {
	sq, pg := sqliteMigrations, postgresMigrations
	sqliteMigrations, postgresMigrations = sq[:len(sq)-1], pg[:len(pg)-1]
	defer func() { sqliteMigrations, postgresMigrations = sq, pg }()
	return Open(ctx, dsn)
}

// HasIndex reports whether the store has an index named name (in its schema, on
// Postgres).
func (s *Store) HasIndex(ctx context.Context, name string) (bool, error) {
	q := `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = $1`
	if s.b.kind() == "postgres" {
		q = `SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1`
	}
	var n int
	err := s.b.queryRow(ctx, q, name).Scan(&n)
	return n > 0, err
}

// Exec runs one statement on the store.
func (s *Store) Exec(ctx context.Context, q string) error {
	_, err := s.b.exec(ctx, q)
	return err
}
