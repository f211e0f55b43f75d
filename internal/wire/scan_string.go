package wire

import (
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Compact appends one value to dst as encoding/json compacts a RawMessage it
// encodes: white space outside strings dropped; <, >, &, U+2028 and U+2029 in
// strings escaped.
func (s *Scanner) Compact(dst []byte) []byte {
	switch s.Peek() {
	case '"':
		return s.compactString(dst)
	case '{', '[':
	default:
		start := s.i
		s.Skip()
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

// compactString appends the string at i as Compact does.
func (s *Scanner) compactString(dst []byte) []byte {
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

// Unquote reads a string and appends its value to dst as encoding/json decodes it:
// escapes resolved, invalid UTF-8 and unpaired surrogates replaced by U+FFFD.
func (s *Scanner) Unquote(dst []byte) []byte {
	if s.Peek() != '"' {
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
