package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// Client calls the Anthropic API with the caller's raw JSON. It makes exactly one
// attempt per call: retrying is the caller's decision (Classify, Backoff,
// RetryBudget), so that admission, backoff and the job store see every attempt. A
// Client is safe for concurrent use.
type Client struct {
	cfg    Config
	prefix string // base URL without a trailing slash
	hc     *http.Client
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	cfg, base, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, prefix: base.String(), hc: cfg.HTTPClient, log: cfg.Logger, now: time.Now}, nil
}

// Usage is a response's usage object (anthropic-api.md 3.2).
type Usage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	// CacheCreation splits cache writes by TTL (5m writes cost 1.25×, 1h writes 2×).
	CacheCreation struct {
		Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
		Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
	ServiceTier string `json:"service_tier"`
}

// Response is a successful Messages call.
type Response struct {
	// Status is the HTTP status (200).
	Status int
	// Body is the message JSON exactly as the API sent it.
	Body []byte
	// ID, Model and StopReason are read from Body.
	ID         string
	Model      string
	StopReason string
	Usage      Usage
	// RequestID is the request-id header.
	RequestID string
	// RateLimit is the response's rate-limit headers, parsed.
	RateLimit wire.RateLimitHeaders
	// Header is the response's headers, to resync admission buckets (admit).
	Header http.Header
	// Duration is from sending the request to reading the last byte.
	Duration time.Duration
}

// Messages POSTs params, the caller's Messages request JSON, to /v1/messages
// unchanged, for a non-streaming answer. params must not ask for "stream": true:
// the API would answer with SSE, which MessagesStream reads and Messages does not.
//
// Errors: *APIError for a non-2xx response, *TransportError when no usable response
// came (including a 200 whose body is not a message), and the ctx error (wrapped) when
// ctx ended. Classify says what to do with each.
func (c *Client) Messages(ctx context.Context, params []byte) (*Response, error) {
	const op = "POST /v1/messages"
	start := c.now()
	r, err := c.roundTrip(ctx, op, http.MethodPost, "/v1/messages", bytes.NewReader(params), true)
	if err != nil {
		return nil, err
	}
	var m struct {
		Type       string `json:"type"`
		ID         string `json:"id"`
		Model      string `json:"model"`
		StopReason string `json:"stop_reason"`
		Usage      *Usage `json:"usage"`
	}
	if r.stream {
		// The caller asked for "stream": true; the tokens are spent, and resending
		// the same params would do it again.
		return nil, fmt.Errorf("upstream: %s: %w", op, ErrStreaming)
	}
	if err := json.Unmarshal(r.body, &m); err != nil || m.Type != "message" || m.Usage == nil {
		if err == nil {
			err = fmt.Errorf("response is not a message (type %q, usage present %v)", truncate(m.Type, 40), m.Usage != nil)
		}
		return nil, &TransportError{Op: op, Status: r.status, RequestID: r.rl.RequestID, ShouldRetry: r.rl.ShouldRetry,
			Err: fmt.Errorf("decode response: %w", err)}
	}
	return &Response{
		Status: r.status, Body: r.body, ID: m.ID, Model: m.Model, StopReason: m.StopReason, Usage: *m.Usage,
		RequestID: r.rl.RequestID, RateLimit: r.rl, Header: r.header, Duration: c.now().Sub(start),
	}, nil
}

// TokenCount is a successful CountTokens call.
type TokenCount struct {
	InputTokens int64
	RequestID   string
	RateLimit   wire.RateLimitHeaders
}

// CountTokens POSTs params (a count_tokens body: no max_tokens) to
// /v1/messages/count_tokens and returns the input token count. Errors as Messages.
func (c *Client) CountTokens(ctx context.Context, params []byte) (*TokenCount, error) {
	const op = "POST /v1/messages/count_tokens"
	r, err := c.roundTrip(ctx, op, http.MethodPost, "/v1/messages/count_tokens", bytes.NewReader(params), true)
	if err != nil {
		return nil, err
	}
	var v struct {
		InputTokens *int64 `json:"input_tokens"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.InputTokens == nil {
		if err == nil {
			err = errors.New("no input_tokens")
		}
		return nil, &TransportError{Op: op, Status: r.status, RequestID: r.rl.RequestID, ShouldRetry: r.rl.ShouldRetry,
			Err: fmt.Errorf("decode response: %w", err)}
	}
	return &TokenCount{InputTokens: *v.InputTokens, RequestID: r.rl.RequestID, RateLimit: r.rl}, nil
}

// ErrStreaming is returned (wrapped; Classify: Final) when Messages params ask for
// "stream": true: Messages reads whole JSON responses only.
var ErrStreaming = errors.New("streaming responses are not supported: remove \"stream\": true")

// errCallTimeout is the cause of a ctx ended by Config.RequestTimeout.
var errCallTimeout = errors.New("request timeout")

// maxErrorBody bounds an error body read into memory.
const maxErrorBody = 1 << 20

type result struct {
	status int
	body   []byte
	rl     wire.RateLimitHeaders
	header http.Header
	stream bool // the response was text/event-stream
}

// roundTrip makes one call and reads the whole 2xx body (bounded by MaxResponseBytes);
// a non-2xx response becomes an *APIError.
func (c *Client) roundTrip(ctx context.Context, op, method, path string, body io.Reader, idempotent bool) (*result, error) {
	callCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.cfg.RequestTimeout > 0 {
		callCtx, cancel = context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, errCallTimeout)
	}
	defer cancel()
	start := c.now()
	resp, wrote, err := c.send(callCtx, method, path, body, "application/json", idempotent)
	if err != nil {
		return nil, c.transportError(ctx, callCtx, op, nil, wrote, idempotent, err)
	}
	defer resp.Body.Close()
	rl := c.parseHeaders(resp.Header)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if rerr != nil && len(b) == 0 {
			return nil, c.transportError(ctx, callCtx, op, resp, true, idempotent, rerr)
		}
		ae := newAPIError(resp.StatusCode, resp.Header, b, c.cfg.APIKey, c.now())
		c.logCall(ctx, op, resp.StatusCode, ae.RequestID, c.now().Sub(start))
		return nil, ae
	}
	limit := c.cfg.MaxResponseBytes
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, c.transportError(ctx, callCtx, op, resp, true, idempotent, fmt.Errorf("read body: %w", err))
	}
	if int64(len(b)) > limit {
		return nil, &TransportError{Op: op, Status: resp.StatusCode, RequestID: rl.RequestID, ShouldRetry: rl.ShouldRetry,
			TooLarge: true, Err: fmt.Errorf("body exceeds %d bytes", limit)}
	}
	c.logCall(ctx, op, resp.StatusCode, rl.RequestID, c.now().Sub(start))
	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	return &result{status: resp.StatusCode, body: b, rl: rl, header: c.cfg.APIKey.scrubHeader(resp.Header), stream: stream}, nil
}

// send builds and sends one request. wrote reports whether the request headers were
// written, i.e. whether the API may have received it.
func (c *Client) send(ctx context.Context, method, path string, body io.Reader, accept string, idempotent bool) (*http.Response, bool, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.prefix+path, body)
	if err != nil {
		return nil, false, fmt.Errorf("build request: %w", err)
	}
	if sr, ok := body.(*io.SectionReader); ok && sr.Size() > 0 {
		// A body spooled to a file (batch create): sized like an in-memory one.
		req.ContentLength = sr.Size()
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(io.NewSectionReader(sr, 0, sr.Size())), nil
		}
	}
	h := req.Header
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Accept", accept)
	h.Set("anthropic-version", c.cfg.Version)
	h.Set("User-Agent", c.cfg.UserAgent)
	if c.cfg.Beta != "" {
		h.Set("anthropic-beta", c.cfg.Beta)
	}
	if c.cfg.Auth == AuthBearer {
		h.Set("Authorization", "Bearer "+c.cfg.APIKey.Reveal())
	} else {
		h.Set("x-api-key", c.cfg.APIKey.Reveal())
	}
	var wrote atomic.Bool
	if !idempotent {
		req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteHeaders: func() { wrote.Store(true) },
		}))
	}
	resp, err := c.hc.Do(req)
	return resp, wrote.Load(), err
}

// transportError turns a failed send or body read into the caller's ctx error (when
// ctx itself ended) or a *TransportError.
func (c *Client) transportError(ctx, callCtx context.Context, op string, resp *http.Response, wrote, idempotent bool, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("upstream: %s: %w", op, ctx.Err())
	}
	te := &TransportError{Op: op, Err: err, MaybeDelivered: !idempotent && wrote}
	if errors.Is(context.Cause(callCtx), errCallTimeout) {
		te.Timeout = true
	}
	if resp != nil {
		te.Status = resp.StatusCode
		te.RequestID = c.cfg.APIKey.scrubString(resp.Header.Get(wire.HeaderRequestID))
		te.ShouldRetry = wire.ParseShouldRetry(resp.Header.Get(wire.HeaderShouldRetry))
	}
	c.log.DebugContext(ctx, "upstream call failed", "op", op, "status", te.Status, "request_id", te.RequestID, "timeout", te.Timeout)
	return te
}

// parseHeaders reads a response's rate-limit headers; a request id that echoes the
// key (a broken proxy) is scrubbed.
func (c *Client) parseHeaders(h http.Header) wire.RateLimitHeaders {
	rl := wire.ParseRateLimitHeadersAt(h, c.now())
	rl.RequestID = c.cfg.APIKey.scrubString(rl.RequestID)
	return rl
}

func (c *Client) logCall(ctx context.Context, op string, status int, requestID string, d time.Duration) {
	c.log.DebugContext(ctx, "upstream call", "op", op, "status", status, "request_id", requestID, "duration", d)
}
