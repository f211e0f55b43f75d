package intake

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/wire"
)

// MaxLineBytes is the default longest line a Reader accepts: 256 MiB, the Message
// Batches request body limit. A longer line is a Problem, read past without being
// held in memory.
const MaxLineBytes = 256 << 20

// Request is one valid input line.
type Request struct {
	// Line is the 1-based line number in the input file.
	Line     int
	CustomID string
	// Params is the line's params object, byte for byte as the user wrote it.
	Params json.RawMessage
	// Model and MaxTokens are read from Params.
	Model     string
	MaxTokens int64
	// EstInputTokens is a rough input token count (see EstimateInputTokens), used
	// to reserve rate-limit budget before the call; the response's usage is the
	// real figure.
	EstInputTokens int64
	// Cache is the line's longest prompt-cache prefix (its last cache_control
	// breakpoint; cacheprefix), for the runner's scheduling; zero when the line has
	// no cache_control. Whether it is long enough to be cached depends on the model
	// it is sent to (catalog min_cache_tokens), which the runner checks.
	Cache cacheprefix.Prefix
}

// Problem is an input line that was rejected, and why. Field is the JSON path of
// the offending field ("params.max_tokens"), or empty when the line as a whole is
// bad (not JSON, too long).
type Problem struct {
	Line     int
	CustomID string // when the line had a valid one
	Field    string
	Reason   string
}

// Format returns the problem as "file:line: field: reason", the form printed to
// users; the field part is left out when Field is empty.
func (p Problem) Format(file string) string {
	if p.Field == "" {
		return fmt.Sprintf("%s:%d: %s", file, p.Line, p.Reason)
	}
	return fmt.Sprintf("%s:%d: %s: %s", file, p.Line, p.Field, p.Reason)
}

// Error returns the problem as "line N: field: reason".
func (p *Problem) Error() string {
	if p.Field == "" {
		return fmt.Sprintf("line %d: %s", p.Line, p.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", p.Line, p.Field, p.Reason)
}

// Options tune a Reader. The zero value reads a file from its start.
type Options struct {
	// FirstLine is the number given to the first line read, for a reader that
	// resumes mid-file at a line boundary. Defaults to 1.
	FirstLine int
	// MaxLineBytes is the longest line accepted, without its newline. Defaults to
	// MaxLineBytes (256 MiB).
	MaxLineBytes int
}

// Reader streams Requests and Problems from JSONL input. It holds one line at a
// time. It is not safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	max     int
	line    int   // number of the last line read
	offset  int64 // bytes consumed, through the last line's newline
	buf     []byte
	atStart bool
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader, opt Options) *Reader {
	if opt.FirstLine < 1 {
		opt.FirstLine = 1
	}
	if opt.MaxLineBytes <= 0 {
		opt.MaxLineBytes = MaxLineBytes
	}
	return &Reader{
		br:      bufio.NewReaderSize(r, 64<<10),
		max:     opt.MaxLineBytes,
		line:    opt.FirstLine - 1,
		atStart: opt.FirstLine == 1,
	}
}

// Line returns the number of the last line read (FirstLine-1 before the first).
func (r *Reader) Line() int { return r.line }

// Offset returns the number of bytes consumed so far, through the end of the last
// line returned by Next: where a new Reader would start to resume after it.
func (r *Reader) Offset() int64 { return r.offset }

// Next returns the next non-blank line, either as a Request or as a Problem
// (exactly one of them is non-nil), or io.EOF after the last line. Any other error
// is a read error of the underlying reader; the returned values stay valid after
// later calls.
func (r *Reader) Next() (*Request, *Problem, error) {
	for {
		b, tooLong, err := r.readLine()
		if err != nil {
			return nil, nil, err
		}
		if tooLong {
			return nil, &Problem{Line: r.line, Reason: fmt.Sprintf("line is longer than %d bytes", r.max)}, nil
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		req, prob := ParseLine(r.line, b)
		return req, prob, nil
	}
}

// readLine reads one line without its line ending. The slice is valid until the
// next call. It returns io.EOF only when no byte is left.
func (r *Reader) readLine() (line []byte, tooLong bool, err error) {
	r.buf = r.buf[:0]
	if cap(r.buf) > 4<<20 {
		r.buf = nil // do not keep one huge line's buffer for the rest of the file
	}
	n := 0
	direct := false // line is a slice of bufio's buffer, not copied
	for {
		chunk, err := r.br.ReadSlice('\n')
		n += len(chunk)
		r.offset += int64(len(chunk))
		switch {
		case tooLong:
		case len(r.buf)+len(chunk) > r.max+2: // +2: the "\r\n" that is not part of the line
			tooLong, r.buf, direct = true, r.buf[:0], false
		case err == nil && len(r.buf) == 0:
			line, direct = chunk, true
		default:
			r.buf = append(r.buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return nil, false, err
		}
		if err == io.EOF && n == 0 {
			return nil, false, io.EOF
		}
		break
	}
	r.line++
	if !direct {
		line = r.buf
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	line = bytes.TrimSuffix(line, []byte{'\r'})
	tooLong = tooLong || len(line) > r.max
	if r.atStart {
		r.atStart = false
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	}
	if tooLong {
		return nil, true, nil
	}
	return line, false, nil
}

// ParseLine validates one input line (without its newline) numbered n, and returns
// either a Request or a Problem. The Request's Params does not alias b.
func ParseLine(n int, b []byte) (*Request, *Problem) {
	bad := func(id, field, format string, args ...any) (*Request, *Problem) {
		return nil, &Problem{Line: n, CustomID: id, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if !json.Valid(b) {
		var syn *json.SyntaxError
		if err := json.Unmarshal(b, new(json.RawMessage)); errors.As(err, &syn) {
			return bad("", "", "invalid JSON: %s (at byte %d)", syn.Error(), syn.Offset)
		}
		return bad("", "", "invalid JSON")
	}
	b = trimSpace(b)
	if b[0] != '{' {
		return bad("", "", "must be a JSON object, not %s", jsonKind(b))
	}

	// Members are taken in order; a repeated key's last value counts, as in
	// encoding/json and the API.
	var rawID, rawParams, unknown []byte
	members(b, func(k, v []byte) {
		switch {
		case keyIs(k, "custom_id"):
			rawID = v
		case keyIs(k, "params"):
			rawParams = v
		case unknown == nil:
			unknown = k
		}
	})
	if rawID == nil {
		return bad("", "custom_id", "required")
	}
	id, ok := unquote(rawID)
	if !ok {
		return bad("", "custom_id", "must be a string, not %s", jsonKind(rawID))
	}
	if !wire.ValidCustomID(id) {
		return bad("", "custom_id", "must match ^[a-zA-Z0-9_-]{1,64}$, got %s", quoteShort(id))
	}
	if unknown != nil {
		name, _ := unquote(unknown)
		return bad(id, name, "unknown field (a line holds only custom_id and params)")
	}
	if rawParams == nil {
		return bad(id, "params", "required")
	}
	if rawParams[0] != '{' {
		return bad(id, "params", "must be a JSON object, not %s", jsonKind(rawParams))
	}

	var p paramFields
	p.read(rawParams)
	req := &Request{Line: n, CustomID: id}
	if p.model == nil {
		return bad(id, "params.model", "required")
	}
	if req.Model, ok = unquote(p.model); !ok {
		return bad(id, "params.model", "must be a string, not %s", jsonKind(p.model))
	}
	if req.Model == "" {
		return bad(id, "params.model", "must not be empty")
	}
	if p.maxTokens == nil {
		return bad(id, "params.max_tokens", "required")
	}
	mt, err := strconv.ParseInt(string(p.maxTokens), 10, 64)
	if err != nil || mt < 1 {
		return bad(id, "params.max_tokens", "must be a positive integer")
	}
	req.MaxTokens = mt
	if p.messages == nil {
		return bad(id, "params.messages", "required")
	}
	if p.messages[0] != '[' {
		return bad(id, "params.messages", "must be an array, not %s", jsonKind(p.messages))
	}
	if count(p.messages) == 0 {
		return bad(id, "params.messages", "must not be empty")
	}
	if p.stream != nil && !isNull(p.stream) && string(p.stream) != "false" {
		return bad(id, "params.stream", "not supported in input files (results are not streamed); remove it")
	}
	req.EstInputTokens = p.estimate()
	req.Params = bytes.Clone(rawParams)
	req.Cache = CachePrefix(req.Model, req.Params)
	return req, nil
}

// CachePrefix is the longest prompt-cache prefix of params sent to model (the
// last cache_control breakpoint, whatever its length: cacheprefix.Scan.Last(0)),
// or zero when params have no cache_control or do not parse as a Messages request.
// Lines without cache_control are not parsed further.
func CachePrefix(model string, params []byte) cacheprefix.Prefix {
	if !bytes.Contains(params, []byte(`"cache_control"`)) {
		return cacheprefix.Prefix{}
	}
	req, err := wire.ParseMessageRequest(params, wire.ParseOptions{AllowSystemRole: true})
	if err != nil {
		return cacheprefix.Prefix{}
	}
	last, _ := cacheprefix.Of(model, req, params).Last(0)
	return last
}

// paramFields are the members of params that intake reads, as raw JSON values
// (nil when absent).
type paramFields struct {
	model, maxTokens, messages, stream, system, tools []byte
}

func (p *paramFields) read(params []byte) {
	members(params, func(k, v []byte) {
		switch {
		case keyIs(k, "model"):
			p.model = v
		case keyIs(k, "max_tokens"):
			p.maxTokens = v
		case keyIs(k, "messages"):
			p.messages = v
		case keyIs(k, "stream"):
			p.stream = v
		case keyIs(k, "system"):
			p.system = v
		case keyIs(k, "tools"):
			p.tools = v
		}
	})
}

// count returns the number of elements of the array raw.
func count(raw []byte) int {
	n := 0
	elements(raw, func([]byte) { n++ })
	return n
}

// trimSpace trims JSON whitespace.
func trimSpace(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// isNull reports whether raw is the JSON literal null.
func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// jsonKind names the kind of JSON value raw holds, for messages.
func jsonKind(raw []byte) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// quoteShort quotes s for a message, cut to 70 bytes.
func quoteShort(s string) string {
	if len(s) > 70 {
		return strconv.Quote(s[:70]) + "…"
	}
	return strconv.Quote(s)
}
