package cacheprefix

import (
	"bytes"
	"hash"
	"slices"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// The canonical bytes of a request's blocks, read in one scan of the body.
//
// A block's canonical bytes are what encoding/json makes of it when it is decoded
// into a map[string]json.RawMessage, its cache_control member deleted, and the map
// encoded again (the way Of first computed them, still the test oracle: ofOracle):
// the top-level members sorted by key (decoded, compared as bytes; of duplicate keys
// the last), each key encoded as encoding/json encodes a string, each value compacted
// with <, >, &, U+2028 and U+2029 escaped in strings. A null block is "null"; a block
// that is neither an object nor null keeps its bytes. String content is the block
// {"text": the string, "type": "text"} so encoded.
//
// Which values are tools, system and messages' content follows encoding/json's
// decoding of the body into Of's former struct: member names matched as it matches
// field names (case-insensitively, the last match winning); a tools or messages value
// that is not an array or null, or a message that is not an object or null, is a body
// Of does not hash. For a duplicated messages member the struct decode reused earlier
// elements; the scan takes the last value whole, which differs only for bodies
// wire.ParseMessageRequest rejects (it takes the last value too, and requires each
// message's content).
//
// The scan expects valid JSON (the body wire.ParseMessageRequest accepted); on
// anything else it reports false and Of hashes nothing, as a failed decode did.

// layout is the part of a body whose bytes are cached: each block's canonical
// bytes, and which blocks are the tools, the system prompt and each message's
// content.
type layout struct {
	buf    []byte // the canonical bytes of every block read, back to back
	blocks []span // each block's bytes in buf
	tools  section
	system section
	msgs   []section

	vals []byte   // an object block's member values, compacted
	mems []member // an object block's members
	str  []byte   // an unquoted string

	h       hash.Hash // SHA-256, for Of
	scratch []byte    // Of's hash input and sums
}

// span is a block's canonical bytes, buf[lo:hi].
type span struct{ lo, hi int }

// section is a list of blocks, blocks[lo:hi]: the tools, the system prompt's or
// one message's content. A value with no blocks (null, absent) is empty.
type section struct{ lo, hi int }

func (s section) len() int { return s.hi - s.lo }

// member is one member of an object block: its decoded key (a slice of the body
// or of keys) and its compacted value, vals[lo:hi].
type member struct {
	key    []byte
	lo, hi int
}

// maxPooledLayout is the largest buffer a layout keeps for the next body: larger
// bodies allocate their own.
const maxPooledLayout = 1 << 20

var layouts = sync.Pool{New: func() any { return new(layout) }}

func getLayout() *layout { return layouts.Get().(*layout) }

func (l *layout) release() {
	if cap(l.buf) > maxPooledLayout || cap(l.vals) > maxPooledLayout || cap(l.str) > maxPooledLayout {
		return
	}
	l.buf, l.blocks, l.msgs = l.buf[:0], l.blocks[:0], l.msgs[:0]
	l.tools, l.system = section{}, section{}
	clear(l.mems[:cap(l.mems)]) // drop references to the body
	l.mems = l.mems[:0]
	layouts.Put(l)
}

// block returns the canonical bytes of block i of sec.
func (l *layout) block(sec section, i int) []byte {
	sp := l.blocks[sec.lo+i]
	return l.buf[sp.lo:sp.hi]
}

// read scans body, a JSON object, and reports whether Of can hash it.
func (l *layout) read(body []byte) bool {
	s := scanner{b: body}
	if s.peek() != '{' {
		return false
	}
	s.i++
	var key []byte
	for s.nextMember() {
		key = s.key(key[:0])
		switch {
		case bytes.EqualFold(key, []byte("tools")):
			switch s.peek() {
			case 'n':
				s.skip()
				l.tools = section{}
			case '[':
				l.tools = l.array(&s)
			default:
				return false
			}
		case bytes.EqualFold(key, []byte("system")):
			l.system = l.content(&s)
		case bytes.EqualFold(key, []byte("messages")):
			if !l.messages(&s) {
				return false
			}
		default:
			s.skip()
		}
		if s.bad {
			return false
		}
	}
	return !s.bad
}

// messages reads the messages value.
func (l *layout) messages(s *scanner) bool {
	l.msgs = l.msgs[:0]
	switch s.peek() {
	case 'n':
		s.skip()
		return true
	case '[':
	default:
		return false
	}
	s.i++
	var key []byte
	for s.nextElem() {
		var content section
		switch s.peek() {
		case 'n':
			s.skip()
		case '{':
			s.i++
			for s.nextMember() {
				key = s.key(key[:0])
				if bytes.EqualFold(key, []byte("content")) {
					content = l.content(s)
				} else {
					s.skip()
				}
			}
		default:
			return false
		}
		l.msgs = append(l.msgs, content)
	}
	return !s.bad
}

// content reads a content value: a list of blocks, a string (one text block), or
// anything else (no blocks).
func (l *layout) content(s *scanner) section {
	switch s.peek() {
	case '[':
		return l.array(s)
	case '"':
		lo := len(l.buf)
		l.str = s.unquote(l.str[:0])
		l.buf = append(l.buf, `{"text":`...)
		l.buf = appendString(l.buf, l.str)
		l.buf = append(l.buf, `,"type":"text"}`...)
		l.blocks = append(l.blocks, span{lo, len(l.buf)})
		return section{len(l.blocks) - 1, len(l.blocks)}
	}
	s.skip()
	return section{}
}

// array reads an array of blocks.
func (l *layout) array(s *scanner) section {
	s.i++
	lo := len(l.blocks)
	for s.nextElem() {
		start := len(l.buf)
		l.canonical(s)
		l.blocks = append(l.blocks, span{start, len(l.buf)})
	}
	return section{lo, len(l.blocks)}
}

// canonical appends the canonical bytes of the block at s to buf.
func (l *layout) canonical(s *scanner) {
	switch s.peek() {
	case '{':
	case 'n':
		s.skip()
		l.buf = append(l.buf, "null"...)
		return
	default:
		start := s.i
		s.skip()
		l.buf = append(l.buf, s.b[start:s.i]...)
		return
	}
	s.i++
	l.vals, l.mems = l.vals[:0], l.mems[:0]
	var keys []byte // decoded keys that are not slices of the body
	for s.nextMember() {
		kq := s.i
		key := s.rawKey()
		if key == nil { // escaped or not UTF-8: decode it
			s.i = kq
			lo := len(keys)
			keys = s.key(keys)
			key = keys[lo:len(keys):len(keys)]
		}
		if string(key) == "cache_control" {
			s.skip()
			continue
		}
		lo := len(l.vals)
		l.vals = s.compact(l.vals)
		l.mems = append(l.mems, member{key: key, lo: lo, hi: len(l.vals)})
	}
	slices.SortStableFunc(l.mems, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	l.buf = append(l.buf, '{')
	first := true
	for i, m := range l.mems {
		if i+1 < len(l.mems) && bytes.Equal(m.key, l.mems[i+1].key) {
			continue // a later duplicate wins
		}
		if !first {
			l.buf = append(l.buf, ',')
		}
		first = false
		l.buf = appendString(l.buf, m.key)
		l.buf = append(l.buf, ':')
		l.buf = append(l.buf, l.vals[m.lo:m.hi]...)
	}
	l.buf = append(l.buf, '}')
}

// scanner reads a JSON text b from i. It trusts b to be valid and sets bad
// (never panics) where it is not.
type scanner struct {
	b   []byte
	i   int
	bad bool
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

// peek is the next byte that is not white space; 0 (and bad) at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		s.bad = true
		return 0
	}
	return s.b[s.i]
}

// nextElem moves to the next element of the array whose '[' or previous element
// was just read, and reports whether there is one.
func (s *scanner) nextElem() bool {
	switch s.peek() {
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

// nextMember moves to the next member's key of the object whose '{' or previous
// value was just read, and reports whether there is one.
func (s *scanner) nextMember() bool {
	switch s.peek() {
	case '}':
		s.i++
		return false
	case ',':
		s.i++
		if s.peek() != '"' {
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
func (s *scanner) colon() {
	if s.peek() != ':' {
		s.bad = true
		return
	}
	s.i++
}

// rawKey reads a member's key and its colon and returns the key's bytes, a slice
// of b, when they are its decoded value (no escape, valid UTF-8); else nil, with
// s where it was.
func (s *scanner) rawKey() []byte {
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

// key appends a member's decoded key to dst and reads its colon.
func (s *scanner) key(dst []byte) []byte {
	dst = s.unquote(dst)
	s.colon()
	return dst
}

// stringEnd is the index after the closing quote of the string at i.
func (s *scanner) stringEnd() int {
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

// skip reads one value.
func (s *scanner) skip() {
	switch s.peek() {
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

// compact appends one value to dst as encoding/json compacts a RawMessage it
// encodes: white space outside strings dropped; <, >, &, U+2028 and U+2029 in
// strings escaped.
func (s *scanner) compact(dst []byte) []byte {
	switch s.peek() {
	case '"':
		return s.compactString(dst)
	case '{', '[':
	default:
		start := s.i
		s.skip()
		return append(dst, s.b[start:s.i]...)
	}
	depth := 0
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch c {
		case ' ', '\t', '\n', '\r':
			s.i++
			continue
		case '"':
			dst = s.compactString(dst)
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		}
		dst = append(dst, c)
		s.i++
		if depth == 0 {
			return dst
		}
	}
	s.bad = true
	return dst
}

// inString marks the bytes compactString stops at.
var inString = [256]bool{'"': true, '\\': true, '<': true, '>': true, '&': true, 0xE2: true}

const hexDigits = "0123456789abcdef"

// compactString appends the string at i as compact does.
func (s *scanner) compactString(dst []byte) []byte {
	b := s.b
	start := s.i
	for j := s.i + 1; j < len(b); {
		c := b[j]
		if !inString[c] {
			j++
			continue
		}
		switch c {
		case '"':
			s.i = j + 1
			return append(dst, b[start:j+1]...)
		case '\\':
			j += 2
		case '<', '>', '&':
			dst = append(dst, b[start:j]...)
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			j++
			start = j
		default: // 0xE2
			if j+2 < len(b) && b[j+1] == 0x80 && b[j+2]&^1 == 0xA8 {
				dst = append(dst, b[start:j]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[b[j+2]&0xF])
				j += 3
				start = j
			} else {
				j++
			}
		}
	}
	s.bad = true
	s.i = len(b)
	return dst
}

// unquote reads the string at i and appends its value to dst as encoding/json
// decodes it: escapes resolved, invalid UTF-8 and unpaired surrogates replaced by
// U+FFFD.
func (s *scanner) unquote(dst []byte) []byte {
	if s.peek() != '"' {
		s.bad = true
		return dst
	}
	end := s.stringEnd()
	if s.bad {
		return dst
	}
	b := s.b[s.i+1 : end-1]
	s.i = end
	for r := 0; r < len(b); {
		c := b[r]
		switch {
		case c == '\\':
			if r+1 >= len(b) {
				s.bad = true
				return dst
			}
			switch e := b[r+1]; e {
			case '"', '\\', '/', '\'':
				dst = append(dst, e)
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := getu4(b[r:])
				if rr < 0 {
					s.bad = true
					return dst
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(b[r:])); dec != unicode.ReplacementChar {
						r += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default:
				s.bad = true
				return dst
			}
			r += 2
		case c < utf8.RuneSelf:
			// Copy the run of plain bytes.
			j := r + 1
			for j < len(b) && b[j] < utf8.RuneSelf && b[j] != '\\' {
				j++
			}
			dst = append(dst, b[r:j]...)
			r = j
		default:
			rr, n := utf8.DecodeRune(b[r:])
			if rr == utf8.RuneError && n == 1 {
				dst = utf8.AppendRune(dst, rr)
			} else {
				dst = append(dst, b[r:r+n]...)
			}
			r += n
		}
	}
	return dst
}

// getu4 decodes \uXXXX at the start of b, or returns -1.
func getu4(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// htmlSafe marks the ASCII bytes encoding/json writes in a string as they are.
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// appendString appends src encoded as encoding/json encodes a string (HTML
// escaping on).
func appendString(dst, src []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(src); {
		if c := src[i]; c < utf8.RuneSelf {
			if htmlSafe[c] {
				i++
				continue
			}
			dst = append(dst, src[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = append(dst, src[start:i]...)
			dst = append(dst, `\ufffd`...)
			start = i + n
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			start = i + n
		}
		i += n
	}
	dst = append(dst, src[start:]...)
	return append(dst, '"')
}
