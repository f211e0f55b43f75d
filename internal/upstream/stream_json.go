package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
)

// This file holds the small JSON scanner the streaming path uses to splice objects
// without re-encoding them: it walks the members of one object and returns each key
// and the raw bytes of its value. It checks structure only as far as it must to find
// the end of each value; the assembled message is validated as a whole at the end.

var errNotObject = errors.New("not a JSON object")

// member is one member of a JSON object: its decoded key and raw value.
type member struct {
	key string
	val []byte
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// stringEnd returns the index just past the JSON string that starts at b[i] (a quote).
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// valueEnd returns the index just past the JSON value that starts at b[i].
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := stringEnd(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
		j++
	}
	return j, j > i
}

// objIter walks the members of one JSON object: for it.next() { it.key, it.val }.
// key is the member's name (unescaped), val its raw value; both alias the object
// unless the key had escapes. err is set when the object is malformed.
type objIter struct {
	b        []byte
	i        int
	key, val []byte
	err      error
	started  bool
}

func newObjIter(obj []byte) objIter { return objIter{b: obj} }

func (it *objIter) fail() bool {
	it.err = errNotObject
	return false
}

func (it *objIter) next() bool {
	if it.err != nil {
		return false
	}
	b := it.b
	i := it.i
	if !it.started {
		it.started = true
		i = skipSpace(b, 0)
		if i >= len(b) || b[i] != '{' {
			return it.fail()
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			it.i = len(b)
			return false
		}
	} else {
		if i >= len(b) {
			return false // ended
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return it.fail()
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			it.i = len(b)
			return false
		default:
			return it.fail()
		}
	}
	if i >= len(b) || b[i] != '"' {
		return it.fail()
	}
	end, ok := stringEnd(b, i)
	if !ok {
		return it.fail()
	}
	it.key = b[i+1 : end-1]
	if bytes.IndexByte(it.key, '\\') >= 0 {
		var k string
		if json.Unmarshal(b[i:end], &k) != nil {
			return it.fail()
		}
		it.key = []byte(k)
	}
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return it.fail()
	}
	i = skipSpace(b, i+1)
	vend, ok := valueEnd(b, i)
	if !ok {
		return it.fail()
	}
	it.val = b[i:vend]
	if vend >= len(b) {
		return it.fail() // no closing brace
	}
	it.i = vend
	return true
}

// members returns the members of the object obj, in order; the values alias obj.
func members(obj []byte) ([]member, error) {
	var ms []member
	it := newObjIter(obj)
	for it.next() {
		ms = append(ms, member{key: string(it.key), val: it.val})
	}
	return ms, it.err
}

// appendMembers appends ms to dst as a JSON object.
func appendMembers(dst []byte, ms []member) []byte {
	dst = append(dst, '{')
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendKey(dst, m.key)
		dst = append(dst, m.val...)
	}
	return append(dst, '}')
}

func appendKey(dst []byte, key string) []byte {
	if simpleKey(key) {
		dst = append(dst, '"')
		dst = append(dst, key...)
		return append(dst, '"', ':')
	}
	q, _ := json.Marshal(key)
	dst = append(dst, q...)
	return append(dst, ':')
}

// simpleKey reports whether key can be written between quotes as it is.
func simpleKey(key string) bool {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

// setMember replaces the value of key in ms, or appends the member when absent.
func setMember(ms []member, key string, val []byte) []member {
	for i := range ms {
		if ms[i].key == key {
			ms[i].val = val
			return ms
		}
	}
	return append(ms, member{key: key, val: val})
}

func getMember(ms []member, key string) ([]byte, bool) {
	for _, m := range ms {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// stringInner returns the bytes between the quotes of a raw JSON string, still
// escaped; ok is false when raw is not a string.
func stringInner(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	return raw[1 : len(raw)-1], true
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// streamParams returns params with "stream": true: inserted right after the opening
// brace when absent (the rest stays byte for byte), params itself when it already
// says true. Any other "stream" value is refused with ErrStreamParam.
func streamParams(params []byte) ([]byte, error) {
	var stream []byte
	found := false
	it := newObjIter(params)
	for it.next() {
		if string(it.key) == "stream" {
			stream, found = it.val, true
			break
		}
	}
	if it.err != nil {
		return nil, it.err
	}
	if found {
		if string(stream) == "true" {
			return params, nil
		}
		return nil, ErrStreamParam
	}
	brace := skipSpace(params, 0) + 1
	rest := skipSpace(params, brace)
	const field = `"stream":true`
	out := make([]byte, 0, len(params)+len(field)+1)
	out = append(out, params[:brace]...)
	out = append(out, field...)
	if params[rest] != '}' {
		out = append(out, ',')
	}
	return append(out, params[brace:]...), nil
}
