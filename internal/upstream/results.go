package upstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/clade-dev/clade/internal/wire"
)

// Result types of a batch result line.
const (
	ResultSucceeded = "succeeded"
	ResultErrored   = "errored"
	ResultCanceled  = "canceled"
	ResultExpired   = "expired"
)

// Result is one line of a batch's results (anthropic-api.md 4.4).
type Result struct {
	// CustomID is custom_id.
	CustomID string
	// Type is result.type: succeeded, errored, canceled, expired, or a newer type
	// passed through as sent.
	Type string
	// ErrorType is result.error.error.type of an errored line (e.g.
	// invalid_request_error, which needs the request fixed before it is resent), else "".
	ErrorType string
	// Model and Usage are result.message.model and result.message.usage of a
	// succeeded line (the model that answered, and what to bill); Usage is nil when
	// the line has none.
	Model string
	Usage *Usage
	// Line is the raw JSON line without its line ending. It is valid only until the
	// next call to Next; copy it to keep it.
	Line []byte
}

// LineError is a results line that is not a result object.
type LineError struct {
	// Line is the 1-based line number.
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("results line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ResultsReader decodes batch results JSONL. Unlike the SDKs' reader (which once
// dropped lines over 64 KiB, and still stops at 32 MiB), it has no line-size limit: a
// line longer than its buffer is assembled in memory, so a line costs what it weighs.
// Blank lines are skipped; a final line without a newline is read. Each line is checked
// to be valid JSON, then custom_id and result.type are read without decoding the
// message.
//
//	rr, err := client.Results(ctx, id)
//	...
//	defer rr.Close()
//	for rr.Next() {
//		r := rr.Result()
//		...
//	}
//	if err := rr.Err(); err != nil { ... }
type ResultsReader struct {
	// RequestID is the request-id of the results response (set by Client.Results).
	RequestID string

	br      *bufio.Reader
	closer  io.Closer
	wrapErr func(error) error
	long    []byte // assembles lines longer than br's buffer
	line    int
	cur     Result
	err     error
	done    bool
}

// resultsBufferSize is the read buffer: lines shorter than this are not copied.
const resultsBufferSize = 256 << 10

// NewResultsReader decodes results JSONL from r (a downloaded file, or a body).
func NewResultsReader(r io.Reader) *ResultsReader {
	return &ResultsReader{br: bufio.NewReaderSize(r, resultsBufferSize)}
}

// Next advances to the next result. It returns false at the end of the input or on
// an error, which Err reports.
func (r *ResultsReader) Next() bool {
	if r.done {
		return false
	}
	for {
		line, err := r.readLine()
		if err != nil && err != io.EOF {
			// A line cut by a failed read is not trusted, even if it parses.
			r.fail(err)
			return false
		}
		if len(line) > 0 {
			r.line++
		}
		if line = trimSpace(line); len(line) > 0 {
			res, perr := parseResult(line)
			if perr != nil {
				r.fail(&LineError{Line: r.line, Err: perr})
				return false
			}
			r.cur = res
			return true
		}
		if err == io.EOF {
			r.done = true
			r.cur = Result{}
			return false
		}
	}
}

func (r *ResultsReader) fail(err error) {
	var le *LineError
	if r.wrapErr != nil && !errors.As(err, &le) {
		err = r.wrapErr(err)
	}
	r.err, r.done, r.cur = err, true, Result{}
}

// readLine returns the next line including its newline. It returns the line read so
// far with the error when a read fails, and io.EOF with the last line (which may be
// empty) at the end.
func (r *ResultsReader) readLine() ([]byte, error) {
	frag, err := r.br.ReadSlice('\n')
	if err == nil {
		return frag, nil // the common case: no copy
	}
	if err != bufio.ErrBufferFull {
		return frag, err
	}
	r.long = append(r.long[:0], frag...)
	for {
		frag, err = r.br.ReadSlice('\n')
		r.long = append(r.long, frag...)
		if err != bufio.ErrBufferFull {
			line := r.long
			// Do not pin one huge line's memory for the rest of the download.
			if cap(r.long) > 64<<20 {
				r.long = nil
			}
			return line, err
		}
	}
}

// Result returns the current result.
func (r *ResultsReader) Result() Result { return r.cur }

// Line returns the number of lines read so far, blank ones included.
func (r *ResultsReader) Line() int { return r.line }

// Err returns the error that stopped Next: a *LineError for a malformed line, or the
// read error (from Client.Results, a *TransportError or the ctx error). It is nil at a
// clean end of input.
func (r *ResultsReader) Err() error { return r.err }

// Close closes the underlying body, if the reader came from Client.Results.
func (r *ResultsReader) Close() error {
	r.done = true
	if r.closer != nil {
		c := r.closer
		r.closer = nil
		return c.Close()
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

var (
	errNotJSON     = errors.New("not valid JSON")
	errNoCustomID  = errors.New("no custom_id string")
	errNoResultTyp = errors.New("no result.type string")
)

// parseResult checks line is JSON and reads its custom_id, result.type and the
// errored result's error type. The fast scan handles what the API sends; anything it
// does not (escaped keys or values, unusual shapes) goes to encoding/json.
func parseResult(line []byte) (Result, error) {
	if !json.Valid(line) {
		return Result{}, errNotJSON
	}
	res, ok := scanResult(line)
	if !ok {
		var err error
		if res, err = decodeResult(line); err != nil {
			return Result{}, err
		}
	}
	if res.CustomID == "" {
		return Result{}, errNoCustomID
	}
	if !wire.ValidCustomID(res.CustomID) {
		// clade only submits valid ids, so this line cannot be one of ours.
		return Result{}, fmt.Errorf("custom_id %q does not match ^[a-zA-Z0-9_-]{1,64}$", truncate(res.CustomID, 80))
	}
	if res.Type == "" {
		return Result{}, errNoResultTyp
	}
	res.Line = line
	return res, nil
}

func decodeResult(line []byte) (Result, error) {
	var v struct {
		CustomID *string `json:"custom_id"`
		Result   *struct {
			Type  *string `json:"type"`
			Error *struct {
				Error *struct {
					Type string `json:"type"`
				} `json:"error"`
			} `json:"error"`
			Message *struct {
				Model json.RawMessage `json:"model"`
				Usage json.RawMessage `json:"usage"`
			} `json:"message"`
		} `json:"result"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		return Result{}, fmt.Errorf("decode: %w", err)
	}
	var res Result
	if v.CustomID == nil {
		return Result{}, errNoCustomID
	}
	res.CustomID = *v.CustomID
	if v.Result == nil || v.Result.Type == nil {
		return Result{}, errNoResultTyp
	}
	res.Type = *v.Result.Type
	if v.Result.Error != nil && v.Result.Error.Error != nil {
		res.ErrorType = v.Result.Error.Error.Type
	}
	// The model and usage only price the line: one the API would never send is left
	// out (the caller prices it another way), and never fails the line.
	if m := v.Result.Message; m != nil {
		var model string
		if json.Unmarshal(m.Model, &model) == nil {
			res.Model = model
		}
		var u Usage
		if len(m.Usage) > 0 && string(m.Usage) != "null" && json.Unmarshal(m.Usage, &u) == nil {
			res.Usage = &u
		}
	}
	return res, nil
}

// scanResult is the fast path over a line already known to be valid JSON. It reports
// false when the line needs encoding/json: a key or wanted value with escapes, or a
// wanted member of the wrong kind.
func scanResult(line []byte) (Result, bool) {
	s := scanner{wire.NewScanner(line)}
	var res Result
	var haveID, haveType bool
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "custom_id":
			v, ok := s.plainString()
			res.CustomID, haveID = string(v), ok
			return ok
		case "result":
			if !s.at('{') {
				return false
			}
			res.Type, res.ErrorType, haveType = "", "", false
			res.Model, res.Usage = "", nil
			return s.object(func(key []byte) bool {
				switch string(key) {
				case "type":
					v, ok := s.plainString()
					res.Type, haveType = internType(v), ok
					return ok
				case "message":
					if !s.at('{') {
						return s.skip()
					}
					return s.object(func(key []byte) bool {
						switch {
						case string(key) == "model" && s.at('"'):
							v, ok := s.plainString()
							res.Model = string(v)
							return ok
						case string(key) == "usage" && s.at('{'):
							u, ok := s.usage()
							res.Usage = u
							return ok
						}
						return s.skip()
					})
				case "error":
					if !s.at('{') {
						return s.skip()
					}
					return s.object(func(key []byte) bool {
						if string(key) != "error" || !s.at('{') {
							return s.skip()
						}
						return s.object(func(key []byte) bool {
							if string(key) != "type" || !s.at('"') {
								return s.skip()
							}
							v, ok := s.plainString()
							res.ErrorType = string(v)
							return ok
						})
					})
				}
				return s.skip()
			})
		}
		return s.skip()
	})
	return res, ok && haveID && haveType
}

// usage consumes a usage object. Token counts must be plain non-negative integers
// (or null); anything else reports false, for encoding/json to decide.
func (s *scanner) usage() (*Usage, bool) {
	u := &Usage{}
	ok := s.object(func(key []byte) bool {
		var dst *int64
		switch string(key) {
		case "input_tokens":
			dst = &u.InputTokens
		case "output_tokens":
			dst = &u.OutputTokens
		case "cache_creation_input_tokens":
			dst = &u.CacheCreationInputTokens
		case "cache_read_input_tokens":
			dst = &u.CacheReadInputTokens
		case "cache_creation":
			if !s.at('{') {
				return s.skip()
			}
			return s.object(func(key []byte) bool {
				switch string(key) {
				case "ephemeral_5m_input_tokens":
					return s.count(&u.CacheCreation.Ephemeral5m)
				case "ephemeral_1h_input_tokens":
					return s.count(&u.CacheCreation.Ephemeral1h)
				}
				return !folds(key, "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens") && s.skip()
			})
		case "service_tier":
			if s.at('"') {
				v, ok := s.plainString()
				u.ServiceTier = string(v)
				return ok
			}
			return s.skip()
		default:
			return !folds(key, usageKeys...) && s.skip()
		}
		return s.count(dst)
	})
	return u, ok
}

// usageKeys are the members usage reads.
var usageKeys = []string{"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation", "service_tier"}

// folds reports whether key, not one of names exactly, matches one of them as
// encoding/json matches names (ignoring case): the fast scan leaves such a member
// to encoding/json, so the two never read different values.
func folds(key []byte, names ...string) bool {
	for _, n := range names {
		if bytes.EqualFold(key, []byte(n)) {
			return true
		}
	}
	return false
}

// count consumes a token count into dst: digits, or null (left 0).
func (s *scanner) count(dst *int64) bool {
	v := s.Value()
	if string(v) == "null" {
		return !s.Bad()
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' || n > (1<<62)/10 {
			return false
		}
		n = n*10 + int64(c-'0')
	}
	if len(v) == 0 || s.Bad() {
		return false
	}
	*dst = n
	return true
}

func internType(b []byte) string {
	switch string(b) {
	case ResultSucceeded:
		return ResultSucceeded
	case ResultErrored:
		return ResultErrored
	case ResultCanceled:
		return ResultCanceled
	case ResultExpired:
		return ResultExpired
	}
	return string(b)
}

// scanner is wire.Scanner with the reads scanResult makes, each reporting whether
// it could make it.
type scanner struct{ wire.Scanner }

// at reports whether the next non-space byte is c.
func (s *scanner) at(c byte) bool { return s.Peek() == c }

// plainString consumes a string without escapes.
func (s *scanner) plainString() ([]byte, bool) {
	v, esc := s.Str()
	return v, !s.Bad() && !esc
}

// skip consumes one value.
func (s *scanner) skip() bool {
	s.Skip()
	return !s.Bad()
}

// object consumes an object, calling member for each key with the scanner at the
// value; member must consume the value. Keys with escapes make it report false.
func (s *scanner) object(member func(key []byte) bool) bool {
	if !s.ObjectStart() {
		return false
	}
	for s.NextMember() {
		key, esc := s.RawKey()
		if esc || s.Bad() || !member(key) {
			return false
		}
	}
	return !s.Bad()
}
