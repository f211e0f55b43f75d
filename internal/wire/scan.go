package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Scanner reads one JSON text from its start: the request parser here, the
// prompt-cache prefix scan (cacheprefix) and the results reader (upstream) all walk
// JSON with it. It is written for JSON already checked to be valid (validJSON,
// json.Valid, or a body ParseMessageRequest accepted), so it checks structure only
// where it must tell values apart. On anything else it sets Bad and never panics:
// what it returned after Bad is set means nothing.
type Scanner struct {
	b   []byte
	i   int
	bad bool
}

// scanner is the request parser's name for Scanner (fastparse.go).
type scanner = Scanner

// NewScanner returns a Scanner at the start of b.
func NewScanner(b []byte) Scanner { return Scanner{b: b} }

// Bad reports whether the scan met bytes that are not valid JSON.
func (s *Scanner) Bad() bool { return s.bad }

func (s *Scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Peek is the next byte that is not white space; 0 (and Bad) at the end.
func (s *Scanner) Peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		s.bad = true
		return 0
	}
	return s.b[s.i]
}

// ObjectStart consumes '{', or reports that the next value is not an object.
func (s *Scanner) ObjectStart() bool { return s.open('{') }

// ArrayStart consumes '[', or reports that the next value is not an array.
func (s *Scanner) ArrayStart() bool { return s.open('[') }

func (s *Scanner) open(c byte) bool {
	if s.Peek() == c {
		s.i++
		return true
	}
	return false
}

// NextElem moves to the next element of the array whose '[' or previous element
// was just read, and reports whether there is one.
func (s *Scanner) NextElem() bool {
	switch s.Peek() {
	case ']':
		s.i++
		return false
	case ',':
		s.i++
		return !s.bad
	case 0:
		return false
	}
	return true // the first element
}

// NextMember moves to the next member's key of the object whose '{' or previous
// value was just read, and reports whether there is one.
func (s *Scanner) NextMember() bool {
	switch s.Peek() {
	case '}':
		s.i++
		return false
	case ',':
		s.i++
		if s.Peek() != '"' {
			s.bad = true
			return false
		}
		return true
	case '"':
		return true
	}
	s.bad = true
	return false
}

// colon reads the ':' after a key.
func (s *Scanner) colon() {
	if s.Peek() != ':' {
		s.bad = true
		return
	}
	s.i++
}

// RawKey reads a member's key and its colon, and returns the key's bytes between
// the quotes, a slice of the text, and whether they hold escapes.
func (s *Scanner) RawKey() (raw []byte, esc bool) {
	raw, esc = s.Str()
	s.colon()
	return raw, esc
}

// PlainKey reads the key NextMember moved to, and its colon, and returns the key's
// bytes, a slice of the text, when they are its decoded value (no escape, valid
// UTF-8); else nil, with s where it was, for Key to decode.
func (s *Scanner) PlainKey() []byte {
	start := s.i + 1
	for j := start; j < len(s.b); {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			s.colon()
			return s.b[start:j:j]
		case c == '\\' || c < ' ':
			return nil
		case c < utf8.RuneSelf:
			j++
		default:
			r, n := utf8.DecodeRune(s.b[j:])
			if r == utf8.RuneError && n == 1 {
				return nil
			}
			j += n
		}
	}
	s.bad = true
	return nil
}

// Key appends a member's decoded key to dst (as Unquote) and reads its colon.
func (s *Scanner) Key(dst []byte) []byte {
	dst = s.Unquote(dst)
	s.colon()
	return dst
}

// Str reads a string and returns its bytes between the quotes, a slice of the text,
// and whether they hold escapes.
func (s *Scanner) Str() (raw []byte, esc bool) {
	if s.Peek() != '"' {
		s.bad = true
		return nil, false
	}
	start := s.i + 1
	end := s.stringEnd()
	s.i = end
	if s.bad {
		return nil, false
	}
	raw = s.b[start : end-1 : end-1]
	return raw, bytes.IndexByte(raw, '\\') >= 0
}

// stringEnd is the index after the closing quote of the string at i. A quote ends
// the string unless an odd run of backslashes precedes it (valid JSON pairs every
// backslash with the character after it).
func (s *Scanner) stringEnd() int {
	j := s.i + 1
	for {
		k := bytes.IndexByte(s.b[j:], '"')
		if k < 0 {
			s.bad = true
			return len(s.b)
		}
		j += k
		esc := 0
		for p := j - 1; p > s.i && s.b[p] == '\\'; p-- {
			esc++
		}
		j++
		if esc%2 == 0 {
			return j
		}
	}
}

// Skip reads one value.
func (s *Scanner) Skip() {
	switch s.Peek() {
	case '"':
		s.i = s.stringEnd()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				s.i = s.stringEnd()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
		s.bad = true
	case 0:
	default: // a number or a literal
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

// Value reads one value and returns its bytes, a slice of the text.
func (s *Scanner) Value() []byte {
	s.ws()
	start := s.i
	s.Skip()
	return s.b[start:s.i]
}

// The request parser's names (fastparse.go).

func (s *Scanner) objectStart() bool { return s.ObjectStart() }
func (s *Scanner) arrayStart()       { s.ArrayStart() }
func (s *Scanner) nextElem() bool    { return s.NextElem() }
func (s *Scanner) value() []byte     { return s.Value() }

// nextKey moves to the next member of the current object and returns its key,
// positioned at the value; more is false at the end of the object. A key with an
// escape comes back as "\\", which matches no field name.
func (s *Scanner) nextKey() (key []byte, more bool) {
	if !s.NextMember() {
		return nil, false
	}
	key, esc := s.RawKey()
	if esc {
		return []byte(`\`), true
	}
	return key, true
}

// decodeString decodes v when it is a JSON string, exactly as encoding/json does.
func decodeString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	// Without escapes, encoding/json only replaces invalid UTF-8.
	if in := v[1 : len(v)-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return string(in), true
	}
	var str string
	if err := json.Unmarshal(v, &str); err != nil {
		return "", false
	}
	return str, true
}

// decodeInt decodes v when it is a JSON integer that fits an int64, as encoding/json does.
func decodeInt(v []byte) (int64, bool) {
	if !isNumber(v) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// isNumber reports whether a valid JSON value is a number.
func isNumber(v []byte) bool { return len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') }

func isNullLit(v []byte) bool { return string(v) == "null" }

// foldsTo reports whether an unknown key would still be decoded into one of the named
// struct fields: encoding/json matches field names case-insensitively (with Unicode
// folding, hence any non-ASCII key counts).
func foldsTo(key []byte, names ...string) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf || c == '\\' {
			return true
		}
	}
	for _, n := range names {
		if len(n) == len(key) && asciiEqualFold(key, n) {
			return true
		}
	}
	return false
}

func asciiEqualFold(a []byte, b string) bool {
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// validJSON reports whether b is one valid JSON value, as json.Valid does, several times
// faster (json.Valid steps a state machine through a function call per byte). It may
// report false for valid JSON it does not handle, nesting deeper than maxValidDepth;
// it never reports true for invalid JSON (FuzzValidJSON checks both).
func validJSON(b []byte) bool {
	v := validator{b: b}
	v.ws()
	if !v.value(0) {
		return false
	}
	v.ws()
	return v.i == len(b)
}

// maxValidDepth bounds validJSON's recursion; encoding/json allows 10000 levels.
const maxValidDepth = 512

type validator struct {
	b []byte
	i int
}

func (v *validator) ws() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

func (v *validator) at(c byte) bool { return v.i < len(v.b) && v.b[v.i] == c }

func (v *validator) value(depth int) bool {
	if v.i >= len(v.b) {
		return false
	}
	switch c := v.b[v.i]; c {
	case '"':
		return v.str()
	case '{':
		if depth >= maxValidDepth {
			return false
		}
		v.i++
		v.ws()
		if v.at('}') {
			v.i++
			return true
		}
		for {
			if !v.at('"') || !v.str() {
				return false
			}
			v.ws()
			if !v.at(':') {
				return false
			}
			v.i++
			v.ws()
			if !v.value(depth + 1) {
				return false
			}
			v.ws()
			switch {
			case v.at(','):
				v.i++
				v.ws()
			case v.at('}'):
				v.i++
				return true
			default:
				return false
			}
		}
	case '[':
		if depth >= maxValidDepth {
			return false
		}
		v.i++
		v.ws()
		if v.at(']') {
			v.i++
			return true
		}
		for {
			if !v.value(depth + 1) {
				return false
			}
			v.ws()
			switch {
			case v.at(','):
				v.i++
				v.ws()
			case v.at(']'):
				v.i++
				return true
			default:
				return false
			}
		}
	case 't':
		return v.lit("true")
	case 'f':
		return v.lit("false")
	case 'n':
		return v.lit("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			return v.num()
		}
		return false
	}
}

func (v *validator) lit(word string) bool {
	if len(v.b)-v.i < len(word) || string(v.b[v.i:v.i+len(word)]) != word {
		return false
	}
	v.i += len(word)
	return true
}

// strPlain marks the bytes a string may hold as they are: not a quote, a backslash or
// a control character. Bytes above 0x7F pass, as in encoding/json, valid UTF-8 or not.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str moves past the string at the cursor, checking its escapes.
func (v *validator) str() bool {
	b, i := v.b, v.i+1
	for {
		for i < len(b) && strPlain[b[i]] {
			i++
		}
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '"':
			v.i = i + 1
			return true
		case '\\':
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return false
				}
				for _, h := range b[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 6
			default:
				return false
			}
		default: // a control character
			return false
		}
	}
}

// num moves past a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (v *validator) num() bool {
	b, i := v.b, v.i
	digits := func() bool {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	v.i = i
	return true
}
