package upstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

func TestSecretRedacts(t *testing.T) {
	t.Parallel()
	s := upstream.NewSecret(" " + testKey + "\n")
	if s.Reveal() != testKey {
		t.Errorf("Reveal() = %q, want the trimmed key", s.Reveal())
	}
	j, _ := json.Marshal(s)
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "key", s)
	for _, got := range []string{
		s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s), string(j), logBuf.String(),
	} {
		if strings.Contains(got, testKey) || !strings.Contains(got, "REDACTED") {
			t.Errorf("printed Secret = %q, want [REDACTED] and no key", got)
		}
	}
	var zero upstream.Secret
	if !zero.IsZero() || zero.String() != "" || zero.Reveal() != "" {
		t.Errorf("zero Secret: IsZero %v String %q", zero.IsZero(), zero.String())
	}
}

// TestKeyNeverLeaks drives the client through success, every error kind, and a proxy
// that echoes the key back, then prints every returned value and the debug log every
// way a caller might, and looks for the key.
func TestKeyNeverLeaks(t *testing.T) {
	t.Parallel()
	var logBuf testkit.Buffer
	logger := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var values []any

	run := func(baseURL string, mod ...func(*upstream.Config)) {
		mods := append([]func(*upstream.Config){func(c *upstream.Config) { c.Logger = logger }}, mod...)
		c := newClient(t, baseURL, mods...)
		values = append(values, c)
		resp, err := c.Messages(context.Background(), []byte(params))
		values = append(values, resp, err)
		n, err := c.CountTokens(context.Background(), []byte(`{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"x"}]}`))
		values = append(values, n, err)
		b, err := c.GetBatch(context.Background(), "msgbatch_x")
		values = append(values, b, err)
	}
	run(startEmulator(t, emulator.Config{}).URL)
	run(startEmulator(t, emulator.Config{}).URL, func(c *upstream.Config) { c.Auth = upstream.AuthBearer })
	run(startEmulator(t, emulator.Config{APIKeys: []string{"sk-ant-other-key-999999999999"}}).URL) // 401
	run(startEmulator(t, emulator.Config{Faults: emulator.Faults{SpendCap: true}}).URL)
	run(startEmulator(t, emulator.Config{Faults: emulator.Faults{Drop: 1}}).URL)
	run(startEmulator(t, emulator.Config{Faults: emulator.Faults{Slow: 1, SlowDelay: 10 * time.Second}}).URL,
		func(c *upstream.Config) { c.RequestTimeout = 50 * time.Millisecond })
	// A misbehaving proxy that echoes the request's headers into its error body and
	// its headers; the emulator never does this.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("x-api-key") + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.Header().Set("request-id", "req_"+key)
		w.WriteHeader(400)
		io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"bad key `+key+`"}}`)
	}))
	t.Cleanup(echo.Close)
	run(echo.URL)
	htmlEcho := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(502)
		io.WriteString(w, "<html>"+r.Header.Get("x-api-key")+"</html>")
	}))
	t.Cleanup(htmlEcho.Close)
	run(htmlEcho.URL)
	values = append(values, upstream.Config{APIKey: upstream.NewSecret(testKey)})

	var dump bytes.Buffer
	text := slog.New(slog.NewTextHandler(&dump, nil))
	for _, v := range values {
		fmt.Fprintf(&dump, "%v\n%+v\n%#v\n", v, v, v)
		if err, ok := v.(error); ok && err != nil {
			dump.WriteString(err.Error())
		}
		if b, err := json.Marshal(v); err == nil {
			dump.Write(b)
		}
		text.Info("value", "v", v)
	}
	dump.WriteString(logBuf.String())
	if i := strings.Index(dump.String(), testKey); i >= 0 {
		lo := max(0, i-200)
		t.Fatalf("the API key appears in a printed value or log:\n...%s...", dump.String()[lo:i+len(testKey)])
	}
	if logBuf.Len() == 0 {
		t.Errorf("no debug log lines were written; the check above saw nothing")
	}
}
