package testkit

import (
	"os"
	"strconv"
	"testing"
)

// Environment variables holding the URLs of the services that tests may use. CI
// (.ci/run) sets both.
const (
	// PostgresEnv holds a Postgres URL, e.g.
	// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
	PostgresEnv = "CLADE_TEST_POSTGRES_URL"
	// RedisEnv holds a Redis URL, e.g. redis://127.0.0.1:6379/0.
	RedisEnv = "CLADE_TEST_REDIS_URL"
)

// Service returns the URL of a service the test needs, read from the environment
// variable env. When env is unset it skips the test, saying what to set, so the
// skip shows in go test -v; under CI (CI set to a true value, as CI runners and
// .ci/run's caller set it) it fails the test instead: a service test that skips
// in CI passes without testing anything. what names the service for the message,
// e.g. "Redis (e.g. redis://127.0.0.1:6379/0)".
func Service(tb testing.TB, env, what string) string {
	tb.Helper()
	if u := os.Getenv(env); u != "" {
		return u
	}
	if inCI() {
		tb.Fatalf("%s is not set and CI=%s: the tests that need %s must run in CI, not skip", env, os.Getenv("CI"), what)
	}
	tb.Skipf("%s is not set: set it to run the tests that need %s", env, what)
	return ""
}

// inCI reports whether the tests run in CI: the CI environment variable holds a
// true value (true, 1, …, as strconv.ParseBool reads it).
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// PostgresURL returns the Postgres the tests may use, CLADE_TEST_POSTGRES_URL, or
// skips the test (fails it under CI) as Service does.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return Service(tb, PostgresEnv, "Postgres (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
}

// RedisURL returns the Redis the tests may use, CLADE_TEST_REDIS_URL, or skips the
// test (fails it under CI) as Service does.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	return Service(tb, RedisEnv, "Redis (e.g. redis://127.0.0.1:6379/0)")
}
