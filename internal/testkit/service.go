package testkit

import (
	"fmt"
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
	Unavailable(tb, "%s is not set: set it to run the tests that need %s", env, what)
	return ""
}

// Unavailable ends a test whose precondition this machine lacks (a service, root
// for a tmpfs): it skips the test with the message, or, under CI (the CI
// environment variable holds a true value, as strconv.ParseBool reads it: true,
// 1, …), fails it, since CI provides everything the tests need and a skip there
// would pass without testing.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		tb.Fatalf("%s (CI=%s: a test that CI skips passes without testing)", msg, os.Getenv("CI"))
	}
	tb.Skip(msg)
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
