package testkit_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/testkit"
)

// endTB is a testing.TB whose Skipf and Fatalf record how the test ended and stop
// the goroutine, as testing.T's do; its other methods are the real test's.
type endTB struct {
	testing.TB
	ended string // "skip" or "fatal"
	msg   string
}

func (f *endTB) Helper() {}

func (f *endTB) Skip(args ...any) { f.end("skip", fmt.Sprint(args...)) }

func (f *endTB) Fatalf(format string, args ...any) { f.end("fatal", fmt.Sprintf(format, args...)) }

func (f *endTB) end(how, msg string) {
	f.ended, f.msg = how, msg
	runtime.Goexit()
}

// TestService: a service test gets the URL when it is set; when it is not, it is
// skipped, except under CI=true (or another true value), where it fails.
// Not parallel: it sets CI.
func TestService(t *testing.T) {
	const env = "CLADE_TEST_TESTKIT_SERVICE_URL"
	tests := []struct {
		name    string
		url, ci string
		want    string // the URL returned, or how the test ended
	}{
		{name: "set", url: "x://y", ci: "", want: "x://y"},
		{name: "set in CI", url: "x://y", ci: "true", want: "x://y"},
		{name: "unset", url: "", ci: "", want: "skip"},
		{name: "unset with CI=false", url: "", ci: "false", want: "skip"},
		{name: "unset in CI", url: "", ci: "true", want: "fatal"},
		{name: "unset with CI=1", url: "", ci: "1", want: "fatal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(env, tt.url)
			t.Setenv("CI", tt.ci)
			tb := &endTB{TB: t}
			var got string
			done := make(chan struct{})
			go func() {
				defer close(done)
				got = testkit.Service(tb, env, "the test service")
			}()
			<-done
			if tb.ended != "" {
				got = tb.ended
			}
			if got != tt.want {
				t.Errorf("Service(%s=%q, CI=%q) = %s (%s), want %s", env, tt.url, tt.ci, got, tb.msg, tt.want)
			}
			if tb.ended != "" && !strings.Contains(tb.msg, env) {
				t.Errorf("Service(%s=%q, CI=%q) %s message %q does not name %s", env, tt.url, tt.ci, tb.ended, tb.msg, env)
			}
		})
	}
}
