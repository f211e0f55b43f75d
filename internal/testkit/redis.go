package testkit

import (
	"os"
	"testing"
)

// RedisURL returns the Redis the tests may use, CLADE_TEST_REDIS_URL (CI sets it),
// or skips the test saying how to run it.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("CLADE_TEST_REDIS_URL")
	if u == "" {
		tb.Skip("set CLADE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) to run the tests that need Redis")
	}
	return u
}
