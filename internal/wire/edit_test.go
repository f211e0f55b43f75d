package wire

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestSetTopLevelString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"replace", `{"model":"haiku","max_tokens":5}`, `{"model":"claude-x","max_tokens":5}`},
		{"replace spaced", `{ "max_tokens" : 5 , "model" :  "haiku" }`, `{ "max_tokens" : 5 , "model" :  "claude-x" }`},
		{"nested model untouched", `{"metadata":{"model":"keep"},"model":"a"}`, `{"metadata":{"model":"keep"},"model":"claude-x"}`},
		{"absent", `{"max_tokens":5}`, `{"model":"claude-x","max_tokens":5}`},
		{"absent empty", `{}`, `{"model":"claude-x"}`},
		{"non-string value", `{"model":null}`, `{"model":"claude-x"}`},
	}
	for _, tt := range tests {
		got, err := SetTopLevelString([]byte(tt.in), "model", "claude-x")
		if err != nil {
			t.Errorf("%s: SetTopLevelString(%s) error %v", tt.name, tt.in, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s: SetTopLevelString(%s) = %s, want %s", tt.name, tt.in, got, tt.want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: result %s is not valid JSON", tt.name, got)
		}
	}
	if _, err := SetTopLevelString([]byte(`[1]`), "model", "x"); err == nil {
		t.Errorf("SetTopLevelString([1]) succeeded, want an error")
	}
}

func FuzzSetTopLevelString(f *testing.F) {
	f.Add([]byte(`{"model":"a","x":[1,{"model":2}]}`), "b")
	f.Add([]byte(`{}`), "")
	f.Fuzz(func(t *testing.T, obj []byte, v string) {
		out, err := SetTopLevelString(obj, "model", v)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Valid(obj) {
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("output %q of valid input %q is not an object: %v", out, obj, err)
			}
			var got string
			if err := json.Unmarshal(m["model"], &got); err != nil || (utf8.ValidString(v) && got != v) {
				t.Fatalf("model = %s, want %q", m["model"], v)
			}
		}
	})
}
