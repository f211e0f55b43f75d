package serve

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
)

// The access log: one structured line per call the gateway answers, written when
// Config.AccessLog is set (clade serve --access-log) or, without it, to the
// gateway's own log at debug level. A line names the team and the key's label
// (never the key: the label is the configured one or a hash prefix), the route,
// the status, the model, the queue wait, the usage and its cost, the upstream's
// request-id and the duration. With neither enabled, calls carry no entry and pay
// nothing for it.

// accessEntry is what the handlers learn about one call, filled as it goes.
type accessEntry struct {
	start    time.Time
	endpoint string
	team     string
	key      string // the key's label
	model    string
	stream   bool
	wait     time.Duration
	attempts int
	usage    *admit.Usage
	status   int
	bytes    int64
}

type accessCtxKey struct{}

// accessOf returns r's entry, or nil when calls are not logged.
func accessOf(r *http.Request) *accessEntry {
	e, _ := r.Context().Value(accessCtxKey{}).(*accessEntry)
	return e
}

// accessLogger is where the line goes, and at which level; nil when calls are
// not logged.
func (g *Gateway) accessLogger(ctx context.Context) (*slog.Logger, slog.Level) {
	if g.cfg.AccessLog != nil {
		return g.cfg.AccessLog, slog.LevelInfo
	}
	if g.log.Enabled(ctx, slog.LevelDebug) {
		return g.log, slog.LevelDebug
	}
	return nil, 0
}

// serveLogged serves r with h, and logs the call when the access log is on.
// Only the API's routes are logged (not /metrics, the status or the page).
func (g *Gateway) serveLogged(w http.ResponseWriter, r *http.Request, h http.Handler) {
	log, level := g.accessLogger(r.Context())
	if log == nil || !apiPath(r.URL.Path) {
		h.ServeHTTP(w, r)
		return
	}
	e := &accessEntry{start: g.now()}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		// A handler that aborts (a stream cut off) panics with ErrAbortHandler: the
		// line is written, then the panic goes on.
		p := recover()
		e.status, e.bytes = sw.status, sw.bytes
		if p != nil && e.status == 0 {
			e.status = http.StatusBadGateway
		}
		g.writeAccess(log, level, r, e, sw.Header().Get("request-id"), p != nil)
		if p != nil {
			panic(p)
		}
	}()
	h.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), accessCtxKey{}, e)))
}

// apiPath reports whether p is one of the API's paths (what the gateway forwards or
// answers as the API would), as opposed to the gateway's own pages.
func apiPath(p string) bool { return len(p) >= 4 && p[:4] == "/v1/" }

func (g *Gateway) writeAccess(log *slog.Logger, level slog.Level, r *http.Request, e *accessEntry, requestID string, aborted bool) {
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("endpoint", or(e.endpoint, epOther)),
		slog.Int("status", e.status),
		slog.String("team", or(e.team, teamNone)),
	}
	if e.key != "" {
		attrs = append(attrs, slog.String("key", e.key))
	}
	if e.model != "" {
		attrs = append(attrs, slog.String("model", e.model), slog.Bool("stream", e.stream))
	}
	if e.attempts > 0 {
		attrs = append(attrs, slog.Int("attempts", e.attempts), slog.Float64("queue_wait_s", e.wait.Seconds()))
	}
	if u := e.usage; u != nil {
		attrs = append(attrs, slog.Int64("input_tokens", u.InputTokens), slog.Int64("output_tokens", u.OutputTokens),
			slog.Int64("cache_read_tokens", u.CacheReadInputTokens), slog.Int64("cache_write_tokens", u.CacheCreationInputTokens))
		if cost, ok := g.costOf(e.model, u); ok {
			attrs = append(attrs, slog.Float64("cost_usd", cost))
		}
	}
	if requestID != "" {
		attrs = append(attrs, slog.String("request_id", string(g.up.Scrub([]byte(requestID)))))
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	attrs = append(attrs, slog.Int64("bytes", e.bytes), slog.Float64("duration_s", g.now().Sub(e.start).Seconds()))
	log.LogAttrs(r.Context(), level, "call", attrs...)
}

// costOf prices a usage by the catalog at the Messages (not batch) rate.
func (g *Gateway) costOf(model string, u *admit.Usage) (float64, bool) {
	cat := g.cfg.Catalog
	if cat == nil {
		return 0, false
	}
	m, err := cat.Resolve(model)
	if err != nil {
		return 0, false
	}
	return cat.Cost(m, catalog.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheWrite5mTokens: u.CacheCreationInputTokens, CacheReadTokens: u.CacheReadInputTokens}, false), true
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// statusWriter records the status and the bytes written. It passes Flush on (the
// SSE relay flushes each event) and Unwrap for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
