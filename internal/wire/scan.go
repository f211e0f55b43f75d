package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// scanner walks JSON already known to be valid, so it checks structure only where it
// must tell values apart.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// objectStart consumes '{', or reports that the next value is not an object.
func (s *scanner) objectStart() bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '{' {
		s.i++
		return true
	}
	return false
}

// arrayStart consumes '['; the caller has checked that the value is an array.
func (s *scanner) arrayStart() {
	s.ws()
	s.i++
}

// nextKey moves to the next member of the current object and returns its key,
// positioned at the value; more is false at the end of the object. A key with an
// escape comes back as "\\", which matches no field name.
func (s *scanner) nextKey() (key []byte, more bool) {
	s.ws()
	if s.b[s.i] == ',' {
		s.i++
		s.ws()
	}
	if s.b[s.i] == '}' {
		s.i++
		return nil, false
	}
	start := s.i + 1
	end, esc := s.stringEnd()
	s.ws()
	s.i++ // ':'
	if esc {
		return []byte(`\`), true
	}
	return s.b[start : end-1], true
}

// nextElem moves to the next element of the current array; false at its end.
func (s *scanner) nextElem() bool {
	s.ws()
	if s.b[s.i] == ',' {
		s.i++
		s.ws()
	}
	if s.b[s.i] == ']' {
		s.i++
		return false
	}
	return true
}

// stringEnd moves past the string at the cursor and returns the index after its
// closing quote and whether the string has escapes. A quote ends the string unless an
// odd run of backslashes precedes it (valid JSON pairs every backslash with the
// character after it).
func (s *scanner) stringEnd() (end int, esc bool) {
	start := s.i + 1
	i := start
	for {
		q := i + bytes.IndexByte(s.b[i:], '"')
		k := q
		for k > i && s.b[k-1] == '\\' {
			k--
		}
		if (q-k)%2 == 0 {
			s.i = q + 1
			return s.i, bytes.IndexByte(s.b[start:q], '\\') >= 0
		}
		i = q + 1
	}
}

// value moves past the next value and returns its bytes.
func (s *scanner) value() []byte {
	s.ws()
	start := s.i
	switch s.b[s.i] {
	case '"':
		s.stringEnd()
	case '{', '[':
		depth := 0
		for {
			switch s.b[s.i] {
			case '"':
				s.stringEnd()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.i++
			if depth == 0 {
				break
			}
		}
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return s.b[start:s.i]
			}
			s.i++
		}
	}
	return s.b[start:s.i]
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
