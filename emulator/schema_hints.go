package emulator

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Constraints in descriptions. Structured outputs accept fewer keywords than JSON
// Schema, so the TypeScript SDK (lib/transform-json-schema: zodOutputFormat,
// betaZodTool) and the Python SDK move the ones the API does not take
// (minimum, maximum, minLength, maxLength, maxItems, pattern, …) into the schema's
// description as a last paragraph `{minimum: 1, maximum: 10}` (each value JSON;
// LangChain JS's copy of that code moves `enum` there too), and
// validate the model's answer against the full schema afterwards; the AI SDK's
// Anthropic provider (sanitize-json-schema) does the same with a last line
// `minimum: 1; maximum: 10.` (names spaced out, strings unquoted). A model reads
// those and keeps to them; the generator does the same, so that the SDKs' own
// check passes.

// hintKeywords are the keywords a description hint may add: those the generator
// knows. A hint never replaces a keyword the schema states.
var hintKeywords = map[string]bool{
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true,
	"minLength": true, "maxLength": true, "pattern": true, "format": true,
	"minItems": true, "maxItems": true, "enum": true, "const": true,
}

// applyHints adds to every schema object in v the keywords its description's
// last paragraph hints at, in place.
func applyHints(v any, depth int) {
	if depth > schemaHardDepth {
		return
	}
	switch x := v.(type) {
	case map[string]any:
		if d, ok := x["description"].(string); ok {
			for k, val := range descriptionHints(d) {
				if _, set := x[k]; !set && hintKeywords[k] {
					x[k] = val
				}
			}
		}
		for k, sub := range x {
			if k != "enum" && k != "const" && k != "default" && k != "examples" {
				applyHints(sub, depth+1)
			}
		}
	case []any:
		for _, sub := range x {
			applyHints(sub, depth+1)
		}
	}
}

// descriptionHints parses a description's last paragraph when it is
// `{key: JSON, key: JSON, …}`, or its last line when it is `key name: value; …`
// with the AI SDK's names; anything else gives nil.
func descriptionHints(d string) map[string]any {
	if h := spacedHints(d); h != nil {
		return h
	}
	if i := strings.LastIndex(d, "\n\n"); i >= 0 {
		d = d[i+2:]
	}
	d = strings.TrimSpace(d)
	if len(d) < 2 || d[0] != '{' || d[len(d)-1] != '}' {
		return nil
	}
	rest := d[1 : len(d)-1]
	out := map[string]any{}
	for rest != "" {
		colon := strings.Index(rest, ": ")
		if colon <= 0 || strings.ContainsAny(rest[:colon], " ,{}\"") {
			return nil
		}
		key := rest[:colon]
		dec := json.NewDecoder(strings.NewReader(rest[colon+2:]))
		dec.UseNumber()
		var val any
		if err := dec.Decode(&val); err != nil {
			return nil
		}
		rest = strings.TrimLeft(rest[colon+2+int(dec.InputOffset()):], " ")
		out[key] = val
		if rest == "" {
			break
		}
		if !strings.HasPrefix(rest, ",") {
			return nil
		}
		rest = strings.TrimLeft(rest[1:], " ")
	}
	return out
}

// decodeHinted decodes a schema and applies its description hints.
func decodeHinted(raw []byte) (any, bool) {
	v, ok := decodeSchema(bytes.TrimSpace(raw))
	if ok {
		applyHints(v, 0)
	}
	return v, ok
}

// spacedNames are the AI SDK's names for the keywords it moves into descriptions,
// in its order ("min length" for minLength).
var spacedNames = []string{"minimum", "maximum", "exclusive minimum", "exclusive maximum", "multiple of",
	"min length", "max length", "pattern", "min items", "max items", "unique items", "min properties",
	"max properties", "not", "format"}

// spacedHints parses the AI SDK's last line `min length: 3; max length: 40.`:
// strings (pattern, format) are written unquoted, other values as JSON.
func spacedHints(d string) map[string]any {
	if i := strings.LastIndex(d, "\n"); i >= 0 {
		d = d[i+1:]
	}
	if !strings.HasSuffix(d, ".") {
		return nil
	}
	d = strings.TrimSuffix(d, ".")
	at := func(s string) (string, bool) { // the name s starts with, followed by ": "
		for _, n := range spacedNames {
			if strings.HasPrefix(s, n+": ") {
				return n, true
			}
		}
		return "", false
	}
	out := map[string]any{}
	for d != "" {
		name, ok := at(d)
		if !ok {
			return nil
		}
		d = d[len(name)+2:]
		end := len(d) // the value runs to the next "; name: "
		for i := strings.Index(d, "; "); i >= 0; {
			if _, ok := at(d[i+2:]); ok {
				end = i
				break
			}
			j := strings.Index(d[i+2:], "; ")
			if j < 0 {
				break
			}
			i += 2 + j
		}
		raw := d[:end]
		d = strings.TrimPrefix(d[end:], "; ")
		key := camelName(name)
		if key == "pattern" || key == "format" {
			out[key] = raw
			continue
		}
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil || dec.InputOffset() != int64(len(raw)) {
			return nil
		}
		out[key] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// camelName turns "min length" into "minLength".
func camelName(spaced string) string {
	parts := strings.Split(spaced, " ")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "")
}
