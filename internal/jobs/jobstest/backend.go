// Package jobstest is the conformance suite of the job store: one set of tests
// that every backend (SQLite always, Postgres when CLADE_TEST_POSTGRES_URL is set)
// must pass, plus helpers to generate input files and open throw-away stores.
package jobstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv is the environment variable holding the test Postgres URL, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "CLADE_TEST_POSTGRES_URL"

// Backend opens fresh, empty stores of one kind.
type Backend struct {
	Name string
	// NewDSN returns the DSN of a new empty store, removed when tb ends.
	NewDSN func(tb testing.TB) string
}

// SQLite is the SQLite backend: a file in a temporary directory.
func SQLite() Backend {
	return Backend{Name: "sqlite", NewDSN: func(tb testing.TB) string {
		return filepath.Join(tb.TempDir(), "store.db")
	}}
}

// Postgres is the Postgres backend, one schema per store, or false when
// CLADE_TEST_POSTGRES_URL is not set.
func Postgres() (Backend, bool) {
	base := os.Getenv(PostgresEnv)
	if base == "" {
		return Backend{}, false
	}
	return Backend{Name: "postgres", NewDSN: func(tb testing.TB) string {
		tb.Helper()
		var b [6]byte
		_, _ = rand.Read(b[:])
		schema := "jobstest_" + hex.EncodeToString(b[:])
		u, err := url.Parse(base)
		if err != nil {
			tb.Fatalf("parse %s: %v", PostgresEnv, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		tb.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, base)
			if err != nil {
				tb.Errorf("drop schema %s: %v", schema, err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
				tb.Errorf("drop schema %s: %v", schema, err)
			}
		})
		return u.String()
	}}, true
}

// Backends returns SQLite, and Postgres when configured; when it is not, it says
// so in the test log.
func Backends(tb testing.TB) []Backend {
	out := []Backend{SQLite()}
	if pg, ok := Postgres(); ok {
		out = append(out, pg)
	} else {
		tb.Logf("postgres backend skipped: %s is not set", PostgresEnv)
	}
	return out
}
