package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// River's info lines must not reach a run's info-level log (they interleave with the
// progress display); at debug level they show, and its warnings always do.
func TestQuietRiver(t *testing.T) {
	for _, tt := range []struct {
		level slog.Level
		want  []string
	}{
		{slog.LevelInfo, []string{"river warns"}},
		{slog.LevelDebug, []string{"river informs", "river warns"}},
	} {
		var buf bytes.Buffer
		l := quietRiver(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level})), &logGate{}).With("client", "x")
		l.InfoContext(context.Background(), "river informs")
		l.Warn("river warns")
		out := buf.String()
		if got := strings.Count(out, "\n"); got != len(tt.want) {
			t.Errorf("at %v: %d lines, want %d:\n%s", tt.level, got, len(tt.want), out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) || !strings.Contains(out, "client=x") {
				t.Errorf("at %v: log lacks %q with its attrs:\n%s", tt.level, w, out)
			}
		}
		if tt.level == slog.LevelDebug && !strings.Contains(out, "level=DEBUG msg=\"river informs\"") {
			t.Errorf("River's info line is not at debug level:\n%s", out)
		}
	}
}

// Once a client's log gate is cut (Client.Detach), River writes nothing more, from
// loggers derived before or after: a caller that gave up waiting for River to stop
// can close what the log writes to.
func TestRiverLogDetached(t *testing.T) {
	var buf bytes.Buffer
	gate := &logGate{}
	l := quietRiver(slog.New(slog.NewTextHandler(&buf, nil)), gate)
	derived := l.With("client", "x")
	derived.Warn("before")
	gate.cut()
	l.Warn("after")
	derived.Error("after")
	l.WithGroup("g").Warn("after")
	if out := buf.String(); !strings.Contains(out, "before") || strings.Contains(out, "after") {
		t.Errorf("log after the gate was cut:\n%s", out)
	}
}
