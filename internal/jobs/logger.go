package jobs

import (
	"context"
	"log/slog"
)

// riverLog is the handler of River's logger: River's info lines (producer job
// counts every few seconds, client start and stop) are its internals, not the
// run's, so they are logged at debug level; warnings and errors keep theirs.
type riverLog struct{ h slog.Handler }

func quietRiver(l *slog.Logger) *slog.Logger { return slog.New(riverLog{l.Handler()}) }

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
	rec.Level = r.demote(rec.Level)
	return r.h.Handle(ctx, rec)
}

func (r riverLog) WithAttrs(attrs []slog.Attr) slog.Handler { return riverLog{r.h.WithAttrs(attrs)} }
func (r riverLog) WithGroup(name string) slog.Handler       { return riverLog{r.h.WithGroup(name)} }
