package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultSystemRoleBetas is Config.SystemRoleBetas's default: the betas with which
// Claude Code sends system-role messages (2.1.332 sends the first, 2.1.197 the
// second).
var DefaultSystemRoleBetas = []string{"mid-conversation-tool-changes-2026-07-01", "mid-conversation-system-2026-04-07"}

// API versions the emulator accepts in anthropic-version.
const (
	Version2023 = "2023-06-01"
	Version2026 = "2026-10-21"
)

// Body size limits, as the API applies them (anthropic-api.md 2.1).
const (
	MaxMessageBody     = 32 << 20
	MaxBatchCreateBody = 256 << 20
)

// Config configures a Server. The zero value is usable: the embedded catalog, the
// "start" tier, any non-empty key, latency off, real-time batch clock.
type Config struct {
	// Catalog supplies models, tiers and prices. Default: catalog.Default().
	Catalog *catalog.Catalog
	// Tier names the tier whose limits apply. Default: "start".
	Tier string
	// APIKeys, when non-empty, are the only keys accepted; otherwise any non-empty key is.
	APIKeys []string
	// Seed makes generated outputs deterministic: the same seed and request body give
	// the same response. Default 0.
	Seed int64
	// LatencyScale multiplies the per-class latency model (time to first token and
	// output tokens per second). 0 turns latency off; 1 is the modelled speed.
	LatencyScale float64
	// ClockSpeed runs the batch lifecycle (processing, 24 h expiry, 29-day archiving)
	// this many times faster than real time. Rate-limit buckets always use real time.
	// Default 1.
	ClockSpeed float64
	// BatchProcessingRate is how many batch requests per second (of emulator clock)
	// the batch engine finishes. Default 1000.
	BatchProcessingRate float64
	// BatchRetention is how long after created_at a batch's results can be
	// downloaded (archived_at); later they answer 404. Default 29 days, the API's.
	// A test that runs the clock far ahead may set it longer.
	BatchRetention time.Duration
	// LegacyOTPM reserves max_tokens against OTPM at admission (the pre-2026 rule)
	// instead of charging only generated tokens.
	LegacyOTPM bool
	// RedactedThinkingRate is the share of thinking blocks that come back as
	// redacted_thinking (opaque data, no text), as the API returns when parts of a
	// thinking were flagged. Default 0.
	RedactedThinkingRate float64
	// BurstFraction is the bucket capacity as a fraction of one minute's limit. The API
	// may enforce a per-minute limit over shorter windows; 1 (default) allows a full
	// minute's burst, 1/60 enforces per second.
	BurstFraction float64
	// BatchItemErrorRate is the fraction of valid batch requests that end errored with
	// a retryable api_error or overloaded_error instead of succeeding. Default 0.
	BatchItemErrorRate float64
	// BatchCacheGroup makes the prompt cache of Message Batches best effort, as the
	// API's is: a batch's requests are looked up in consecutive groups of this many,
	// processed together, so a prefix written by one request of a group is a write
	// again for the group's other requests and a read only from the next group on.
	// 1 is every write readable by the next request (a batch always reads after a
	// prefix's first line). Default DefaultBatchCacheGroup (4): docs/emulator.md.
	BatchCacheGroup int
	// BaseURL, when set, is the absolute base of results_url (e.g. https://emu.example);
	// otherwise it is built from the request's Host.
	BaseURL string
	// Output shapes generated output lengths.
	Output OutputModel
	// Faults injects errors from the start; see SetFaults for changing them later.
	Faults Faults
	// Logger receives structured logs. Default: discard.
	Logger *slog.Logger
	// Registry receives the Prometheus metrics. Default: a private registry, served
	// at /metrics.
	Registry *prometheus.Registry
	// SystemRoleBetas are the anthropic-beta values under which messages may hold
	// role "system" items with API version 2023-06-01 (2026-10-21 always allows
	// them). Claude Code sends such messages with the first; which betas the API
	// ties them to is not documented, hence a setting. Default:
	// DefaultSystemRoleBetas; an empty non-nil slice allows them under none.
	SystemRoleBetas []string
	// OrganizationID is sent in anthropic-organization-id and named in 429 messages.
	OrganizationID string
	// Now is the real-time clock. Default time.Now. Tests may inject one.
	Now func() time.Time
}

// OutputModel is the distribution of generated output lengths: log-normal with the
// given median, cut at the request's max_tokens (which then ends with "max_tokens").
type OutputModel struct {
	// MedianTokens is the median output length. Default 120.
	MedianTokens float64
	// Sigma is the log-normal spread. Default 0.5. 0 gives exactly MedianTokens.
	Sigma float64
}

// Server is the emulated Anthropic API. It is an http.Handler; Run or Start serve it.
type Server struct {
	cfg     Config
	cat     *catalog.Catalog
	tier    *catalog.Tier
	log     *slog.Logger
	mux     *http.ServeMux
	clock   *Clock
	limits  *limiter
	cache   *promptCache
	metrics *metrics
	faults  *faultState
	batches *batchEngine
	keys    map[string]bool
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Catalog == nil {
		cfg.Catalog = catalog.Default()
	}
	if cfg.SystemRoleBetas == nil {
		cfg.SystemRoleBetas = DefaultSystemRoleBetas
	}
	if cfg.Tier == "" {
		cfg.Tier = "start"
	}
	tier, err := cfg.Catalog.Tier(cfg.Tier)
	if err != nil {
		return nil, err
	}
	if cfg.ClockSpeed == 0 {
		cfg.ClockSpeed = 1
	}
	if cfg.ClockSpeed < 0 {
		return nil, fmt.Errorf("clock speed %v: must be positive", cfg.ClockSpeed)
	}
	if cfg.LatencyScale < 0 {
		return nil, fmt.Errorf("latency scale %v: must be 0 or more", cfg.LatencyScale)
	}
	if cfg.BatchRetention <= 0 {
		cfg.BatchRetention = defaultBatchRetention
	}
	if cfg.BatchProcessingRate == 0 {
		cfg.BatchProcessingRate = 1000
	}
	if cfg.BatchCacheGroup == 0 {
		cfg.BatchCacheGroup = DefaultBatchCacheGroup
	}
	if cfg.BatchCacheGroup < 0 {
		return nil, fmt.Errorf("batch cache group %d: must be 1 or more", cfg.BatchCacheGroup)
	}
	if cfg.BurstFraction == 0 {
		cfg.BurstFraction = 1
	}
	if cfg.BurstFraction < 0 || cfg.BurstFraction > 1 {
		return nil, fmt.Errorf("burst fraction %v: must be in (0, 1]", cfg.BurstFraction)
	}
	if cfg.Output.MedianTokens == 0 {
		cfg.Output.MedianTokens = 120
		if cfg.Output.Sigma == 0 {
			cfg.Output.Sigma = 0.5
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.OrganizationID == "" {
		cfg.OrganizationID = "00000000-0000-4000-8000-00000000c1ad"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		cat:   cfg.Catalog,
		tier:  tier,
		log:   cfg.Logger,
		mux:   http.NewServeMux(),
		clock: NewClock(cfg.Now, cfg.ClockSpeed),
		keys:  make(map[string]bool, len(cfg.APIKeys)),
	}
	for _, k := range cfg.APIKeys {
		s.keys[k] = true
	}
	s.limits = newLimiter(cfg.Catalog, tier, cfg.BurstFraction, cfg.LegacyOTPM)
	s.cache = newPromptCache()
	s.metrics = newMetrics(cfg.Registry)
	s.metrics.watch(cfg.Registry, cfg.Catalog, s.limits, cfg.Now)
	s.faults = newFaultState(cfg.Faults, cfg.Seed)
	s.batches = newBatchEngine(s)
	s.routes()
	return s, nil
}

// Clock returns the emulator's batch clock.
func (s *Server) Clock() *Clock { return s.clock }

func (s *Server) routes() {
	api := func(h func(http.ResponseWriter, *http.Request, *call)) http.Handler {
		return s.apiHandler(h)
	}
	s.mux.Handle("POST /v1/messages", api(s.handleMessages))
	s.mux.Handle("POST /v1/messages/count_tokens", api(s.handleCountTokens))
	s.mux.Handle("POST /v1/messages/batches", api(s.handleBatchCreate))
	s.mux.Handle("GET /v1/messages/batches", api(s.handleBatchList))
	s.mux.Handle("GET /v1/messages/batches/{id}", api(s.handleBatchGet))
	s.mux.Handle("POST /v1/messages/batches/{id}/cancel", api(s.handleBatchCancel))
	s.mux.Handle("DELETE /v1/messages/batches/{id}", api(s.handleBatchDelete))
	s.mux.Handle("GET /v1/messages/batches/{id}/results", api(s.handleBatchResults))
	s.mux.Handle("GET /v1/models", api(s.handleModelList))
	s.mux.Handle("GET /v1/models/{id}", api(s.handleModelGet))
	s.mux.Handle("GET /metrics", s.metrics.handler(s.cfg.Registry))
	s.mux.Handle("GET /_emulator/faults", http.HandlerFunc(s.handleFaultsGet))
	s.mux.Handle("PUT /_emulator/faults", http.HandlerFunc(s.handleFaultsPut))
	s.mux.Handle("POST /_emulator/clock", http.HandlerFunc(s.handleClock))
	s.mux.Handle("GET /_emulator/health", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	}))
}

// ServeHTTP serves the emulated API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Known paths with a wrong method get the API's 405-as-404 treatment; unknown
	// paths a not_found_error envelope.
	if _, pattern := s.mux.Handler(r); pattern == "" {
		rid := s.newRequestID()
		w.Header().Set("request-id", rid)
		s.writeError(w, rid, wire.Errorf(wire.NotFound, "Not found"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// call is the per-request context the API handlers share.
type call struct {
	requestID string
	version   string
	// betas are the anthropic-beta header's values.
	betas    []string
	endpoint string
	// class is the model class the request named, once known ("" before).
	class string
	start time.Time
}

// apiHandler wraps an API endpoint: request id, auth, version, metrics.
func (s *Server) apiHandler(h func(http.ResponseWriter, *http.Request, *call)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{requestID: s.newRequestID(), start: s.cfg.Now(), endpoint: endpointName(r)}
		w.Header().Set("request-id", c.requestID)
		w.Header().Set("anthropic-organization-id", s.cfg.OrganizationID)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			d := s.cfg.Now().Sub(c.start)
			s.metrics.observeResponse(c.endpoint, c.class, rec.status(), d)
			s.logRequest(r.Context(), c, rec.status(), d)
		}()
		if err := s.authenticate(r); err != nil {
			s.writeError(rec, c.requestID, err)
			return
		}
		v := r.Header.Get("anthropic-version")
		switch v {
		case Version2023, Version2026:
			c.version = v
		case "":
			s.writeError(rec, c.requestID, wire.Errorf(wire.InvalidRequest, "anthropic-version: header is required"))
			return
		default:
			s.writeError(rec, c.requestID, wire.Errorf(wire.InvalidRequest, "anthropic-version: invalid version %q", v))
			return
		}
		for _, h := range r.Header.Values("anthropic-beta") {
			for b := range strings.SplitSeq(h, ",") {
				if b = strings.TrimSpace(b); b != "" {
					c.betas = append(c.betas, b)
				}
			}
		}
		h(rec, r, c)
	})
}

func (s *Server) authenticate(r *http.Request) *wire.Error {
	key := r.Header.Get("x-api-key")
	if key == "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			key = strings.TrimSpace(a[7:])
		}
	}
	if key == "" {
		return wire.Errorf(wire.Authentication, "x-api-key header is required")
	}
	if len(s.keys) > 0 && !s.keys[key] {
		return wire.Errorf(wire.Authentication, "invalid x-api-key")
	}
	return nil
}

func endpointName(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/v1/messages":
		return "messages"
	case p == "/v1/messages/count_tokens":
		return "count_tokens"
	case strings.HasPrefix(p, "/v1/messages/batches"):
		return "batches"
	case strings.HasPrefix(p, "/v1/models"):
		return "models"
	default:
		return "other"
	}
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns prefix + "01" + 22 random base62 characters, the shape real ids have.
// The characters come from math/rand/v2's per-thread generator, ten from each draw: ids
// must be unique, not secret, and the crypto/rand read was half the cost of each id.
func newID(prefix string) string {
	var b [24]byte
	b[0], b[1] = '0', '1'
	for i := 2; i < len(b); {
		x := mrand.Uint64()
		for j := 0; j < 10 && i < len(b); j++ {
			b[i] = base62[x%62]
			x /= 62
			i++
		}
	}
	return prefix + string(b[:])
}

func (s *Server) newRequestID() string { return newID("req_") }

// writeJSON writes v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func (s *Server) writeError(w http.ResponseWriter, requestID string, e *wire.Error) {
	w.Header().Set("Content-Type", "application/json")
	if e.Status == 529 {
		w.Header().Set("x-should-retry", "true")
	}
	w.WriteHeader(e.Status)
	w.Write(e.MarshalEnvelope(requestID))
	s.metrics.observeError(e)
}

// readBody reads at most limit bytes; a larger body is a 413 request_too_large.
func readBody(r *http.Request, limit int64) ([]byte, *wire.Error) {
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, wire.Errorf(wire.InvalidRequest, "could not read the request body")
	}
	if int64(len(body)) > limit {
		return nil, tooLarge(limit)
	}
	return body, nil
}

func tooLarge(limit int64) *wire.Error {
	e := wire.Errorf(wire.RequestTooLarge, "Request exceeds the maximum allowed number of bytes (%d).", limit)
	return e
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) status() int {
	if r.code == 0 {
		return 200
	}
	return r.code
}

// Flush lets SSE handlers flush through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
