package upstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// This file turns a Messages SSE stream into the message JSON a non-streaming call
// returns (anthropic-api.md 3.4). The message is message_start's, with its members in
// the order the API sent them; content is the blocks of content_block_start with their
// deltas applied; message_delta's fields replace the message's; its usage, cumulative,
// replaces the counts of message_start's usage member by member. Strings are spliced
// from the raw JSON of the deltas (escaped as the API escaped them), never decoded
// and re-encoded, except tool input, which is parsed from the concatenated
// partial_json and written compact.

// errStreamIncomplete is a stream that ended before message_stop.
var errStreamIncomplete = errors.New("stream ended before message_stop")

// streamError is an SSE error event: the API failed after its 200.
type streamError struct{ data []byte }

func (e *streamError) Error() string { return "error event in stream" }

// sseReader reads SSE events: lines of any length (bounded by max bytes in all),
// LF or CRLF line ends, several data lines joined by "\n", comments skipped.
type sseReader struct {
	br    *bufio.Reader
	long  []byte // a line longer than br's buffer
	event []byte
	data  []byte
	max   int64 // most bytes read in all
	read  int64
}

func newSSEReader(r io.Reader, max int64) *sseReader {
	return &sseReader{br: bufio.NewReaderSize(r, 16<<10), max: max}
}

var errSSETooLarge = errors.New("stream too large")

// line returns the next line without its end; the slice is valid until the next call.
func (s *sseReader) line() ([]byte, error) {
	l, err := s.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		s.long = append(s.long[:0], l...)
		for err == bufio.ErrBufferFull {
			if s.read+int64(len(s.long)) > s.max {
				return nil, errSSETooLarge
			}
			l, err = s.br.ReadSlice('\n')
			s.long = append(s.long, l...)
		}
		l = s.long
	}
	s.read += int64(len(l))
	if s.read > s.max {
		return nil, errSSETooLarge
	}
	if err != nil && (err != io.EOF || len(l) == 0) {
		return nil, err
	}
	l = bytes.TrimSuffix(l, []byte("\n"))
	return bytes.TrimSuffix(l, []byte("\r")), nil
}

// next returns the next event's name and data (valid until the next call); io.EOF
// when the stream ends. An event cut by the end of the stream is returned.
func (s *sseReader) next() (name, data []byte, err error) {
	s.event, s.data = s.event[:0], s.data[:0]
	hasData := false
	for {
		l, err := s.line()
		if err != nil {
			if err == io.EOF && hasData {
				return s.event, s.data, nil
			}
			return nil, nil, err
		}
		if len(l) == 0 {
			if hasData {
				return s.event, s.data, nil
			}
			s.event = s.event[:0]
			continue
		}
		if l[0] == ':' {
			continue
		}
		field, value := l, []byte(nil)
		if i := bytes.IndexByte(l, ':'); i >= 0 {
			field, value = l[:i], l[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			s.event = append(s.event[:0], value...)
		case "data":
			if hasData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			hasData = true
		}
	}
}

// block is one content block being assembled.
type block struct {
	ms   []member   // content_block_start's block
	strs []strAccum // text, thinking, signature
	js   []byte     // concatenated partial_json, decoded
	hasJ bool       // an input_json_delta came
	cits [][]byte   // citations from citations_delta
}

// strAccum is a string field's value so far, escaped as JSON (without the quotes).
type strAccum struct {
	key string
	buf []byte
}

// assembler builds the message from events.
type assembler struct {
	started bool
	done    bool // message_stop seen
	msg     []member
	blocks  []*block
	size    int64 // bytes held
	max     int64
}

func (a *assembler) hold(n int) error {
	a.size += int64(n)
	if a.size > a.max {
		return errSSETooLarge
	}
	return nil
}

// own copies b, which aliases the reader's buffer.
func (a *assembler) own(b []byte) ([]byte, error) {
	if err := a.hold(len(b)); err != nil {
		return nil, err
	}
	return append([]byte(nil), b...), nil
}

var errBadEvent = errors.New("malformed event")

// event applies one event. name is the event: line; when absent, the data's "type".
func (a *assembler) event(name, data []byte) error {
	if a.done {
		return nil
	}
	if !json.Valid(data) {
		return fmt.Errorf("event %q: data is not JSON: %w", truncate(string(name), 40), errBadEvent)
	}
	var typ, index, payload []byte
	var delta, usage []byte
	it := newObjIter(data)
	for it.next() {
		switch string(it.key) {
		case "type":
			typ = it.val
		case "index":
			index = it.val
		case "message", "content_block":
			payload = it.val
		case "delta":
			delta = it.val
		case "usage":
			usage = it.val
		}
	}
	err := it.err
	if len(name) == 0 {
		name, _ = stringInner(typ)
	}
	switch string(name) {
	case "ping":
		return nil
	case "error":
		d, err := a.own(data)
		if err != nil {
			return err
		}
		return &streamError{data: d}
	}
	switch string(name) {
	case "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop":
		if err != nil {
			return fmt.Errorf("%s: %w", name, errBadEvent)
		}
	default:
		return nil // other events are ignored, as the API's versioning policy asks
	}
	switch string(name) {
	case "message_start":
		if a.started || payload == nil {
			return fmt.Errorf("message_start: %w", errBadEvent)
		}
		p, err := a.own(payload)
		if err != nil {
			return err
		}
		if a.msg, err = members(p); err != nil {
			return fmt.Errorf("message_start: %w", errBadEvent)
		}
		a.started = true
	case "content_block_start":
		i, ok := a.index(index)
		if !a.started || !ok || i != len(a.blocks) || payload == nil {
			return fmt.Errorf("content_block_start %s: %w", index, errBadEvent)
		}
		p, err := a.own(payload)
		if err != nil {
			return err
		}
		b := &block{}
		if b.ms, err = members(p); err != nil {
			return fmt.Errorf("content_block_start: %w", errBadEvent)
		}
		a.blocks = append(a.blocks, b)
	case "content_block_delta":
		i, ok := a.index(index)
		if !ok || i >= len(a.blocks) || delta == nil {
			return fmt.Errorf("content_block_delta %s: %w", index, errBadEvent)
		}
		return a.delta(a.blocks[i], delta)
	case "content_block_stop":
		// Blocks are finished when the message is; a block the API leaves without a
		// stop (a tool call cut by max_tokens) is kept as it stands.
	case "message_delta":
		if !a.started {
			return fmt.Errorf("message_delta: %w", errBadEvent)
		}
		return a.messageDelta(delta, usage)
	case "message_stop":
		if !a.started {
			return fmt.Errorf("message_stop: %w", errBadEvent)
		}
		a.done = true
	}
	return nil
}

func (a *assembler) index(raw []byte) (int, bool) {
	n, err := strconv.Atoi(string(raw))
	return n, err == nil && n >= 0
}

func (a *assembler) delta(b *block, delta []byte) error {
	var typ, field, val []byte
	it := newObjIter(delta)
	for it.next() {
		switch string(it.key) {
		case "type":
			typ = it.val
		case "text", "thinking", "signature", "partial_json", "citation":
			field, val = it.key, it.val
		}
	}
	if it.err != nil {
		return fmt.Errorf("content_block_delta: %w", errBadEvent)
	}
	t, _ := stringInner(typ)
	var want string
	switch string(t) {
	case "text_delta":
		want = "text"
	case "thinking_delta":
		want = "thinking"
	case "signature_delta":
		want = "signature"
	case "input_json_delta":
		want = "partial_json"
	case "citations_delta":
		want = "citation"
	default:
		return nil // a delta type this client does not know
	}
	if string(field) != want {
		return fmt.Errorf("%s without %s: %w", t, want, errBadEvent)
	}
	switch want {
	case "partial_json":
		inner, ok := stringInner(val)
		if !ok {
			return fmt.Errorf("partial_json: %w", errBadEvent)
		}
		b.hasJ = true
		if bytes.IndexByte(inner, '\\') < 0 {
			if err := a.hold(len(inner)); err != nil {
				return err
			}
			b.js = append(b.js, inner...)
			return nil
		}
		var s string
		if json.Unmarshal(val, &s) != nil {
			return fmt.Errorf("partial_json: %w", errBadEvent)
		}
		if err := a.hold(len(s)); err != nil {
			return err
		}
		b.js = append(b.js, s...)
	case "citation":
		c, err := a.own(val)
		if err != nil {
			return err
		}
		b.cits = append(b.cits, c)
	default:
		inner, ok := stringInner(val)
		if !ok {
			return fmt.Errorf("%s: %w", want, errBadEvent)
		}
		if err := a.hold(len(inner)); err != nil {
			return err
		}
		acc := b.accum(want)
		acc.buf = append(acc.buf, inner...)
	}
	return nil
}

// accum returns the accumulator of a string field, started from the block's own value.
func (b *block) accum(key string) *strAccum {
	for i := range b.strs {
		if b.strs[i].key == key {
			return &b.strs[i]
		}
	}
	acc := strAccum{key: key}
	if v, ok := getMember(b.ms, key); ok {
		if inner, ok := stringInner(v); ok {
			acc.buf = append(acc.buf, inner...)
		}
	}
	b.strs = append(b.strs, acc)
	return &b.strs[len(b.strs)-1]
}

func (a *assembler) messageDelta(delta, usage []byte) error {
	if delta != nil {
		d, err := a.own(delta)
		if err != nil {
			return err
		}
		ms, err := members(d)
		if err != nil {
			return fmt.Errorf("message_delta: %w", errBadEvent)
		}
		for _, m := range ms {
			a.msg = setMember(a.msg, m.key, m.val)
		}
	}
	if usage == nil || isNull(usage) {
		return nil
	}
	// Cumulative counts: each one replaces message_start's; null means unchanged.
	var us []member
	if old, ok := getMember(a.msg, "usage"); ok && !isNull(old) {
		var err error
		if us, err = members(old); err != nil {
			return fmt.Errorf("message_start usage: %w", errBadEvent)
		}
	}
	u, err := a.own(usage)
	if err != nil {
		return err
	}
	ms, err := members(u)
	if err != nil {
		return fmt.Errorf("message_delta usage: %w", errBadEvent)
	}
	for _, m := range ms {
		if !isNull(m.val) {
			us = setMember(us, m.key, m.val)
		}
	}
	merged := appendMembers(nil, us)
	if err := a.hold(len(merged)); err != nil {
		return err
	}
	a.msg = setMember(a.msg, "usage", merged)
	return nil
}

// message returns the assembled message JSON.
func (a *assembler) message() []byte {
	out := make([]byte, 0, a.size+256)
	out = append(out, '{')
	hasContent := false
	for i, m := range a.msg {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendKey(out, m.key)
		if m.key == "content" {
			hasContent = true
			out = a.appendContent(out)
			continue
		}
		out = append(out, m.val...)
	}
	if !hasContent {
		if len(a.msg) > 0 {
			out = append(out, ',')
		}
		out = appendKey(out, "content")
		out = a.appendContent(out)
	}
	return append(out, '}')
}

func (a *assembler) appendContent(out []byte) []byte {
	out = append(out, '[')
	for i, b := range a.blocks {
		if i > 0 {
			out = append(out, ',')
		}
		ms := b.ms
		for _, s := range b.strs {
			v := make([]byte, 0, len(s.buf)+2)
			v = append(append(append(v, '"'), s.buf...), '"')
			ms = setMember(ms, s.key, v)
		}
		if b.hasJ {
			// The input, parsed: compact JSON. Input cut short (max_tokens inside a
			// tool call) is not JSON; the block then keeps content_block_start's.
			if js := bytes.TrimSpace(b.js); len(js) > 0 {
				var buf bytes.Buffer
				if json.Compact(&buf, js) == nil {
					ms = setMember(ms, "input", buf.Bytes())
				}
			}
		}
		if len(b.cits) > 0 {
			var v []byte
			v = append(v, '[')
			if old, ok := getMember(ms, "citations"); ok {
				if o := bytes.TrimSpace(old); len(o) > 2 && o[0] == '[' {
					if inner := bytes.TrimSpace(o[1 : len(o)-1]); len(inner) > 0 {
						v = append(append(v, inner...), ',')
					}
				}
			}
			for j, c := range b.cits {
				if j > 0 {
					v = append(v, ',')
				}
				v = append(v, c...)
			}
			ms = setMember(ms, "citations", append(v, ']'))
		}
		out = appendMembers(out, ms)
	}
	return append(out, ']')
}
