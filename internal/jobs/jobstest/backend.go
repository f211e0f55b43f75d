// Package jobstest is the conformance suite of the job store: one set of tests
// that every backend (SQLite, and Postgres at CLADE_TEST_POSTGRES_URL) must pass,
// plus helpers to generate input files and open throw-away stores.
package jobstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/clade-dev/clade/internal/testkit"
)

// PostgresEnv is the environment variable holding the test Postgres URL, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = testkit.PostgresEnv

// Backend opens fresh, empty stores of one kind.
type Backend struct {
	Name string
	// server returns the URL of the database server the stores live on, skipping
	// the test when none is configured (failing it under CI, testkit.Service);
	// nil for a backend that needs no server.
	server func(tb testing.TB) string
	// newDSN returns the DSN of a new empty store on server.
	newDSN func(tb testing.TB, server string) string
}

// NewDSN returns the DSN of a new empty store, removed when tb ends. A backend
// that needs a server (Postgres) skips tb when its URL is not set, saying which
// variable to set, and fails it under CI=true: call NewDSN in the test (or
// subtest) that uses the store, so that the skip is that test's.
func (b Backend) NewDSN(tb testing.TB) string {
	tb.Helper()
	return b.newDSN(tb, b.require(tb))
}

// require returns the backend's server URL ("" for none), or skips (fails) tb as
// NewDSN does.
func (b Backend) require(tb testing.TB) string {
	tb.Helper()
	if b.server == nil {
		return ""
	}
	return b.server(tb)
}

// SQLite is the SQLite backend: a file in a temporary directory.
func SQLite() Backend {
	return Backend{Name: "sqlite", newDSN: func(tb testing.TB, _ string) string {
		return filepath.Join(tb.TempDir(), "store.db")
	}}
}

// Postgres is the Postgres backend at CLADE_TEST_POSTGRES_URL, one schema per
// store. It is listed whether or not the variable is set: its NewDSN skips (or
// fails under CI) when it is not.
func Postgres() Backend {
	return Backend{Name: "postgres", server: testkit.PostgresURL, newDSN: func(tb testing.TB, base string) string {
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
	}}
}

// Backends returns every backend, SQLite and Postgres. Run each in a subtest
// named for it that calls NewDSN: the Postgres one then shows as skipped (or
// fails under CI) when CLADE_TEST_POSTGRES_URL is not set.
func Backends() []Backend {
	return []Backend{SQLite(), Postgres()}
}
