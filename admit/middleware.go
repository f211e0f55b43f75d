package admit

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// maxUsageBody bounds the bytes of a JSON answer kept to read its usage at the end
// (an answer of 128,000 output tokens is about 0.5 MB). An answer longer than this
// keeps its reservation charged (Fail) instead.
const maxUsageBody = 32 << 20

// Middleware admits each Messages call a client sends: it has exactly the shape of
// the official Go SDKs' option.Middleware (v1 and v2), so
//
//	client := anthropic.NewClient(option.WithMiddleware(lim.Middleware))
//
// paces every client.Messages.New and NewStreaming of that client by the account's
// limits. The SDK calls a middleware once per attempt, inside its own retry loop.
//
// For POST /v1/messages it reads the request body without consuming it (GetBody),
// estimates the call (model, input tokens, max_tokens; Estimator), and waits for
// admission under the request's context: a wait that would pass the context's
// deadline fails at once with ErrDeadline. Then it sends the request and settles
// the reservation from the answer: a 429 pauses the model class for every caller
// of this Limiter until its retry-after (the SDK's retry then waits at the gate), a
// 529 shrinks the class's concurrency, another 4xx takes one request and no tokens,
// a 5xx keeps the charge; every answer's anthropic-ratelimit-* headers resync the
// buckets. A JSON answer's usage is committed when its body has been read to the
// end, a stream's (message_start, message_delta) as its events pass; a body closed
// early commits what was seen, or keeps the charge. Other calls (count_tokens,
// models, batches), models the catalog does not know and bodies that are not JSON
// pass through unadmitted: the API answers them.
//
// Errors of the limiter's backend after the call was sent cannot reach the caller
// (the answer is theirs); they go to Config.Logger.
func (l *Limiter) Middleware(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/v1/messages") {
		return next(req)
	}
	body, err := peekBody(req)
	if err != nil {
		return nil, fmt.Errorf("admit: read the request body: %w", err)
	}
	c, ok := l.Prepare(body)
	if !ok {
		return next(req) // not JSON, no model, or one newer than the catalog: the API decides
	}
	a, err := c.Admit(req.Context())
	if err != nil {
		return nil, err
	}
	resp, err := next(req)
	if err != nil {
		a.Settle(0, nil, nil) // sent or not, nobody knows: keep the charge
		return nil, err
	}
	return a.Response(resp), nil
}

// Transport returns an http.RoundTripper that admits the Messages calls sent
// through next (http.DefaultTransport when nil) as Middleware does, for HTTP
// clients other than the official SDKs: LangChainGo, raw net/http, a reverse
// proxy. It does not change the request it is given; a request whose body cannot
// be read again (no GetBody) is sent as a copy with a body that can.
func (l *Limiter) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
			req = req.Clone(req.Context()) // peekBody replaces the body
		}
		return l.Middleware(req, next.RoundTrip)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// peekBody returns req's body and leaves req able to send it: read from a copy when
// req has GetBody, else read and put back (with a GetBody).
func peekBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(rc)
	}
	b, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	req.Body, _ = req.GetBody()
	req.ContentLength = int64(len(b))
	return b, nil
}

// settled logs a backend error of a settle that has no caller to return it to.
func (l *Limiter) settled(class string, err error) {
	if err != nil {
		l.cfg.Logger.Warn("admit: settle a call", "class", class, "err", err)
	}
}

func isEventStream(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "text/event-stream")
}

// jsonTap passes a JSON answer on and keeps its bytes, to settle the attempt with
// its usage at EOF.
type jsonTap struct {
	a      *Attempt
	rc     io.ReadCloser
	header http.Header
	mu     sync.Mutex
	buf    []byte
	over   bool // more than maxUsageBody
	done   bool // settled
}

func (t *jsonTap) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.over {
		if len(t.buf)+n > maxUsageBody {
			t.over, t.buf = true, nil
		} else {
			t.buf = append(t.buf, p[:n]...)
		}
	}
	if err == io.EOF {
		t.end(true)
	}
	return n, err
}

// end settles the attempt: with the usage of the whole body, or (cut short, too
// long, unreadable) keeping the charge.
func (t *jsonTap) end(eof bool) {
	if t.done {
		return
	}
	t.done = true
	if u, ok := MessageUsage(t.buf); eof && !t.over && ok {
		t.a.Settle(http.StatusOK, t.header, &u)
		return
	}
	t.a.Settle(http.StatusOK, t.header, nil)
	t.buf = nil
}

func (t *jsonTap) Close() error {
	err := t.rc.Close()
	t.mu.Lock()
	t.end(false)
	t.mu.Unlock()
	return err
}

// streamTap passes a stream on and follows its events as they pass.
type streamTap struct {
	a  *Attempt
	rc io.ReadCloser

	mu         sync.Mutex
	line       []byte // the current line, not yet ended
	name, data []byte // the current event's
	su         StreamUsage
}

func (t *streamTap) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.scan(p[:n])
	if err == io.EOF {
		t.scan([]byte("\n\n")) // a last event without its blank line
		t.a.SettleStream(&t.su)
	}
	return n, err
}

// scan follows the SSE lines in b: event: and data: fields, an event at each blank
// line.
func (t *streamTap) scan(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(t.line) < maxUsageBody {
				t.line = append(t.line, b...)
			}
			return
		}
		line := b[:i]
		if len(t.line) > 0 {
			line = append(t.line, line...)
			t.line = t.line[:0]
		}
		b = b[i+1:]
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case len(line) == 0:
			if t.name != nil || t.data != nil {
				t.su.Event(t.name, t.data)
				t.a.StreamStarted(&t.su) // from message_start, its prefix is warm
			}
			t.name, t.data = nil, nil
		case bytes.HasPrefix(line, []byte("event:")):
			t.name = append(t.name[:0], bytes.TrimPrefix(line[len("event:"):], []byte(" "))...)
		case bytes.HasPrefix(line, []byte("data:")):
			if t.data != nil {
				t.data = append(t.data, '\n')
			}
			t.data = append(t.data, bytes.TrimPrefix(line[len("data:"):], []byte(" "))...)
		}
	}
}

func (t *streamTap) Close() error {
	err := t.rc.Close()
	t.mu.Lock()
	t.a.SettleStream(&t.su)
	t.mu.Unlock()
	return err
}
