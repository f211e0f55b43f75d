package serve

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
	"github.com/clade-dev/clade/internal/wire"
)

// Config configures a Gateway. Upstream and Limiter are required.
type Config struct {
	// Upstream is the API client holding the organisation's key.
	Upstream *upstream.Client
	// Limiter admits Messages calls; give gateways of one organisation limiters on one
	// shared (Redis) backend.
	Limiter *admit.Limiter
	// Keys maps client keys to teams. Nil accepts any non-empty client key, all as
	// one team (DefaultTeam): only safe on a listener nobody else can reach.
	Keys *Keys
	// MaxWait bounds how long a Messages call waits for admission, retries included,
	// before the client gets a 429 rate_limit_error. Default 10 minutes.
	MaxWait time.Duration
	// MaxQueue bounds the calls waiting for admission across teams; beyond it a call
	// gets a 429 at once. Default 10,000.
	MaxQueue int
	// MaxQueueBytes bounds the request bodies (up to 32 MB each) held by the calls
	// waiting for admission across teams, so that a queue of large prompts cannot
	// exhaust memory; beyond it a call gets a 429 at once. Default 1 GiB.
	MaxQueueBytes int64
	// MaxAttempts is the most upstream attempts of one Messages call when the API
	// answers 429 or 529 before anything was sent to the client. Default 4; 1
	// passes every 429 and 529 on.
	MaxAttempts int
	// Backoff spaces the retries after a 529 (a 429 waits out the class's pause in
	// admission instead). Default: upstream.Backoff's defaults.
	Backoff upstream.Backoff
	// Registry, when set, receives the gateway's metrics, and is served at /metrics.
	Registry *prometheus.Registry
	// Logger receives one line per failed call and per upstream 429/529; never a key,
	// a prompt or a completion. Default: discard.
	Logger *slog.Logger
	// AccessLog, when set, receives one line per API call at info level (see
	// access.go); without it, Logger gets them when it logs at debug level.
	AccessLog *slog.Logger
	// Spend is the store of what the teams and keys spent, required when Keys
	// configure a budget (Keys.HasBudgets): every gateway on one store shares it.
	Spend *jobs.Store
	// Catalog prices the calls for the budgets. Default catalog.Default(); give
	// the limiter's.
	Catalog *catalog.Catalog
	// Order, when set, puts the Messages calls of every gateway on its Redis in one
	// fair order (see SharedOrder); nil: each gateway is fair over its own calls.
	Order *SharedOrder
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// validate refuses what no default can stand for: a missing part, a negative bound
// (zero means the default; a negative value is an error, not silently replaced).
func (c Config) validate() error {
	var errs []error
	if c.Upstream == nil || c.Limiter == nil {
		errs = append(errs, errors.New("both Upstream and Limiter are required"))
	}
	if c.Keys.HasBudgets() && c.Spend == nil {
		errs = append(errs, errors.New("the client keys configure budgets: Spend (a store) is required"))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"MaxWait", int64(c.MaxWait)}, {"MaxQueue", int64(c.MaxQueue)}, {"MaxQueueBytes", c.MaxQueueBytes}, {"MaxAttempts", int64(c.MaxAttempts)}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must not be negative (0: the default)", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// Defaults.
const (
	DefaultMaxWait     = 10 * time.Minute
	DefaultMaxQueue    = 10000
	DefaultMaxQueueMiB = 1024
	DefaultMaxAttempts = 4
	// DefaultGCFloor is the heap clade serve's garbage collector lets grow to before
	// it runs (package gcfloor): clade bench gateway at 1,000 calls a second
	// collected 14 times a second without it, and under once a second with it.
	DefaultGCFloor = 64 << 20
)

// Body size limits, the API's (anthropic-api.md 2.1).
const (
	maxMessageBody = 32 << 20
	maxBatchBody   = 256 << 20
	maxJSONResp    = 64 << 20
)

// Gateway is clade serve's http.Handler: an Anthropic-compatible API that admits
// every Messages call against the organisation's limits. See the package doc.
type Gateway struct {
	cfg     Config
	up      *upstream.Client
	lim     *admit.Limiter
	m       *metrics
	mux     *http.ServeMux
	log     *slog.Logger
	now     func() time.Time
	started time.Time

	budgets *budgets // nil without budgets

	// settling counts the calls whose settle runs after their answer went
	// (Gateway.settleAfter); Run waits for them.
	settling sync.WaitGroup

	dash dashState // the dashboard's own observations (dashboard.go)

	mu      sync.Mutex
	queues  map[string]*fairQueue  // by class
	windows map[string]*rateWindow // by class
	queued  int                    // calls waiting, all classes
	qbytes  int64                  // their bodies' bytes
}

// New returns a Gateway for cfg.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("serve config: %w", err)
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.MaxQueueBytes == 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueMiB << 20
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var reg prometheus.Registerer
	if cfg.Registry != nil {
		reg = cfg.Registry
	}
	g := &Gateway{
		cfg: cfg, up: cfg.Upstream, lim: cfg.Limiter,
		m: newMetrics(reg), mux: http.NewServeMux(), log: cfg.Logger, now: cfg.Now, started: cfg.Now(),
		queues: map[string]*fairQueue{}, windows: map[string]*rateWindow{},
	}
	for _, t := range cfg.Keys.Teams() {
		g.m.depth.WithLabelValues(t.Name).Set(0)
	}
	if cfg.Keys.HasBudgets() {
		if cfg.Catalog == nil {
			cfg.Catalog = catalog.Default()
		}
		g.budgets = &budgets{store: cfg.Spend, cat: cfg.Catalog, now: cfg.Now, held: map[heldKey]spend.Micros{},
			background: g.settleAfter}
		g.budgets.spends.Linger = spendLinger
		g.budgets.spends.Always = true // settles run once the answer has gone (settleAfter)
		if reg != nil {
			reg.MustRegister(newBudgetCollector(g))
		}
	}
	g.routes()
	return g, nil
}

func (g *Gateway) routes() {
	// The API's paths, each forwarded as the path it matched, built from the pattern
	// and the validated id: nothing a client sends reaches the organisation's key
	// unless it is one of these calls.
	g.mux.HandleFunc("POST /v1/messages", g.authed(epMessages, g.handleMessages))
	g.forward("POST /v1/messages/count_tokens", epCountTokens, maxMessageBody, nil)
	g.forward("GET /v1/models", epModels, 0, nil)
	g.forward("GET /v1/models/{id}", epModels, 0, modelID)
	g.forward("GET /v1/messages/batches", epBatches, maxBatchBody, nil)
	g.mux.HandleFunc("POST /v1/messages/batches", g.authed(epBatches, g.createBatch)) // budgets: budget_batch.go
	g.forward("GET /v1/messages/batches/{id}", epBatches, maxBatchBody, batchID)
	g.forward("DELETE /v1/messages/batches/{id}", epBatches, maxBatchBody, batchID)
	g.forward("POST /v1/messages/batches/{id}/cancel", epBatches, maxBatchBody, batchID)
	g.forward("GET /v1/messages/batches/{id}/results", epBatches, maxBatchBody, batchID)
	// Every other path and method gets the API's 404 envelope, not net/http's text.
	g.mux.HandleFunc("/", g.notFound)
	g.mux.HandleFunc("GET /_clade/status", g.handleStatus)
	g.mux.HandleFunc("GET /{$}", g.handleIndex)
	g.mux.HandleFunc("GET /_clade/dashboard/", g.serveDashboard)
	if g.cfg.Registry != nil {
		g.mux.Handle("GET /metrics", promhttp.HandlerFor(g.cfg.Registry, promhttp.HandlerOpts{}))
	}
}

// IDs the gateway accepts in a path, checked before a call is forwarded. They are
// deliberately looser than today's formats (batch ids are msgbatch_ and base62, and
// the API says their format and length may change) but can never be "." or "..",
// hold a "/", "\", "%", "?", "#" or ";", nor exceed 128 bytes.
var (
	batchID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	modelID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)
)

// forward routes pattern ("METHOD /path" with at most one {id}, whose value must
// match id) to pass, which sends upstream the pattern's method and path with the id
// put in: byte for byte the path that was matched, never the client's r.URL.Path.
// Any other method (HEAD on a GET) or an id that does not match gets the 404.
func (g *Gateway) forward(pattern, endpoint string, limit int64, id *regexp.Regexp) {
	method, path, _ := strings.Cut(pattern, " ")
	g.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p := path
		if id != nil {
			v := r.PathValue("id")
			if !id.MatchString(v) {
				g.notFound(w, r)
				return
			}
			p = strings.Replace(path, "{id}", v, 1)
		}
		if r.Method != method {
			g.notFound(w, r)
			return
		}
		g.authed(endpoint, g.pass(endpoint, limit, p))(w, r)
	})
}

// ServeHTTP serves the gateway's API, /metrics, /_clade/status and /. A path that is
// not plain (see plainPath) gets the API's 404 before the mux sees it, as the mux
// would otherwise answer dot segments and doubled slashes with a redirect.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !plainPath(rawPath(r)) {
		g.notFound(w, r)
		return
	}
	g.serveLogged(w, r, g.mux)
}

// rawPath is r's path as the client sent it: escaped, without the query.
func rawPath(r *http.Request) string {
	if p, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasPrefix(p, "/") {
		return p
	}
	return r.URL.EscapedPath() // absolute-form ("GET http://host/path"), or a request built in-process
}

// plainPath reports whether p, a raw path, is "/" or "/"-prefixed segments, each
// non-empty, neither "." nor "..", and made only of letters, digits and "-._~:@".
// The API's paths are all plain, so a path that is not (percent-encoding of any byte,
// "\", ";", doubled or trailing slashes, dot segments) can only be an attempt to
// make the path the upstream resolves differ from the one matched here.
func plainPath(p string) bool {
	if p == "/" {
		return true
	}
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:@", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// notFound answers a path or method the gateway does not route with the API's 404,
// naming the path as the client sent it.
func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) {
	g.m.requests.WithLabelValues(teamNone, epOther, "404").Inc()
	writeError(w, http.StatusNotFound, wire.NotFound, "Not found: "+r.Method+" "+rawPath(r), nil)
}

// clientKey returns the key a client sent, in either style the SDKs use.
func clientKey(r *http.Request) string {
	if k := strings.TrimSpace(r.Header.Get("x-api-key")); k != "" {
		return k
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// authed checks the client's key and passes its team on; an unknown key gets the
// API's 401.
func (g *Gateway) authed(endpoint string, h func(http.ResponseWriter, *http.Request, *Team)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := clientKey(r)
		team := g.cfg.Keys.Lookup(key)
		if e := accessOf(r); e != nil {
			e.endpoint = endpoint
			if c := g.cfg.Keys.lookup(key); c != nil {
				e.team, e.key = c.team.Name, c.label
			}
		}
		if team == nil {
			g.m.requests.WithLabelValues(teamNone, endpoint, "401").Inc()
			msg := "invalid x-api-key"
			if key == "" {
				msg = "x-api-key header is required"
			}
			writeError(w, http.StatusUnauthorized, wire.Authentication, msg, nil)
			return
		}
		h(w, r, team)
	}
}

// pass relays a call upstream to path (count_tokens, models, batches) with the
// client's query, method and body, with bodies up to limit bytes.
func (g *Gateway) pass(endpoint string, limit int64, path string) func(http.ResponseWriter, *http.Request, *Team) {
	return func(w http.ResponseWriter, r *http.Request, team *Team) {
		if limit > 0 && r.ContentLength > limit {
			// Refused before a byte goes upstream, as the API would refuse it.
			writeTooLarge(w, limit)
			g.m.requests.WithLabelValues(team.Name, endpoint, statusLabel(http.StatusRequestEntityTooLarge)).Inc()
			return
		}
		var body io.Reader
		var cb *clientBody
		length := r.ContentLength
		if r.Body != nil && r.Body != http.NoBody && length != 0 {
			cb = &clientBody{r: http.MaxBytesReader(w, r.Body, max(limit, 1))}
			body = cb
		} else {
			length = 0
		}
		resp, err := g.up.Proxy(r.Context(), upstream.ProxyRequest{
			Method: r.Method, Path: path, RawQuery: r.URL.RawQuery,
			Body: body, ContentLength: length, Header: r.Header,
		})
		if err != nil {
			if cb != nil && cb.failed() != nil {
				err = cb.failed() // the client's body failed, not the upstream
			}
			code := g.proxyFailed(w, r, err)
			g.m.requests.WithLabelValues(team.Name, endpoint, statusLabel(code)).Inc()
			return
		}
		if resp.StatusCode == http.StatusUnauthorized {
			code := g.keyRefused(w, g.up.ReadAPIError(resp))
			g.m.requests.WithLabelValues(team.Name, endpoint, statusLabel(code)).Inc()
			return
		}
		defer resp.Body.Close()
		if endpoint == epBatches && resp.StatusCode/100 == 2 && !strings.HasSuffix(path, "/results") &&
			strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			code := g.relayBatchObject(w, r, resp)
			g.m.requests.WithLabelValues(team.Name, endpoint, statusLabel(code)).Inc()
			return
		}
		copyHeaders(w.Header(), resp.Header, true)
		w.WriteHeader(resp.StatusCode)
		if err := copyFlushing(w, resp.Body); err != nil && r.Context().Err() == nil {
			// The upstream broke off (a results download cut midway): the client must
			// see it break off, not a clean end that looks like fewer results.
			g.log.Warn("upstream answer broke off", "method", r.Method, "path", path, "error", err)
			g.m.requests.WithLabelValues(team.Name, endpoint, statusLabel(http.StatusBadGateway)).Inc()
			panic(http.ErrAbortHandler)
		}
		g.m.requests.WithLabelValues(team.Name, endpoint, statusLabel(resp.StatusCode)).Inc()
	}
}

// relayBatchObject passes on a batch object (or a list of them) with results_url
// pointing at the gateway instead of the API: the SDKs that follow results_url (the
// Python SDK) then fetch results through the gateway, with their client key. Nothing
// else in the body changes.
func (g *Gateway) relayBatchObject(w http.ResponseWriter, r *http.Request, resp *http.Response) int {
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONResp+1))
	if err != nil || len(b) > maxJSONResp {
		writeError(w, http.StatusBadGateway, wire.APIError, "clade serve: the upstream answer could not be read", nil)
		return http.StatusBadGateway
	}
	b = resultsURL.ReplaceAll(b, []byte("${1}"+gatewayBase(r)+"${3}"))
	copyHeaders(w.Header(), resp.Header, false)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(resp.StatusCode)
	w.Write(b)
	return resp.StatusCode
}

// resultsURL matches a results_url member: its key, its origin, and its path.
var resultsURL = regexp.MustCompile(`("results_url"\s*:\s*")(https?://[^/"]+(?:/[^"]*?)?)(/v1/messages/batches/[^"]*")`)

// gatewayBase is the origin (and no path) a client reached the gateway at.
func gatewayBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// proxyFailed answers a call whose upstream request got no response and returns the
// status written (499 when the client left, nothing written).
func (g *Gateway) proxyFailed(w http.ResponseWriter, r *http.Request, err error) int {
	var mbe *http.MaxBytesError
	var be *bodyError
	switch {
	case r.Context().Err() != nil:
		return 499
	case errors.As(err, &mbe):
		writeTooLarge(w, mbe.Limit)
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &be):
		// The client stopped sending its body: nothing upstream is at fault.
		writeError(w, http.StatusBadRequest, wire.InvalidRequest, "could not read the request body", nil)
		return http.StatusBadRequest
	}
	g.log.Warn("upstream call failed", "method", r.Method, "path", r.URL.Path, "error", err)
	writeError(w, http.StatusBadGateway, wire.APIError, "clade serve: the upstream API did not answer", nil)
	return http.StatusBadGateway
}

// bodyError is a failure to read a client's request body.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// clientBody is a request body on its way upstream that remembers why reading it
// failed, so that a client that stops sending is not taken for an upstream failure.
// The transport may still read it after Proxy returned, hence the lock.
type clientBody struct {
	r   io.Reader
	mu  sync.Mutex
	err error // *bodyError, or the *http.MaxBytesError itself
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			err = &bodyError{err}
		}
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// failed returns why reading the body failed, or nil.
func (b *clientBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// writeTooLarge answers a request body over limit bytes with the API's 413.
func writeTooLarge(w http.ResponseWriter, limit int64) {
	writeError(w, http.StatusRequestEntityTooLarge, wire.RequestTooLarge,
		fmt.Sprintf("Request exceeds the maximum allowed number of bytes (%d).", limit), nil)
}

// copyFlushing copies a response body to the client, flushing after every read, so
// that batch results and other streams reach the client as they arrive. It returns
// the error that ended reading the body (nil at its end); a client that stopped
// reading ends it with nil.
func copyFlushing(w http.ResponseWriter, body io.Reader) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil
			}
			_ = rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// copyHeaders copies the response headers a client may use: the body's type (and
// length when the body is passed unchanged), request-id, retry hints and the
// anthropic-* headers (rate limits, organisation).
func copyHeaders(dst, src http.Header, withLength bool) {
	is := strings.EqualFold // no lower-cased copy of each key per response
	for k, vs := range src {
		switch {
		case is(k, "content-type"), is(k, "request-id"), is(k, "retry-after"), is(k, "retry-after-ms"),
			is(k, "x-should-retry"), len(k) >= len("anthropic-") && is(k[:len("anthropic-")], "anthropic-"):
		case is(k, "content-length") && withLength:
		default:
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
}

// writeError writes an error in the API's envelope, with a request-id of the
// gateway's own and the extra headers h.
func writeError(w http.ResponseWriter, status int, typ, msg string, h http.Header) {
	id := newRequestID()
	for k, vs := range h {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("request-id", id)
	w.WriteHeader(status)
	e := &wire.Error{Status: status, Type: typ, Message: msg}
	w.Write(e.MarshalEnvelope(id))
}

// newRequestID returns an id for a response the gateway writes itself.
func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return "req_clade_" + hex.EncodeToString(b[:])
}

// retryAfterHeader is the retry-after of a 429 the gateway writes itself.
func retryAfterHeader(d time.Duration) http.Header {
	s := int64((d + time.Second - 1) / time.Second)
	return http.Header{"Retry-After": {strconv.FormatInt(min(max(s, 1), 60), 10)}}
}
