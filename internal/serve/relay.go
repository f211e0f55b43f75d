package serve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
)

// maxEvent bounds one SSE event, as the SDKs' line buffer does (32 MiB).
const maxEvent = 32 << 20

var errEventTooLarge = errors.New("sse event too large")

// eventReader splits an SSE stream into events, each returned with its bytes exactly
// as sent (its lines and the blank line that ends it), so the relay changes nothing.
type eventReader struct {
	br  *bufio.Reader
	buf []byte
}

// eventReaders keeps readers (their 32 KiB buffers) between streams: one per
// stream was most of the bytes a streamed call allocated.
var eventReaders = sync.Pool{New: func() any { return &eventReader{br: bufio.NewReaderSize(nil, 32<<10)} }}

func newEventReader(r io.Reader) *eventReader {
	e := eventReaders.Get().(*eventReader)
	e.br.Reset(r)
	e.buf = e.buf[:0]
	return e
}

// release returns e to the pool; neither e nor an event it returned may be used
// after it.
func (e *eventReader) release() {
	e.br.Reset(nil)
	if cap(e.buf) > 64<<10 {
		e.buf = nil // a large event's buffer is not kept
	}
	eventReaders.Put(e)
}

// next returns the next event's raw bytes (valid until the next call) and its name
// (the event: line), or io.EOF. Bytes after the last blank line are returned as a
// last event.
func (e *eventReader) next() (raw []byte, name []byte, err error) {
	e.buf = e.buf[:0]
	start := 0 // where the current line starts in buf
	for {
		line, err := e.br.ReadSlice('\n')
		e.buf = append(e.buf, line...)
		if len(e.buf) > maxEvent {
			return nil, nil, errEventTooLarge
		}
		if err == bufio.ErrBufferFull {
			continue // the line goes on
		}
		if err != nil {
			if err == io.EOF && len(e.buf) > 0 {
				return e.buf, eventName(e.buf), nil
			}
			return nil, nil, err
		}
		if len(bytes.TrimRight(e.buf[start:], "\r\n")) == 0 {
			if start == 0 {
				// A blank line with no event before it: pass it on as it is.
				return e.buf, nil, nil
			}
			return e.buf, eventName(e.buf), nil
		}
		start = len(e.buf)
	}
}

// eventBuffered reports whether a whole event is already buffered, so that next
// returns it without reading from the stream.
func (e *eventReader) eventBuffered() bool {
	b, _ := e.br.Peek(e.br.Buffered())
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n"))
}

// eventName returns the value of an event's "event:" line.
func eventName(raw []byte) []byte {
	for l := range bytes.Lines(raw) {
		if v, ok := fieldValue(l, "event:"); ok {
			return v
		}
	}
	return nil
}

// eventData returns an event's data, its data: lines joined by "\n".
func eventData(raw []byte) []byte {
	var out []byte
	n := 0
	for l := range bytes.Lines(raw) {
		if v, ok := fieldValue(l, "data:"); ok {
			if n > 0 {
				out = append(out, '\n')
			}
			out = append(out, v...)
			n++
		}
	}
	return out
}

// fieldValue returns the value of an SSE line "field: value" (its line end and the
// one space after the colon removed), if line is that field's.
func fieldValue(line []byte, field string) ([]byte, bool) {
	v, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte(field))
	return bytes.TrimPrefix(v, []byte(" ")), ok
}

// relayStream passes an SSE answer on event by event, flushed as it arrives,
// and reads the usage from message_start and message_delta on the way. The stream's
// headers resync the limiter when they arrive; its usage is committed at the end
// (or what was generated before the stream broke off).
func (g *Gateway) relayStream(w http.ResponseWriter, r *http.Request, c *call, att *admit.Attempt, resp *http.Response) int {
	defer resp.Body.Close()
	if c.class != "" {
		// The limiter learns the stream's headers beside it: with shared limits
		// that is a round trip to Redis the first event need not wait for.
		class, h, now := c.class, resp.Header, g.now()
		g.settleAfter(func() { g.settle(g.lim.ResyncAt(class, h, now)) })
	}
	copyHeaders(w.Header(), resp.Header, false)
	w.WriteHeader(resp.StatusCode)
	// The headers leave with the first event (its flush below), in one write, as
	// the API sends message_start at once.
	rc := http.NewResponseController(w)
	var (
		su       admit.StreamUsage
		sc       streamCost
		broke    bool // upstream's stream ended with an error, not at its end
		clientOK = true
	)
	er := newEventReader(resp.Body)
	defer er.release()
	for {
		raw, name, err := er.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && r.Context().Err() == nil {
				broke = true
				g.log.Warn("upstream stream broke off", "class", c.class, "request_id", string(g.up.Scrub([]byte(resp.Header.Get("request-id")))), "error", err)
			}
			break
		}
		if _, err := w.Write(raw); err != nil {
			clientOK = false
			break
		}
		// Flush unless the next event has already arrived whole: it is written at
		// once, and flushed with this one. So no event waits in the gateway while
		// the gateway waits for upstream, and events that arrived together leave
		// together, in one write instead of one per event.
		if !er.eventBuffered() {
			if err := rc.Flush(); err != nil {
				clientOK = false
				break
			}
		}
		if len(name) > 0 {
			// Only message_start and message_delta carry usage: the deltas of
			// content, most of a stream's events, are not decoded.
			var data []byte
			if n := string(name); n == "message_start" || n == "message_delta" {
				data = eventData(raw)
			}
			su.Event(name, data)
			att.StreamStarted(&su) // from message_start, its prompt-cache prefix is warm
			if su.Usage().CacheCreationInputTokens > 0 {
				sc.event(name, data) // the split of cache writes by TTL, for the cost
			}
		}
	}
	complete := su.Complete()
	// Cut short (by the client, upstream, or an error event), the stream is charged
	// at least the output reserved (StreamUsage.Settle), and its usage does not
	// calibrate the estimates.
	started := su.Started()
	var cost spend.Micros
	if started {
		cost = c.budget.cost(streamUsage(sc.start, su, c.budget))
		g.done(c, su.Usage())
	}
	c.settleLater(func() {
		att.SettleStream(&su)
		if started {
			c.budget.settle(context.Background(), cost, g.spendFailed)
		} else {
			c.budget.release()
		}
	})
	switch {
	case !clientOK || (!complete && r.Context().Err() != nil):
		return 499
	case broke && !complete:
		// The client must see the stream break off, not end: an SDK takes a
		// stream that ends for a whole answer. (After message_stop the answer is
		// whole, and ends cleanly whatever happened to the connection after it.)
		return statusCut
	}
	return resp.StatusCode
}

// streamUsage is the usage a stream is charged: its final counts (the TTL split
// of its cache writes from message_start when it adds up), and, when it was cut
// short, at least all of max_tokens as output, as the API charged what it
// generated up to the cut and the last usage seen may not include it.
func streamUsage(start upstream.Usage, su admit.StreamUsage, h *budgetHold) upstream.Usage {
	u := su.Usage()
	out := upstream.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens,
		CacheCreationInputTokens: u.CacheCreationInputTokens, CacheReadInputTokens: u.CacheReadInputTokens}
	if start.CacheCreation.Ephemeral5m+start.CacheCreation.Ephemeral1h == u.CacheCreationInputTokens {
		out.CacheCreation = start.CacheCreation
	}
	if !su.Complete() && h != nil {
		out.OutputTokens = max(out.OutputTokens, h.max)
	}
	return out
}

// statusCut is messages' result for a stream the upstream cut off midway: the client
// already has a 200, and the connection is to be aborted (handleMessages).
const statusCut = -1
