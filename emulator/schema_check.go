package emulator

import (
	"encoding/json"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// valid reports whether v validates against schema s for the keywords the generator
// knows (formats are trusted: the generator writes them). It is the generator's own
// check, not a general validator: tests validate with a maintained one.
func (g *schemaGen) valid(s any, v any, depth int) bool {
	g.steps++
	if g.steps > 4*schemaMaxSteps {
		return false
	}
	if depth > schemaHardDepth {
		return true
	}
	m, ok := s.(map[string]any)
	if !ok {
		b, isBool := s.(bool)
		return !isBool || b
	}
	if ref, ok := m["$ref"].(string); ok {
		if t, ok := g.lookup(ref); ok && !g.valid(t, v, depth+1) {
			return false
		}
	}
	if all, ok := m["allOf"].([]any); ok {
		for _, sub := range all {
			if !g.valid(sub, v, depth+1) {
				return false
			}
		}
	}
	if alts, ok := m["anyOf"].([]any); ok && len(alts) > 0 {
		found := false
		for _, sub := range alts {
			if g.valid(sub, v, depth+1) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if one, ok := m["oneOf"].([]any); ok && len(one) > 0 {
		n := 0
		for _, sub := range one {
			if g.valid(sub, v, depth+1) {
				n++
			}
		}
		if n != 1 {
			return false
		}
	}
	if c, ok := m["const"]; ok && !jsonEqual(c, v) {
		return false
	}
	if e, ok := m["enum"].([]any); ok {
		found := false
		for _, x := range e {
			if jsonEqual(x, v) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if t, ok := m["type"]; ok {
		found := false
		for _, tt := range typeList(t) {
			if isType(tt, v) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	switch v := v.(type) {
	case map[string]any:
		return g.validObject(m, v, depth)
	case []any:
		return g.validArray(m, v, depth)
	case string:
		n := utf8.RuneCountInString(v)
		if lo := intKw(m, "minLength", 0); n < lo {
			return false
		}
		if hi := intKw(m, "maxLength", -1); hi >= 0 && n > hi {
			return false
		}
		if p, ok := m["pattern"].(string); ok {
			if re, err := regexp.Compile(p); err == nil && !re.MatchString(v) {
				return false
			}
		}
	case json.Number:
		return validNumber(m, v)
	}
	return true
}

func (g *schemaGen) validObject(m map[string]any, v map[string]any, depth int) bool {
	props, _ := m["properties"].(map[string]any)
	if r, ok := m["required"].([]any); ok {
		for _, x := range r {
			if k, ok := x.(string); ok {
				if _, ok := v[k]; !ok {
					return false
				}
			}
		}
	}
	_, patterned := m["patternProperties"]
	for k, x := range v {
		if ps, ok := props[k]; ok {
			if !g.valid(ps, x, depth+1) {
				return false
			}
			continue
		}
		if ap, ok := m["additionalProperties"]; ok && !patterned && !g.valid(ap, x, depth+1) {
			return false
		}
	}
	return true
}

func (g *schemaGen) validArray(m map[string]any, v []any, depth int) bool {
	if lo := intKw(m, "minItems", 0); len(v) < lo {
		return false
	}
	if hi := intKw(m, "maxItems", -1); hi >= 0 && len(v) > hi {
		return false
	}
	prefix, _ := m["prefixItems"].([]any)
	items, hasItems := m["items"]
	if tuple, ok := items.([]any); ok {
		prefix = tuple
		items, hasItems = m["additionalItems"]
	}
	for i, x := range v {
		switch {
		case i < len(prefix):
			if !g.valid(prefix[i], x, depth+1) {
				return false
			}
		case hasItems:
			if !g.valid(items, x, depth+1) {
				return false
			}
		}
	}
	return true
}

func validNumber(m map[string]any, v json.Number) bool {
	x, ok := ratOf(v)
	if !ok {
		return false
	}
	cmp := func(k string) (int, bool) {
		n, ok := m[k].(json.Number)
		if !ok {
			return 0, false
		}
		b, ok := ratOf(n)
		if !ok {
			return 0, false
		}
		return x.Cmp(b), true
	}
	if c, ok := cmp("minimum"); ok && (c < 0 || c == 0 && m["exclusiveMinimum"] == true) {
		return false
	}
	if c, ok := cmp("maximum"); ok && (c > 0 || c == 0 && m["exclusiveMaximum"] == true) {
		return false
	}
	if c, ok := cmp("exclusiveMinimum"); ok && c <= 0 {
		return false
	}
	if c, ok := cmp("exclusiveMaximum"); ok && c >= 0 {
		return false
	}
	if n, ok := m["multipleOf"].(json.Number); ok {
		d, ok := ratOf(n)
		if ok && d.Sign() > 0 && !new(big.Rat).Quo(x, d).IsInt() {
			return false
		}
	}
	return true
}

func isType(t string, v any) bool {
	switch v := v.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case []any:
		return t == "array"
	case map[string]any:
		return t == "object"
	case json.Number:
		if t == "number" {
			return true
		}
		r, ok := ratOf(v)
		return t == "integer" && ok && r.IsInt()
	}
	return false
}

// jsonEqual compares two decoded JSON values, numbers by value.
func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		bn, ok := b.(json.Number)
		if !ok {
			return false
		}
		x, ok1 := ratOf(a)
		y, ok2 := ratOf(bn)
		return ok1 && ok2 && x.Cmp(y) == 0
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, x := range a {
			y, ok := bm[k]
			if !ok || !jsonEqual(x, y) {
				return false
			}
		}
		return true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !jsonEqual(a[i], bs[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// ratOf parses a JSON number exactly; false for one whose exponent is too large to
// hold (a schema is untrusted input).
func ratOf(n json.Number) (*big.Rat, bool) {
	s := string(n)
	if len(s) > 400 {
		return nil, false
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil || e > 400 || e < -400 {
			return nil, false
		}
	}
	return new(big.Rat).SetString(s)
}
