package upstream

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// API versions (anthropic-api.md 10).
const (
	// Version2023 goes with x-api-key, as the v1 SDKs send it.
	Version2023 = "2023-06-01"
	// Version2026 goes with Authorization: Bearer, as the v2 SDKs send it.
	Version2026 = "2026-10-21"
)

// DefaultBaseURL is the Anthropic API.
const DefaultBaseURL = "https://api.anthropic.com"

// Auth says how the key travels.
type Auth int

const (
	// AuthAPIKey sends x-api-key (default; pairs with Version2023).
	AuthAPIKey Auth = iota
	// AuthBearer sends Authorization: Bearer (pairs with Version2026).
	AuthBearer
)

func (a Auth) String() string {
	switch a {
	case AuthAPIKey:
		return "x-api-key"
	case AuthBearer:
		return "bearer"
	}
	return fmt.Sprintf("Auth(%d)", int(a))
}

// Config configures a Client. Only APIKey is required.
type Config struct {
	// BaseURL is the API root; paths such as /v1/messages are appended to it, after any
	// path it has (http://h:p/prefix gives /prefix/v1/messages). Default DefaultBaseURL.
	BaseURL string
	// APIKey authenticates every request. Required.
	APIKey Secret
	// Auth selects x-api-key (default) or Authorization: Bearer.
	Auth Auth
	// Version is sent in anthropic-version. Default Version2023 with AuthAPIKey and
	// Version2026 with AuthBearer.
	Version string
	// Beta, when set, is sent in anthropic-beta (a comma-separated list).
	Beta string
	// UserAgent is sent in User-Agent. Default "clade".
	UserAgent string

	// RequestTimeout bounds one Messages, CountTokens or batch-control call, from
	// sending the request to reading the last byte. A call that runs out is a
	// *TransportError with Timeout set, classed Retry. Default 10 minutes, the SDKs'
	// non-streaming limit; a negative value means none (the ctx still applies).
	// Results downloads are bounded only by their ctx.
	RequestTimeout time.Duration
	// StreamIdleTimeout bounds, for MessagesStream, each wait for the response's
	// headers and then for the next bytes of the stream; a stream has no total
	// timeout, since a long answer may stream for an hour. The API sends ping events
	// while it generates, so a silent stream is a dead one: it ends in a
	// *TransportError with Timeout set, classed Retry. The wait is measured to within
	// an eighth. Default 2 minutes; a negative value means none (the ctx still applies).
	StreamIdleTimeout time.Duration
	// DialTimeout bounds opening a TCP connection. Default 10 s.
	DialTimeout time.Duration
	// MaxConnsPerHost caps connections to the API host; beyond it, requests wait for a
	// connection. Default 0: no cap (admission bounds concurrency upstream of here).
	MaxConnsPerHost int
	// MaxIdleConnsPerHost is how many idle connections are kept for reuse. net/http's
	// default of 2 makes a client doing hundreds of concurrent HTTP/1.1 requests (the
	// emulator, proxies) open and close a connection per request. Default 512.
	MaxIdleConnsPerHost int
	// MaxResponseBytes bounds a Messages, CountTokens or batch-control response body
	// read into memory; a larger body is a *TransportError (not retried). Default
	// 64 MiB, far above a 128K-token message. Results are streamed and not bounded.
	MaxResponseBytes int64
	// HTTPClient, when set, replaces the client built from the fields above. Its
	// Timeout should be 0: a timeout there would also cut results downloads.
	HTTPClient *http.Client
	// Logger receives one debug line per call (method, path, status, request_id,
	// duration), never a key or a body. Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultRequestTimeout      = 10 * time.Minute
	DefaultStreamIdleTimeout   = 2 * time.Minute
	DefaultDialTimeout         = 10 * time.Second
	DefaultMaxIdleConnsPerHost = 512
	DefaultMaxResponseBytes    = 64 << 20
)

// ErrNoAPIKey is returned by New when Config.APIKey is empty.
var ErrNoAPIKey = errors.New("upstream: no API key")

// withDefaults fills the zero fields and validates the rest.
func (c Config) withDefaults() (Config, *url.URL, error) {
	if c.APIKey.IsZero() {
		return c, nil, ErrNoAPIKey
	}
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(c.BaseURL)
	if err != nil {
		return c, nil, fmt.Errorf("upstream: base URL: %w", err)
	}
	if base.Scheme != "http" && base.Scheme != "https" || base.Host == "" {
		return c, nil, fmt.Errorf("upstream: base URL %q: want http(s)://host[:port][/path]", c.BaseURL)
	}
	if base.User != nil || base.RawQuery != "" || base.Fragment != "" {
		return c, nil, fmt.Errorf("upstream: base URL %q: must not carry user info, a query or a fragment", base.Redacted())
	}
	base.Path = strings.TrimRight(base.Path, "/")
	base.RawPath = ""
	switch c.Auth {
	case AuthAPIKey:
		if c.Version == "" {
			c.Version = Version2023
		}
	case AuthBearer:
		if c.Version == "" {
			c.Version = Version2026
		}
	default:
		return c, nil, fmt.Errorf("upstream: unknown auth %v", c.Auth)
	}
	if strings.ContainsAny(c.Version, "\r\n") || strings.ContainsAny(c.Beta, "\r\n") {
		return c, nil, errors.New("upstream: version and beta must be single header values")
	}
	if c.UserAgent == "" {
		c.UserAgent = "clade"
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.StreamIdleTimeout == 0 {
		c.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxConnsPerHost < 0 {
		return c, nil, fmt.Errorf("upstream: MaxConnsPerHost %d: must be 0 or more", c.MaxConnsPerHost)
	}
	if c.MaxIdleConnsPerHost <= 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: newTransport(c, base)}
	}
	return c, base, nil
}

// newTransport is http.DefaultTransport's setup with pool sizes for thousands of
// concurrent requests to one host. HTTP/2 (api.anthropic.com) multiplexes streams over
// few connections; HTTP/1.1 (emulator, proxies) needs one idle connection per
// concurrent request to avoid reconnecting. A plain http:// base URL reached without
// an environment proxy and without MaxConnsPerHost goes through h1Transport, which
// makes each call on its caller's goroutine (h1.go).
func newTransport(c Config, base *url.URL) http.RoundTripper {
	d := &net.Dialer{Timeout: c.DialTimeout, KeepAlive: 30 * time.Second}
	std := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          2 * c.MaxIdleConnsPerHost,
		MaxIdleConnsPerHost:   c.MaxIdleConnsPerHost,
		MaxConnsPerHost:       c.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if base.Scheme != "http" || c.MaxConnsPerHost > 0 {
		return std
	}
	if p, err := http.ProxyFromEnvironment(&http.Request{URL: base}); err != nil || p != nil {
		return std
	}
	return newH1Transport(d.DialContext, c.MaxIdleConnsPerHost, 90*time.Second, std)
}
