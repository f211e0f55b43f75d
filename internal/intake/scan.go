package intake

import (
	"bytes"
	"encoding/json"
)

// A minimal walker over JSON text that json.Valid has accepted. It finds an
// object's members and an array's elements as sub-slices of the input, without
// decoding or allocating, so validating a line reads it about twice (json.Valid,
// then this walk) instead of building maps of copies. Callers must only pass
// valid JSON: on anything else the results are unspecified (but it never reads
// out of bounds).

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index after the string whose opening quote is at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the value that starts at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
			i++
		}
		return i
	}
}

// members calls fn with each key (raw, quotes included) and value of the object
// b, in order; b is the object's text (trimmed).
func members(b []byte, fn func(key, val []byte)) {
	if len(b) == 0 || b[0] != '{' {
		return
	}
	i := skipSpace(b, 1)
	for i < len(b) && b[i] == '"' {
		k := skipString(b, i)
		key := b[i:k]
		i = skipSpace(b, k)
		if i >= len(b) || b[i] != ':' {
			return
		}
		v := skipSpace(b, i+1)
		end := skipValue(b, v)
		fn(key, b[v:end])
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ',' {
			return
		}
		i = skipSpace(b, i+1)
	}
}

// elements calls fn with each element of the array b (trimmed).
func elements(b []byte, fn func(val []byte)) {
	if len(b) == 0 || b[0] != '[' {
		return
	}
	i := skipSpace(b, 1)
	for i < len(b) && b[i] != ']' {
		end := skipValue(b, i)
		fn(b[i:end])
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ',' {
			return
		}
		i = skipSpace(b, i+1)
	}
}

// unquote returns the string a JSON string literal holds; ok is false when raw is
// not a string.
func unquote(raw []byte) (s string, ok bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// keyIs reports whether the raw key names name.
func keyIs(key []byte, name string) bool {
	if len(key) == len(name)+2 && string(key[1:len(key)-1]) == name {
		return true
	}
	if bytes.IndexByte(key, '\\') < 0 {
		return false
	}
	s, _ := unquote(key)
	return s == name
}

// stringIs reports whether raw is the JSON string s.
func stringIs(raw []byte, s string) bool { return keyIs(raw, s) }
