package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// SetTopLevelString returns obj with its top-level key set to the JSON string value,
// splicing bytes so that everything else stays exactly as the user wrote it. The key is
// added at the front when absent. obj must be a JSON object.
func SetTopLevelString(obj []byte, key, value string) ([]byte, error) {
	start, end, err := topLevelValue(obj, key)
	if err != nil {
		return nil, err
	}
	quoted, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	if start < 0 {
		// Insert right after the opening brace.
		brace := bytes.IndexByte(obj, '{')
		var b bytes.Buffer
		b.Grow(len(obj) + len(key) + len(quoted) + 4)
		b.Write(obj[:brace+1])
		qk, _ := json.Marshal(key)
		b.Write(qk)
		b.WriteByte(':')
		b.Write(quoted)
		rest := bytes.TrimLeft(obj[brace+1:], " \t\r\n")
		if len(rest) > 0 && rest[0] != '}' {
			b.WriteByte(',')
		}
		b.Write(obj[brace+1:])
		return b.Bytes(), nil
	}
	out := make([]byte, 0, len(obj)-(end-start)+len(quoted))
	out = append(out, obj[:start]...)
	out = append(out, quoted...)
	out = append(out, obj[end:]...)
	return out, nil
}

// topLevelValue finds the byte range of key's value in the object obj; start is -1
// when the key is absent.
func topLevelValue(obj []byte, key string) (start, end int, err error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return 0, 0, fmt.Errorf("not a JSON object: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return 0, 0, errors.New("not a JSON object")
	}
	start = -1
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return 0, 0, err
		}
		k, _ := kt.(string)
		afterKey := int(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return 0, 0, err
		}
		if k == key {
			end = int(dec.InputOffset())
			// The value starts after the colon and any white space.
			i := afterKey
			for i < end && (obj[i] == ' ' || obj[i] == '\t' || obj[i] == '\r' || obj[i] == '\n' || obj[i] == ':') {
				i++
			}
			start = i
		}
	}
	return start, end, nil
}
