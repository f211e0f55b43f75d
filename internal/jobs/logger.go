package jobs

import (
	"context"
	"log/slog"
	"sync"
)

// riverLog is the handler of River's logger: River's info lines (producer job
// counts every few seconds, client start and stop) are its internals, not the
// run's, so they are logged at debug level; warnings and errors keep theirs.
// Once its gate is cut (Client.Detach), it logs nothing more.
type riverLog struct {
	h    slog.Handler
	gate *logGate
}

// logGate lets a Client cut off its River logger: after cut returns, no line is
// being written and none will be.
type logGate struct {
	mu  sync.RWMutex
	off bool
}

func (g *logGate) cut() {
	g.mu.Lock()
	g.off = true
	g.mu.Unlock()
}

func quietRiver(l *slog.Logger, gate *logGate) *slog.Logger {
	return slog.New(riverLog{l.Handler(), gate})
}

func (r riverLog) demote(level slog.Level) slog.Level {
	if level < slog.LevelWarn {
		return min(level, slog.LevelDebug)
	}
	return level
}

func (r riverLog) Enabled(ctx context.Context, level slog.Level) bool {
	return r.h.Enabled(ctx, r.demote(level))
}

func (r riverLog) Handle(ctx context.Context, rec slog.Record) error {
	r.gate.mu.RLock()
	defer r.gate.mu.RUnlock()
	if r.gate.off {
		return nil
	}
	rec.Level = r.demote(rec.Level)
	return r.h.Handle(ctx, rec)
}

func (r riverLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return riverLog{r.h.WithAttrs(attrs), r.gate}
}
func (r riverLog) WithGroup(name string) slog.Handler { return riverLog{r.h.WithGroup(name), r.gate} }
