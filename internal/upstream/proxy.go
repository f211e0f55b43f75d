package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ProxyRequest is one call relayed as it came from another client (clade serve): the
// body is passed through unread and the response comes back unread, so that a stream
// reaches the client as it arrives.
type ProxyRequest struct {
	// Method and Path (e.g. "/v1/messages/batches/msgbatch_1/results") name the call;
	// RawQuery is the query string without "?", or "".
	Method   string
	Path     string
	RawQuery string
	// Body is sent as it is; nil for none. ContentLength is its length if known, else
	// -1 (chunked).
	Body          io.Reader
	ContentLength int64
	// Header holds the client's headers. Only those in ForwardedHeaders are sent on;
	// the client's own credentials never are: the Client's key replaces them.
	Header http.Header
}

// ForwardedHeaders are the request headers Proxy takes from the client: the API
// version and betas the client's SDK speaks, and the body's type. Everything else
// (credentials, cookies, hop-by-hop headers) stays behind.
var ForwardedHeaders = []string{"anthropic-version", "anthropic-beta", "content-type", "accept"}

// Proxy sends req upstream with the Client's key, in the Client's auth style, and
// returns the response whatever its status, with the body unread: the caller must
// close it. The client's anthropic-version and anthropic-beta are sent when present
// (the Client's own otherwise). Proxy makes one attempt and applies no timeout but
// ctx's and the transport's: a stream may run for an hour.
//
// Errors: a *TransportError when no response came, or the ctx error (wrapped) when
// ctx ended. A non-2xx response is not an error here: ReadAPIError reads one.
func (c *Client) Proxy(ctx context.Context, req ProxyRequest) (*http.Response, error) {
	op := req.Method + " " + req.Path
	if !strings.HasPrefix(req.Path, "/") || strings.ContainsAny(req.Path, "\r\n") {
		return nil, &TransportError{Op: "proxy", Err: fmt.Errorf("bad path %q", truncate(req.Path, 80))}
	}
	u := c.prefix + req.Path
	if req.RawQuery != "" {
		u += "?" + req.RawQuery
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, u, req.Body)
	if err != nil {
		return nil, &TransportError{Op: op, Err: fmt.Errorf("build request: %w", err)}
	}
	if req.Body != nil {
		hr.ContentLength = req.ContentLength
		if req.ContentLength == 0 {
			hr.Body = http.NoBody
		}
	}
	h := hr.Header
	for _, k := range ForwardedHeaders {
		for _, v := range req.Header.Values(k) {
			h.Add(k, v)
		}
	}
	if h.Get("anthropic-version") == "" {
		h.Set("anthropic-version", c.cfg.Version)
	}
	if h.Get("anthropic-beta") == "" && c.cfg.Beta != "" {
		h.Set("anthropic-beta", c.cfg.Beta)
	}
	h.Set("User-Agent", c.cfg.UserAgent)
	if c.cfg.Auth == AuthBearer {
		h.Set("Authorization", "Bearer "+c.cfg.APIKey.Reveal())
	} else {
		h.Set("x-api-key", c.cfg.APIKey.Reveal())
	}
	start := c.now()
	resp, err := c.hc.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upstream: %s: %w", op, ctx.Err())
		}
		te := &TransportError{Op: op, Err: err}
		c.log.DebugContext(ctx, "upstream call failed", "op", op)
		return nil, te
	}
	c.logCall(ctx, op, resp.StatusCode, c.cfg.APIKey.scrubString(resp.Header.Get("request-id")), c.now().Sub(start))
	return resp, nil
}

// ReadAPIError reads a non-2xx response's body (at most 1 MiB) and closes it, and
// returns it as an *APIError whose Body is the error envelope, with the Client's key
// scrubbed from everything kept, ready to be passed on to a client.
func (c *Client) ReadAPIError(resp *http.Response) *APIError {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return newAPIError(resp.StatusCode, resp.Header, b, c.cfg.APIKey, c.now())
}

// Scrub replaces the Client's key in b (a response relayed to someone else) with
// "[REDACTED]". b is returned as it is when it does not contain the key.
func (c *Client) Scrub(b []byte) []byte { return c.cfg.APIKey.scrub(b) }
