package upstream

import (
	"encoding/json"
	"errors"

	"github.com/clade-dev/clade/internal/wire"
)

// This file holds what the streaming path uses to splice objects without
// re-encoding them: an iterator over the members of one object (on wire.Scanner,
// the one JSON scanner of the module), returning each key and the raw bytes of its
// value. It checks structure only as far as it must to find the end of each value;
// the assembled message is validated as a whole at the end.

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

// objIter walks the members of one JSON object with wire.Scanner: for it.next()
// { it.key, it.val }. key is the member's name (unescaped), val its raw value;
// both alias the object unless the key had escapes. err is set when the object
// is malformed.
type objIter struct {
	s             wire.Scanner
	key, val      []byte
	err           error
	started, done bool
}

func newObjIter(obj []byte) objIter { return objIter{s: wire.NewScanner(obj)} }

func (it *objIter) fail() bool {
	it.err = errNotObject
	return false
}

func (it *objIter) next() bool {
	if it.err != nil || it.done {
		return false
	}
	s := &it.s
	if !it.started {
		it.started = true
		if !s.ObjectStart() {
			return it.fail()
		}
	}
	if !s.NextMember() {
		if s.Bad() {
			return it.fail()
		}
		it.done = true
		return false
	}
	it.key = s.PlainKey()
	if it.key == nil && !s.Bad() {
		it.key = s.Key(nil) // escapes, or bytes that are not UTF-8: decoded as encoding/json does
	}
	if s.Bad() {
		return it.fail()
	}
	it.val = s.Value()
	// A value ends at a ',' or the object's '}': anything else (the end of the
	// text, a stray byte) is not an object.
	if c := s.Peek(); len(it.val) == 0 || s.Bad() || c != ',' && c != '}' {
		return it.fail()
	}
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
