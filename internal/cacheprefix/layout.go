package cacheprefix

import (
	"bytes"
	"hash"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/clade-dev/clade/internal/wire"
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
	s := wire.NewScanner(body)
	if !s.ObjectStart() {
		return false
	}
	var key []byte
	for s.NextMember() {
		key = s.Key(key[:0])
		switch {
		case bytes.EqualFold(key, []byte("tools")):
			switch s.Peek() {
			case 'n':
				s.Skip()
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
			s.Skip()
		}
		if s.Bad() {
			return false
		}
	}
	return !s.Bad()
}

// messages reads the messages value.
func (l *layout) messages(s *wire.Scanner) bool {
	l.msgs = l.msgs[:0]
	switch s.Peek() {
	case 'n':
		s.Skip()
		return true
	case '[':
	default:
		return false
	}
	s.ArrayStart()
	var key []byte
	for s.NextElem() {
		var content section
		switch s.Peek() {
		case 'n':
			s.Skip()
		case '{':
			s.ObjectStart()
			for s.NextMember() {
				key = s.Key(key[:0])
				if bytes.EqualFold(key, []byte("content")) {
					content = l.content(s)
				} else {
					s.Skip()
				}
			}
		default:
			return false
		}
		l.msgs = append(l.msgs, content)
	}
	return !s.Bad()
}

// content reads a content value: a list of blocks, a string (one text block), or
// anything else (no blocks).
func (l *layout) content(s *wire.Scanner) section {
	switch s.Peek() {
	case '[':
		return l.array(s)
	case '"':
		lo := len(l.buf)
		l.str = s.Unquote(l.str[:0])
		l.buf = append(l.buf, `{"text":`...)
		l.buf = appendString(l.buf, l.str)
		l.buf = append(l.buf, `,"type":"text"}`...)
		l.blocks = append(l.blocks, span{lo, len(l.buf)})
		return section{len(l.blocks) - 1, len(l.blocks)}
	}
	s.Skip()
	return section{}
}

// array reads an array of blocks.
func (l *layout) array(s *wire.Scanner) section {
	s.ArrayStart()
	lo := len(l.blocks)
	for s.NextElem() {
		start := len(l.buf)
		l.canonical(s)
		l.blocks = append(l.blocks, span{start, len(l.buf)})
	}
	return section{lo, len(l.blocks)}
}

// canonical appends the canonical bytes of the block at s to buf.
func (l *layout) canonical(s *wire.Scanner) {
	switch s.Peek() {
	case '{':
	case 'n':
		s.Skip()
		l.buf = append(l.buf, "null"...)
		return
	default:
		l.buf = append(l.buf, s.Value()...)
		return
	}
	s.ObjectStart()
	l.vals, l.mems = l.vals[:0], l.mems[:0]
	var keys []byte // decoded keys that are not slices of the body
	for s.NextMember() {
		key := s.PlainKey()
		if key == nil { // escaped or not UTF-8: decode it
			lo := len(keys)
			keys = s.Key(keys)
			key = keys[lo:len(keys):len(keys)]
		}
		if string(key) == "cache_control" {
			s.Skip()
			continue
		}
		lo := len(l.vals)
		l.vals = s.Compact(l.vals)
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

const hexDigits = "0123456789abcdef"

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
