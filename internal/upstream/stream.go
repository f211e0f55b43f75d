package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// ErrStreamParam is returned (wrapped; Classify: Final) by MessagesStream when params
// carry a "stream" member other than true.
var ErrStreamParam = errors.New(`params carry "stream" other than true`)

// errIdleTimeout is the cause of a ctx ended by Config.StreamIdleTimeout.
var errIdleTimeout = errors.New("stream idle timeout")

// MessagesStream POSTs params to /v1/messages with "stream": true and reads the
// server-sent events into the message a non-streaming call returns: the same members
// in the same order, content assembled from the deltas, usage from message_start
// updated by message_delta's cumulative counts. The Response is what Messages returns
// for the same answer (Body, ID, Model, StopReason, Usage, RequestID, RateLimit from
// the response headers, Duration to the last event), so callers cannot tell them apart.
//
// Use it when an answer may take longer than a non-streaming call may wait: the SDKs
// refuse non-streaming calls whose max_tokens could take over 10 minutes (above about
// 21,333). A stream has no total timeout: Config.StreamIdleTimeout bounds each wait for
// the next bytes instead (the API sends ping events while it works).
//
// params is the caller's JSON object; "stream":true is inserted after its opening
// brace and the rest goes byte for byte. params that already say "stream": true go
// unchanged; any other "stream" value is refused with ErrStreamParam.
//
// Errors are those of Messages, plus: an SSE error event (the API failed after its
// 200, e.g. overloaded_error) is an *APIError whose Status is the one the API uses for
// its type (529 for overloaded_error), so Classify treats it as the non-streaming
// error; a stream that ends before message_stop, or goes idle, is a retryable
// *TransportError (Timeout set when idle); a malformed stream is a *TransportError.
func (c *Client) MessagesStream(ctx context.Context, params []byte) (*Response, error) {
	const op = "POST /v1/messages (stream)"
	body, err := streamParams(params)
	if err != nil {
		return nil, fmt.Errorf("upstream: %s: params: %w", op, err)
	}
	start := c.now()
	callCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := newIdleTimer(c.cfg.StreamIdleTimeout, func() { cancel(errIdleTimeout) })
	defer idle.stop()
	traced := httptrace.WithClientTrace(callCtx, &httptrace.ClientTrace{
		WroteHeaders: idle.touch,
		WroteRequest: func(httptrace.WroteRequestInfo) { idle.touch() },
	})
	resp, _, err := c.send(traced, http.MethodPost, "/v1/messages", bytes.NewReader(body), "application/json", true)
	if err != nil {
		return nil, c.streamTransportError(ctx, callCtx, op, nil, err)
	}
	defer resp.Body.Close()
	idle.touch()
	rl := c.parseHeaders(resp.Header)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if rerr != nil && len(b) == 0 {
			return nil, c.streamTransportError(ctx, callCtx, op, resp, rerr)
		}
		ae := newAPIError(resp.StatusCode, resp.Header, b, c.cfg.APIKey, c.now())
		c.logCall(ctx, op, resp.StatusCode, ae.RequestID, c.now().Sub(start))
		return nil, ae
	}
	src := &idleReader{r: resp.Body, idle: idle}
	var msg []byte
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		// Not a stream (a proxy that answers whole): read it as Messages would.
		limit := c.cfg.MaxResponseBytes
		b, err := io.ReadAll(io.LimitReader(src, limit+1))
		if err != nil {
			return nil, c.streamTransportError(ctx, callCtx, op, resp, fmt.Errorf("read body: %w", err))
		}
		if int64(len(b)) > limit {
			return nil, &TransportError{Op: op, Status: resp.StatusCode, RequestID: rl.RequestID, ShouldRetry: rl.ShouldRetry,
				TooLarge: true, Err: fmt.Errorf("body exceeds %d bytes", limit)}
		}
		msg = b
	} else {
		msg, err = readStream(src, c.cfg.MaxResponseBytes)
		var se *streamError
		switch {
		case errors.As(err, &se):
			ae := c.streamAPIError(resp.Header, se.data)
			c.logCall(ctx, op, resp.StatusCode, ae.RequestID, c.now().Sub(start))
			return nil, ae
		case errors.Is(err, errSSETooLarge):
			return nil, &TransportError{Op: op, Status: resp.StatusCode, RequestID: rl.RequestID, ShouldRetry: rl.ShouldRetry,
				TooLarge: true, Err: fmt.Errorf("message exceeds %d bytes", c.cfg.MaxResponseBytes)}
		case err != nil:
			return nil, c.streamTransportError(ctx, callCtx, op, resp, err)
		}
		// Let the transport reuse the connection: the response ends right after
		// message_stop.
		_, _ = io.CopyN(io.Discard, src, 4<<10)
	}
	c.logCall(ctx, op, resp.StatusCode, rl.RequestID, c.now().Sub(start))
	return c.decodeMessage(op, resp.StatusCode, msg, rl, c.cfg.APIKey.scrubHeader(resp.Header), start)
}

// readStream reads SSE events from r until message_stop and returns the assembled
// message. An error event comes back as a *streamError.
func readStream(r io.Reader, max int64) ([]byte, error) {
	sr := newSSEReader(r, max)
	a := &assembler{max: max}
	for {
		name, data, err := sr.next()
		if err == io.EOF {
			return nil, errStreamIncomplete
		}
		if err != nil {
			return nil, err
		}
		if err := a.event(name, data); err != nil {
			return nil, err
		}
		if a.done {
			return a.message(), nil
		}
	}
}

// decodeMessage reads the facts clade acts on from a message body, as Messages does.
func (c *Client) decodeMessage(op string, status int, body []byte, rl wire.RateLimitHeaders, h http.Header, start time.Time) (*Response, error) {
	var m struct {
		Type       string `json:"type"`
		ID         string `json:"id"`
		Model      string `json:"model"`
		StopReason string `json:"stop_reason"`
		Usage      *Usage `json:"usage"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.Type != "message" || m.Usage == nil {
		if err == nil {
			err = fmt.Errorf("response is not a message (type %q, usage present %v)", truncate(m.Type, 40), m.Usage != nil)
		}
		return nil, &TransportError{Op: op, Status: status, RequestID: rl.RequestID, ShouldRetry: rl.ShouldRetry,
			Err: fmt.Errorf("decode response: %w", err)}
	}
	return &Response{
		Status: status, Body: body, ID: m.ID, Model: m.Model, StopReason: m.StopReason, Usage: *m.Usage,
		RequestID: rl.RequestID, RateLimit: rl, Header: h, Duration: c.now().Sub(start),
	}, nil
}

// streamAPIError turns an SSE error event into the *APIError the same error would
// have been as a response. Its status is the one the API uses for error.type (the
// HTTP status was 200), and request_id (from the request-id header) is added to the
// envelope so an errored result line carries it, as the non-streaming one does.
func (c *Client) streamAPIError(h http.Header, data []byte) *APIError {
	var env struct {
		Error *struct {
			Type string `json:"type"`
		} `json:"error"`
		RequestID json.RawMessage `json:"request_id"`
	}
	status := http.StatusInternalServerError
	if json.Unmarshal(data, &env) == nil && env.Error != nil && env.Error.Type != "" {
		status = wire.StatusOf(env.Error.Type)
		if env.RequestID == nil {
			if id := c.cfg.APIKey.scrubString(h.Get(wire.HeaderRequestID)); id != "" {
				q, _ := json.Marshal(id)
				d := bytes.TrimSpace(data)
				data = append(append(append(d[:len(d)-1:len(d)-1], `,"request_id":`...), q...), '}')
			}
		}
	}
	ae := newAPIError(status, h, data, c.cfg.APIKey, c.now())
	if ae.Status == http.StatusTooManyRequests && !ae.HasRetryAfter && ae.ErrorCode == "" && ae.ShouldRetry == 0 {
		// The retry-after a 429 would carry cannot come after the 200's headers; a
		// rate_limit_error inside a stream is not a spend cap unless its code says so.
		ae.ShouldRetry = 1
	}
	return ae
}

// streamTransportError is transportError with the idle timeout marked as a timeout.
func (c *Client) streamTransportError(ctx, callCtx context.Context, op string, resp *http.Response, err error) error {
	if ctx.Err() == nil && errors.Is(context.Cause(callCtx), errIdleTimeout) {
		err = fmt.Errorf("no data for %v: %w", c.cfg.StreamIdleTimeout, err)
	}
	e := c.transportError(ctx, callCtx, op, resp, true, true, err)
	var te *TransportError
	if errors.As(e, &te) && errors.Is(context.Cause(callCtx), errIdleTimeout) {
		te.Timeout = true
	}
	return e
}

// idleTimer calls fire when touch has not been called for d. d <= 0 disables it.
type idleTimer struct {
	d    time.Duration
	mu   sync.Mutex
	t    *time.Timer
	last time.Time
}

func newIdleTimer(d time.Duration, fire func()) *idleTimer {
	it := &idleTimer{d: d}
	if d > 0 {
		it.t = time.AfterFunc(d, fire)
	}
	return it
}

// touch restarts the wait. Resetting the timer on every read would cost more than the
// read on a fast stream, so it is reset at most every d/8.
func (it *idleTimer) touch() {
	if it.t == nil {
		return
	}
	now := time.Now()
	it.mu.Lock()
	if now.Sub(it.last) >= it.d/8 {
		it.last = now
		it.t.Reset(it.d)
	}
	it.mu.Unlock()
}

func (it *idleTimer) stop() {
	if it.t != nil {
		it.t.Stop()
	}
}

// idleReader touches the idle timer on every read that returns data.
type idleReader struct {
	r    io.Reader
	idle *idleTimer
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.idle.touch()
	}
	return n, err
}
