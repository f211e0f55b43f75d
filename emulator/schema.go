package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Schema-true values. A structured-output text (output_config.format of type
// json_schema) and every tool_use input are JSON values generated from their schema so
// that they validate against it. The generator walks the schema with the request's
// seeded random source, so the same seed and body give the same value. It supports the
// keywords docs/emulator.md lists; what it does not know it ignores, and a value it
// generated is checked by a validator of the same keywords and generated again (up to
// schemaAttempts times) when the check fails, as a oneOf whose value matches two
// branches would.

const (
	// schemaSoftDepth is the nesting depth past which optional properties and array
	// items beyond minItems are left out and branches without $ref are preferred, so
	// recursive schemas end.
	schemaSoftDepth = 4
	// schemaHardDepth is the nesting depth past which a value is null: a schema whose
	// recursion is required at every level has no finite value.
	schemaHardDepth = 24
	// schemaAttempts is how many values are generated for a schema until one passes
	// the check.
	schemaAttempts = 8
	// maxMinItems and maxMinLength bound what a schema's minItems and minLength can
	// make the generator build (a schema is untrusted input).
	maxMinItems  = 256
	maxMinLength = 1 << 16
	// schemaMaxSteps bounds the work of one schemaValue, counted in gen and valid
	// calls: past it, nothing is generated again after a failed check, and past four
	// times it every value is null and every check fails, so a schema no value fits
	// (a oneOf of equal branches, nested) or whose smallest value is huge costs bounded
	// time and memory.
	schemaMaxSteps = 20000
)

// Keys the generator adds to a resolved schema; a JSON Schema cannot contain them.
const (
	keyChoices = "\x00choices" // []choice: anyOf and oneOf lists still to pick from
	keyAllowed = "\x00allowed" // map[string]bool: the only property names allowed
)

type choice struct {
	one      bool // oneOf: the value must match exactly one branch
	branches []any
}

type schemaGen struct {
	root     any
	rng      *rand.Rand
	budget   int64            // filler words left for strings of free length
	maxWords int              // most filler words in one string
	steps    int              // gen and valid calls so far, bounded by schemaMaxSteps
	refs     map[uintptr]bool // hasRef's answers by schema map
}

// decodeSchema decodes a JSON schema with numbers kept exact.
func decodeSchema(raw []byte) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// schemaValue returns compact JSON that validates against schema, where feasible.
// want is the output model's drawn length in tokens: strings of free length share it,
// so a longer draw gives a longer value. An object is returned when object is set and
// the schema gives something else (a tool input is always an object).
func schemaValue(schema []byte, rng *rand.Rand, want int64, object bool) []byte {
	root, ok := decodeHinted(schema)
	if !ok {
		if object {
			return []byte("{}")
		}
		root = map[string]any{}
	}
	g := &schemaGen{root: root, rng: rng, budget: want, maxWords: int(max(1, min(want/4, 64)))}
	var v any
	for range schemaAttempts {
		v = g.gen(root, 0)
		if g.steps > schemaMaxSteps || g.valid(root, v, 0) {
			break
		}
	}
	if _, isObj := v.(map[string]any); object && !isObj {
		v = map[string]any{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte("null")
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// lookup resolves a local $ref: "#", "#/$defs/X", "#/definitions/X" or any JSON pointer
// into the root.
func (g *schemaGen) lookup(ref string) (any, bool) {
	if ref == "#" {
		return g.root, true
	}
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	cur := g.root
	for _, tok := range strings.Split(p, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			if cur, ok = c[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// resolve folds $ref and allOf into one schema map, with anyOf and oneOf moved to
// keyChoices. It reports false for a schema nothing validates (false).
func (g *schemaGen) resolve(s any, depth int) (map[string]any, bool) {
	m, ok := s.(map[string]any)
	if !ok {
		b, isBool := s.(bool)
		return map[string]any{}, !isBool || b
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch k {
		case "$ref", "allOf", "anyOf", "oneOf":
		default:
			out[k] = v
		}
	}
	if all, ok := m["anyOf"].([]any); ok && len(all) > 0 {
		out[keyChoices] = []choice{{branches: all}}
	}
	if all, ok := m["oneOf"].([]any); ok && len(all) > 0 {
		cs, _ := out[keyChoices].([]choice)
		out[keyChoices] = append(cs, choice{one: true, branches: all})
	}
	if props, ok := out["properties"].(map[string]any); ok && m["additionalProperties"] == false {
		allowed := make(map[string]bool, len(props))
		for k := range props {
			allowed[k] = true
		}
		out[keyAllowed] = allowed
	}
	if depth > schemaHardDepth {
		return out, true
	}
	if ref, ok := m["$ref"].(string); ok {
		if t, ok := g.lookup(ref); ok {
			r, ok := g.resolve(t, depth+1)
			if !ok {
				return nil, false
			}
			out = mergeSchema(r, out)
		}
	}
	if all, ok := m["allOf"].([]any); ok {
		for _, sub := range all {
			r, ok := g.resolve(sub, depth+1)
			if !ok {
				return nil, false
			}
			out = mergeSchema(out, r)
		}
	}
	return out, true
}

// mergeSchema returns a schema whose values validate against both a and b, for the
// keywords the generator knows: properties merge (a shared one must fit both), required
// and choices add up, type and enum intersect, bounds tighten. Other keywords: a's win.
func mergeSchema(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, bv := range b {
		av, ok := out[k]
		if !ok {
			out[k] = bv
			continue
		}
		switch k {
		case "properties":
			ap, _ := av.(map[string]any)
			bp, _ := bv.(map[string]any)
			mp := make(map[string]any, len(ap)+len(bp))
			for n, s := range ap {
				mp[n] = s
			}
			for n, s := range bp {
				if x, ok := mp[n]; ok {
					mp[n] = map[string]any{"allOf": []any{x, s}}
				} else {
					mp[n] = s
				}
			}
			out[k] = mp
		case "required":
			ar, _ := av.([]any)
			br, _ := bv.([]any)
			out[k] = append(slices.Clip(ar), br...)
		case keyChoices:
			out[k] = append(slices.Clip(av.([]choice)), bv.([]choice)...)
		case keyAllowed:
			am, bm := av.(map[string]bool), bv.(map[string]bool)
			both := map[string]bool{}
			for n := range am {
				if bm[n] {
					both[n] = true
				}
			}
			out[k] = both
		case "type":
			at, bt := typeList(av), typeList(bv)
			var both []any
			for _, t := range at {
				if slices.Contains(bt, t) || t == "number" && slices.Contains(bt, "integer") {
					if t == "number" && slices.Contains(bt, "integer") {
						t = "integer"
					}
					both = append(both, t)
				} else if t == "integer" && slices.Contains(bt, "number") {
					both = append(both, t)
				}
			}
			out[k] = both
		case "enum":
			ae, _ := av.([]any)
			be, _ := bv.([]any)
			var both []any
			for _, x := range ae {
				if slices.ContainsFunc(be, func(y any) bool { return jsonEqual(x, y) }) {
					both = append(both, x)
				}
			}
			out[k] = both
		case "minimum", "exclusiveMinimum", "minItems", "minLength":
			if num(bv) > num(av) {
				out[k] = bv
			}
		case "maximum", "exclusiveMaximum", "maxItems", "maxLength":
			if num(bv) < num(av) {
				out[k] = bv
			}
		case "items", "additionalProperties":
			if av != true {
				out[k] = map[string]any{"allOf": []any{av, bv}}
			} else {
				out[k] = bv
			}
		}
	}
	return out
}

func typeList(t any) []string {
	switch t := t.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// num reads a schema number; NaN when v is not one.
func num(v any) float64 {
	if n, ok := v.(json.Number); ok {
		if f, err := n.Float64(); err == nil {
			return f
		}
	}
	return math.NaN()
}

func hasNum(m map[string]any, k string) bool { return !math.IsNaN(num(m[k])) }

func intKw(m map[string]any, k string, def int) int {
	if f := num(m[k]); !math.IsNaN(f) {
		return int(math.Max(0, math.Min(f, 1<<20)))
	}
	return def
}

// gen generates a value for schema s at nesting depth.
func (g *schemaGen) gen(s any, depth int) any {
	g.steps++
	if depth > schemaHardDepth || g.steps > 4*schemaMaxSteps {
		return nil
	}
	m, ok := g.resolve(s, depth)
	if !ok {
		return nil
	}
	cs, _ := m[keyChoices].([]choice)
	if len(cs) == 0 {
		return g.genResolved(m, depth)
	}
	// Pick a branch of each choice and generate for the merge; try again when the
	// value does not pass (a oneOf value that matches two branches).
	var v any
	for range schemaAttempts {
		mm := m
		for len(cs) > 0 {
			c := cs[0]
			cs = cs[1:]
			rest := make(map[string]any, len(mm))
			for k, x := range mm {
				if k != keyChoices {
					rest[k] = x
				}
			}
			b, ok := g.resolve(g.pickBranch(c.branches, depth), depth+1)
			if !ok {
				continue
			}
			mm = mergeSchema(rest, b)
			more, _ := mm[keyChoices].([]choice)
			delete(mm, keyChoices)
			cs = append(cs, more...)
		}
		v = g.genResolved(mm, depth)
		if g.steps > schemaMaxSteps || g.valid(s, v, depth) {
			return v
		}
		cs, _ = m[keyChoices].([]choice)
	}
	return v
}

// pickBranch picks one branch at random; past schemaSoftDepth, one without $ref when
// there is one, so recursion ends.
func (g *schemaGen) pickBranch(bs []any, depth int) any {
	if depth >= schemaSoftDepth {
		var flat []any
		for _, b := range bs {
			if !g.hasRef(b) {
				flat = append(flat, b)
			}
		}
		if len(flat) > 0 {
			bs = flat
		}
	}
	return bs[g.rng.IntN(len(bs))]
}

// hasRef reports whether schema s holds a $ref anywhere, remembered per schema map.
func (g *schemaGen) hasRef(s any) bool {
	m, ok := s.(map[string]any)
	if !ok {
		if l, ok := s.([]any); ok {
			return slices.ContainsFunc(l, g.hasRef)
		}
		return false
	}
	key := reflect.ValueOf(m).Pointer()
	if r, ok := g.refs[key]; ok {
		return r
	}
	r := false
	for k, v := range m {
		if k == "$ref" || g.hasRef(v) {
			r = true
			break
		}
	}
	if g.refs == nil {
		g.refs = map[uintptr]bool{}
	}
	g.refs[key] = r
	return r
}

// genResolved generates a value for a resolved schema without choices.
func (g *schemaGen) genResolved(m map[string]any, depth int) any {
	if c, ok := m["const"]; ok {
		return c
	}
	if e, ok := m["enum"].([]any); ok {
		rest := make(map[string]any, len(m))
		for k, x := range m {
			if k != "enum" && k != keyChoices && k != keyAllowed {
				rest[k] = x
			}
		}
		var fit []any
		for _, x := range e {
			if g.valid(rest, x, depth) {
				fit = append(fit, x)
			}
		}
		if len(fit) == 0 {
			fit = e
		}
		if len(fit) > 0 {
			return fit[g.rng.IntN(len(fit))]
		}
	}
	types := typeList(m["type"])
	if _, ok := m["type"]; !ok {
		types = []string{inferType(m)}
	}
	if len(types) == 0 {
		return nil
	}
	t := types[g.rng.IntN(len(types))]
	if t == "null" && len(types) > 1 && g.rng.IntN(4) != 0 {
		t = types[g.rng.IntN(len(types))] // null less often when there is another type
	}
	switch t {
	case "object":
		return g.genObject(m, depth)
	case "array":
		return g.genArray(m, depth)
	case "integer":
		return g.genInteger(m)
	case "number":
		return g.genNumber(m)
	case "boolean":
		return g.rng.IntN(2) == 0
	case "null":
		return nil
	default:
		return g.genString(m)
	}
}

// inferType is the type of a schema without "type", from its keywords.
func inferType(m map[string]any) string {
	switch {
	case m["properties"] != nil || m["required"] != nil || m["additionalProperties"] != nil:
		return "object"
	case m["items"] != nil || m["prefixItems"] != nil || m["minItems"] != nil || m["maxItems"] != nil:
		return "array"
	case hasNum(m, "minimum") || hasNum(m, "maximum") || hasNum(m, "exclusiveMinimum") ||
		hasNum(m, "exclusiveMaximum") || hasNum(m, "multipleOf"):
		return "number"
	}
	return "string"
}

func (g *schemaGen) genObject(m map[string]any, depth int) any {
	props, _ := m["properties"].(map[string]any)
	allowed, _ := m[keyAllowed].(map[string]bool)
	req := map[string]bool{}
	if r, ok := m["required"].([]any); ok {
		for _, x := range r {
			if s, ok := x.(string); ok {
				req[s] = true
			}
		}
	}
	names := make([]string, 0, len(props)+len(req))
	for k := range props {
		names = append(names, k)
	}
	for k := range req {
		if _, ok := props[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	out := make(map[string]any, len(names))
	for _, k := range names {
		if !req[k] {
			if allowed != nil && !allowed[k] || depth >= schemaSoftDepth || g.rng.IntN(2) == 0 {
				continue
			}
		}
		ps, ok := props[k]
		if !ok {
			ps = m["additionalProperties"]
			if ps == nil || ps == false {
				ps = true
			}
		}
		out[k] = g.gen(ps, depth+1)
	}
	return out
}

func (g *schemaGen) genArray(m map[string]any, depth int) any {
	lo, hi := min(intKw(m, "minItems", 0), maxMinItems), intKw(m, "maxItems", -1)
	prefix, _ := m["prefixItems"].([]any)
	items := m["items"]
	if tuple, ok := items.([]any); ok { // draft-04 to 2019-09 tuple form
		prefix, items = tuple, m["additionalItems"]
	}
	n := lo
	if depth < schemaSoftDepth {
		n = lo + g.rng.IntN(3)
	}
	if len(prefix) > 0 && depth < schemaSoftDepth {
		n = max(n, len(prefix))
	}
	if items == false {
		n = min(n, len(prefix))
	}
	if hi >= 0 {
		n = min(n, hi)
	}
	out := make([]any, n)
	for i := range out {
		var s any = items
		if i < len(prefix) {
			s = prefix[i]
		}
		if s == nil {
			s = true
		}
		out[i] = g.gen(s, depth+1)
	}
	return out
}

// genInteger draws an integer in the schema's bounds, a multiple of multipleOf.
func (g *schemaGen) genInteger(m map[string]any) any {
	lo, hi, exLo, exHi := bounds(m)
	if exLo {
		lo = math.Floor(lo) + 1
	}
	if exHi {
		hi = math.Ceil(hi) - 1
	}
	if mult, ok := m["multipleOf"].(json.Number); ok && num(mult) > 0 {
		return g.multiple(mult, lo, hi, false, false)
	}
	lo, hi = math.Ceil(lo), math.Floor(hi)
	if hi < lo {
		return json.Number(strconv.FormatFloat(lo, 'f', 0, 64))
	}
	span := math.Min(hi-lo, 1<<53)
	return json.Number(strconv.FormatFloat(lo+float64(g.rng.Int64N(int64(span)+1)), 'f', 0, 64))
}

// genNumber draws a number in the schema's bounds, a multiple of multipleOf.
func (g *schemaGen) genNumber(m map[string]any) any {
	lo, hi, exLo, exHi := bounds(m)
	if mult, ok := m["multipleOf"].(json.Number); ok && num(mult) > 0 {
		return g.multiple(mult, lo, hi, exLo, exHi)
	}
	x := lo + (hi-lo)*(0.05+0.9*g.rng.Float64())
	if r := math.Round(x*10) / 10; r >= lo && r <= hi {
		x = r
	}
	if (exLo && x <= lo) || (exHi && x >= hi) || x < lo || x > hi {
		x = lo + (hi-lo)/2
	}
	return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
}

// bounds returns a number schema's range and whether each end is exclusive (draft
// 2020-12 numbers or draft-04 booleans). Without a bound the range is 0..100, or 100
// wide from the one bound given.
func bounds(m map[string]any) (lo, hi float64, exLo, exHi bool) {
	lo, hi = math.Inf(-1), math.Inf(1)
	if f := num(m["minimum"]); !math.IsNaN(f) {
		lo, exLo = f, m["exclusiveMinimum"] == true
	}
	if f := num(m["exclusiveMinimum"]); !math.IsNaN(f) && f >= lo {
		lo, exLo = f, true
	}
	if f := num(m["maximum"]); !math.IsNaN(f) {
		hi, exHi = f, m["exclusiveMaximum"] == true
	}
	if f := num(m["exclusiveMaximum"]); !math.IsNaN(f) && f <= hi {
		hi, exHi = f, true
	}
	switch {
	case math.IsInf(lo, -1) && math.IsInf(hi, 1):
		lo, hi = 0, 100
	case math.IsInf(lo, -1):
		lo = hi - 100
	case math.IsInf(hi, 1):
		hi = lo + 100
	}
	return lo, hi, exLo, exHi
}

// multiple returns k·mult in [lo, hi] (an exclusive end excluded), in exact decimal.
func (g *schemaGen) multiple(mult json.Number, lo, hi float64, exLo, exHi bool) any {
	r, ok := ratOf(mult)
	if !ok || r.Sign() <= 0 {
		return json.Number("0")
	}
	mf, _ := r.Float64()
	in := func(k float64) bool {
		v, _ := new(big.Rat).Mul(r, new(big.Rat).SetFloat64(k)).Float64()
		return (v > lo || !exLo && v == lo) && (v < hi || !exHi && v == hi)
	}
	kLo, kHi := math.Ceil(lo/mf), math.Floor(hi/mf)
	if !in(kLo) {
		kLo++
	}
	if !in(kHi) {
		kHi--
	}
	k := kLo
	if kHi > kLo {
		k = kLo + float64(g.rng.Int64N(int64(math.Min(kHi-kLo, 1<<40))+1))
	}
	if math.Abs(k) > 1<<62 {
		k = 0
	}
	v := new(big.Rat).Mul(r, new(big.Rat).SetInt64(int64(k)))
	prec, _ := r.FloatPrec()
	return json.Number(v.FloatString(prec))
}

var formatBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// genString generates a string for format, pattern and length; a pattern the regexp
// package cannot parse (lookaround, backreferences) is ignored.
func (g *schemaGen) genString(m map[string]any) any {
	lo, hi := min(intKw(m, "minLength", 0), maxMinLength), intKw(m, "maxLength", -1)
	if f, ok := m["format"].(string); ok {
		if s, ok := g.formatValue(f); ok {
			return s
		}
	}
	if p, ok := m["pattern"].(string); ok {
		re, err := syntax.Parse(p, syntax.Perl)
		match, err2 := regexp.Compile(p)
		if err == nil && err2 == nil {
			for range schemaAttempts {
				var b strings.Builder
				if g.fromRegexp(re, &b, 0) {
					s := b.String()
					n := utf8.RuneCountInString(s)
					if match.MatchString(s) && n >= lo && (hi < 0 || n <= hi) {
						return s
					}
				}
			}
		}
	}
	n := g.rng.IntN(g.maxWords) + 1
	if int64(n) > g.budget {
		n = int(max(1, g.budget))
	}
	g.budget -= int64(n)
	s := strings.TrimSpace(makeText(g.rng, int64(n)))
	for utf8.RuneCountInString(s) < lo {
		s += " " + strings.TrimSpace(makeText(g.rng, int64(max(1, (lo-len(s))/4+1))))
	}
	if hi >= 0 && len(s) > hi {
		s = strings.TrimRight(s[:hi], " ")
		for len(s) < lo {
			s += "x"
		}
	}
	return s
}

func (g *schemaGen) formatValue(f string) (string, bool) {
	r := g.rng
	t := formatBase.Add(time.Duration(r.Int64N(365*24*3600)) * time.Second)
	switch f {
	case "date-time":
		return t.Format(time.RFC3339), true
	case "date":
		return t.Format(time.DateOnly), true
	case "time":
		return t.Format("15:04:05Z"), true
	case "email":
		return fmt.Sprintf("%s%d@example.com", strings.TrimSpace(pieces[r.IntN(len(pieces))]), r.IntN(1000)), true
	case "uri":
		return fmt.Sprintf("https://example.com/%s/%d", strings.TrimSpace(pieces[r.IntN(len(pieces))]), r.IntN(1000)), true
	case "uuid":
		var b [16]byte
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), true
	case "ipv4":
		return fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), 1+r.IntN(254)), true
	case "ipv6":
		return fmt.Sprintf("2001:db8::%x", 1+r.IntN(0xfffe)), true
	case "hostname":
		return fmt.Sprintf("host%d.example.com", r.IntN(1000)), true
	}
	return "", false
}

// fromRegexp writes a string that re matches; false for a pattern that matches
// nothing. Repetitions are drawn small (at most 3 beyond their minimum).
func (g *schemaGen) fromRegexp(re *syntax.Regexp, b *strings.Builder, depth int) bool {
	if depth > 64 || b.Len() > 4096 {
		return false
	}
	r := g.rng
	switch re.Op {
	case syntax.OpNoMatch:
		return false
	case syntax.OpLiteral:
		b.WriteString(string(re.Rune))
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return false
		}
		// Prefer printable ASCII in the class.
		var ascii []rune
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for c := max(re.Rune[i], 0x21); c <= min(re.Rune[i+1], 0x7e); c++ {
				ascii = append(ascii, c)
			}
		}
		if len(ascii) > 0 {
			b.WriteRune(ascii[r.IntN(len(ascii))])
			return true
		}
		i := 2 * r.IntN(len(re.Rune)/2)
		b.WriteRune(re.Rune[i] + rune(r.IntN(int(re.Rune[i+1]-re.Rune[i])+1)))
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteByte(byte('a' + r.IntN(26)))
	case syntax.OpCapture:
		return g.fromRegexp(re.Sub[0], b, depth+1)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, 3
		switch re.Op {
		case syntax.OpPlus:
			lo, hi = 1, 4
		case syntax.OpQuest:
			hi = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
			if hi < 0 {
				hi = lo + 3
			}
		}
		n := lo + r.IntN(min(hi, lo+3)-lo+1)
		for range n {
			if !g.fromRegexp(re.Sub[0], b, depth+1) {
				return false
			}
		}
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if !g.fromRegexp(sub, b, depth+1) {
				return false
			}
		}
	case syntax.OpAlternate:
		return g.fromRegexp(re.Sub[r.IntN(len(re.Sub))], b, depth+1)
	}
	return true // anchors, word boundaries, empty match: nothing to write
}
