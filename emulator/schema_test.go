package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchema compiles a schema with the maintained validator, formats asserted.
// Draft 2020-12 unless the schema names another in $schema.
func compileSchema(t testing.TB, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatalf("schema %s: %v", schema, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("mem://schema.json", doc); err != nil {
		t.Fatalf("AddResource(%s): %v", schema, err)
	}
	sch, err := c.Compile("mem://schema.json")
	if err != nil {
		t.Fatalf("Compile(%s): %v", schema, err)
	}
	return sch
}

// validateJSON validates JSON text against a compiled schema.
func validateJSON(sch *jsonschema.Schema, text []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(v)
}

// schemaCases cover every keyword the generator supports. bad is a value the validator
// must reject, so each case shows its keyword is in force; seen, when set, names what
// a value exercises, and every name in want must be seen over the seeds.
var schemaCases = []struct {
	name   string
	schema string
	bad    string
	seen   func(v any) string
	want   []string
}{
	{name: "string", schema: `{"type":"string"}`, bad: `1`},
	{name: "number", schema: `{"type":"number"}`, bad: `"x"`},
	{name: "integer", schema: `{"type":"integer"}`, bad: `1.5`},
	{name: "boolean", schema: `{"type":"boolean"}`, bad: `0`},
	{name: "null", schema: `{"type":"null"}`, bad: `0`},
	{name: "type array", schema: `{"type":["string","integer","null"]}`, bad: `true`,
		seen: kindOf, want: []string{"string", "number", "null"}},
	{name: "object required and optional", schema: `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"},"c":{"type":"boolean"}},"required":["a"]}`,
		bad: `{"b":1}`, seen: func(v any) string { _, ok := v.(map[string]any)["b"]; return fmt.Sprint("b:", ok) }, want: []string{"b:true", "b:false"}},
	{name: "additionalProperties false", schema: `{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}`, bad: `{"a":"x","z":1}`},
	{name: "additionalProperties schema", schema: `{"type":"object","required":["k"],"additionalProperties":{"type":"integer"}}`, bad: `{"k":"x"}`},
	{name: "nested object", schema: `{"type":"object","properties":{"o":{"type":"object","properties":{"x":{"type":"number","minimum":5}},"required":["x"],"additionalProperties":false}},"required":["o"]}`, bad: `{"o":{"x":1}}`},
	{name: "items", schema: `{"type":"array","items":{"type":"string","minLength":2}}`, bad: `["a"]`},
	{name: "minItems maxItems", schema: `{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}`, bad: `[1]`,
		seen: func(v any) string { return fmt.Sprint(len(v.([]any))) }, want: []string{"2", "3"}},
	{name: "prefixItems", schema: `{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}`, bad: `["a",1,2]`},
	{name: "draft-04 tuple items", schema: `{"$schema":"http://json-schema.org/draft-04/schema#","type":"array","items":[{"type":"boolean"}],"additionalItems":false,"minItems":1}`, bad: `[true,1]`},
	{name: "enum", schema: `{"enum":["red","green",3,null]}`, bad: `"blue"`,
		seen: kindOf, want: []string{"string", "number", "null"}},
	{name: "enum with type", schema: `{"type":"string","enum":["a",1]}`, bad: `1`},
	{name: "const", schema: `{"const":{"k":[1,"two"]}}`, bad: `{"k":[1]}`},
	{name: "$defs ref", schema: `{"$defs":{"p":{"type":"object","properties":{"id":{"type":"string","format":"uuid"}},"required":["id"],"additionalProperties":false}},"type":"object","properties":{"p":{"$ref":"#/$defs/p"}},"required":["p"]}`, bad: `{"p":{"id":"nope"}}`},
	{name: "definitions ref", schema: `{"definitions":{"n":{"type":"integer","minimum":10,"maximum":12}},"$ref":"#/definitions/n"}`, bad: `13`},
	{name: "recursive ref", schema: `{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v","kids"],"additionalProperties":false}},"$ref":"#/$defs/node"}`,
		bad: `{"v":1,"kids":[{"v":2}]}`, seen: func(v any) string { return fmt.Sprint("deep:", depthOf(v) > 2) }, want: []string{"deep:true"}},
	{name: "recursive anyOf", schema: `{"$defs":{"e":{"anyOf":[{"type":"integer"},{"type":"array","items":{"$ref":"#/$defs/e"},"minItems":1}]}},"$ref":"#/$defs/e"}`, bad: `[[]]`,
		seen: kindOf, want: []string{"number", "array"}},
	{name: "anyOf", schema: `{"anyOf":[{"type":"string","maxLength":3},{"type":"integer","minimum":0}]}`, bad: `-1`,
		seen: kindOf, want: []string{"string", "number"}},
	{name: "oneOf exactly one", schema: `{"oneOf":[{"type":"number"},{"type":"integer"}]}`, bad: `1`,
		seen: kindOf, want: []string{"number"}},
	{name: "oneOf objects", schema: `{"type":"object","oneOf":[{"properties":{"kind":{"const":"a"}},"required":["kind"]},{"properties":{"kind":{"const":"b"},"n":{"type":"integer"}},"required":["kind","n"]}]}`, bad: `{}`,
		seen: func(v any) string { return fmt.Sprint(v.(map[string]any)["kind"]) }, want: []string{"a", "b"}},
	{name: "allOf merge", schema: `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]},{"properties":{"b":{"type":"integer","maximum":3}},"required":["b"]},{"properties":{"b":{"minimum":2}}}]}`, bad: `{"a":"x","b":1}`},
	{name: "allOf with additionalProperties false", schema: `{"allOf":[{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"additionalProperties":false},{"properties":{"a":{"minLength":1}},"required":["a"]}]}`, bad: `{"a":"x","c":1}`},
	{name: "minLength maxLength", schema: `{"type":"string","minLength":5,"maxLength":7}`, bad: `"abcd"`},
	{name: "long minLength", schema: `{"type":"string","minLength":90}`, bad: `"short"`},
	{name: "pattern", schema: `{"type":"string","pattern":"^[A-Z]{3}-[0-9]{2,4}$"}`, bad: `"AB-1"`},
	{name: "pattern alternation", schema: `{"type":"string","pattern":"^(cat|dog)s?\\.(png|jpe?g)$"}`, bad: `"cow.png"`},
	{name: "pattern with length", schema: `{"type":"string","pattern":"^[a-z]+$","minLength":2,"maxLength":4}`, bad: `"a"`},
	{name: "format date-time", schema: `{"type":"string","format":"date-time"}`, bad: `"2026-13-01T00:00:00Z"`},
	{name: "format date", schema: `{"type":"string","format":"date"}`, bad: `"2026-02-30"`},
	{name: "format time", schema: `{"type":"string","format":"time"}`, bad: `"25:00:00Z"`},
	{name: "format email", schema: `{"type":"string","format":"email"}`, bad: `"nobody"`},
	{name: "format uri", schema: `{"type":"string","format":"uri"}`, bad: `"not a uri"`},
	{name: "format uuid", schema: `{"type":"string","format":"uuid"}`, bad: `"1234"`},
	{name: "format ipv4", schema: `{"type":"string","format":"ipv4"}`, bad: `"300.1.1.1"`},
	{name: "number bounds", schema: `{"type":"number","minimum":-2.5,"maximum":-2.25}`, bad: `-2`},
	{name: "exclusive bounds", schema: `{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1}`, bad: `0`},
	{name: "integer exclusive bounds", schema: `{"type":"integer","exclusiveMinimum":4,"exclusiveMaximum":6}`, bad: `4`},
	{name: "draft-04 boolean exclusive", schema: `{"$schema":"http://json-schema.org/draft-04/schema#","type":"integer","minimum":1,"exclusiveMinimum":true,"maximum":3,"exclusiveMaximum":true}`, bad: `3`},
	{name: "integer multipleOf", schema: `{"type":"integer","multipleOf":7,"minimum":10,"maximum":40}`, bad: `15`},
	{name: "number multipleOf decimal", schema: `{"type":"number","multipleOf":0.1,"minimum":0.25,"maximum":0.75}`, bad: `0.25`},
	{name: "number multipleOf exclusive", schema: `{"type":"number","multipleOf":0.5,"exclusiveMinimum":1,"exclusiveMaximum":2}`, bad: `1`},
	{name: "unicode enum", schema: `{"type":"object","properties":{"w":{"enum":["café","日本語","🙂"]}},"required":["w"]}`, bad: `{"w":"cafe"}`},
	{name: "true schema", schema: `true`},
	{name: "empty schema", schema: `{}`},
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case bool:
		return "boolean"
	}
	return "?"
}

func depthOf(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			d = max(d, depthOf(x))
		}
		return d + 1
	case []any:
		for _, x := range v {
			d = max(d, depthOf(x))
		}
		return d + 1
	}
	return 0
}

func decodeValue(t testing.TB, text []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(text))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("value %s is not JSON: %v", text, err)
	}
	return v
}

func TestSchemaValueValidates(t *testing.T) {
	t.Parallel()
	for _, tc := range schemaCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sch := compileSchema(t, tc.schema)
			if tc.bad != "" && validateJSON(sch, []byte(tc.bad)) == nil {
				t.Fatalf("validator accepts bad value %s for %s: the case tests nothing", tc.bad, tc.schema)
			}
			seen := map[string]bool{}
			for seed := range uint64(200) {
				rng := rand.New(rand.NewPCG(seed, 1))
				text := schemaValue([]byte(tc.schema), rng, 30, false)
				if err := validateJSON(sch, text); err != nil {
					t.Fatalf("schemaValue(%s, seed %d) = %s, invalid: %v", tc.schema, seed, text, err)
				}
				if tc.seen != nil {
					seen[tc.seen(decodeValue(t, text))] = true
				}
			}
			for _, w := range tc.want {
				if !seen[w] {
					t.Errorf("schemaValue(%s) over 200 seeds saw %v, want %q among them", tc.schema, seen, w)
				}
			}
		})
	}
}

func TestSchemaValueToolInputIsObject(t *testing.T) {
	t.Parallel()
	for _, schema := range []string{``, `not json`, `{"type":"string"}`, `{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}`} {
		text := schemaValue([]byte(schema), rand.New(rand.NewPCG(1, 2)), 10, true)
		if _, ok := decodeValue(t, text).(map[string]any); !ok {
			t.Errorf("schemaValue(%q, object) = %s, want an object", schema, text)
		}
	}
}

func TestSchemaValueDeterministic(t *testing.T) {
	t.Parallel()
	schema := []byte(schemaCases[6].schema)
	seen := map[string]bool{}
	for seed := range uint64(20) {
		a := schemaValue(schema, rand.New(rand.NewPCG(seed, 9)), 40, false)
		b := schemaValue(schema, rand.New(rand.NewPCG(seed, 9)), 40, false)
		if !bytes.Equal(a, b) {
			t.Fatalf("schemaValue(seed %d) = %s then %s, want the same", seed, a, b)
		}
		seen[string(a)] = true
	}
	if len(seen) < 2 {
		t.Errorf("schemaValue over 20 seeds gave %d distinct values, want the seed to matter", len(seen))
	}
}

// TestSchemaValueLengthFollowsWant: strings of free length share the drawn output
// length, so a longer draw gives a longer value.
func TestSchemaValueLengthFollowsWant(t *testing.T) {
	t.Parallel()
	schema := []byte(`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"string"}},"required":["a","b"]}`)
	total := func(want int64) (n int) {
		for seed := range uint64(20) {
			n += len(schemaValue(schema, rand.New(rand.NewPCG(seed, 3)), want, false))
		}
		return n
	}
	if short, long := total(8), total(800); long < 4*short {
		t.Errorf("value bytes over 20 seeds: want 8 gives %d, want 800 gives %d; want the longer draw at least 4× longer", short, long)
	}
}

// randomSchema builds a feasible schema from rng, at most depth levels deep, with
// named definitions in defs that it may reference.
func randomSchema(rng *rand.Rand, depth int, defs map[string]any) any {
	kinds := []string{"string", "integer", "number", "boolean", "null", "enum", "const", "ref"}
	if depth > 0 {
		kinds = append(kinds, "object", "object", "array", "array", "anyOf", "oneOf", "allOf", "types")
	}
	switch kinds[rng.IntN(len(kinds))] {
	case "string":
		s := map[string]any{"type": "string"}
		switch rng.IntN(4) {
		case 0:
			lo := rng.IntN(10)
			s["minLength"], s["maxLength"] = lo, lo+rng.IntN(20)
		case 1:
			s["pattern"] = []string{`^[a-z]{2,5}$`, `^\d{3}-\d{4}$`, `^(yes|no)$`, `[A-F0-9]+`, `^x.y$`}[rng.IntN(5)]
		case 2:
			s["format"] = []string{"date-time", "date", "time", "email", "uri", "uuid", "ipv4"}[rng.IntN(7)]
		}
		return s
	case "integer", "number":
		typ := []string{"integer", "number"}[rng.IntN(2)]
		s := map[string]any{"type": typ}
		lo := rng.IntN(200) - 100
		hi := lo + 10 + rng.IntN(100)
		if rng.IntN(2) == 0 {
			s["minimum"] = lo
		} else {
			s["exclusiveMinimum"] = lo
		}
		if rng.IntN(2) == 0 {
			s["maximum"] = hi
		} else {
			s["exclusiveMaximum"] = hi
		}
		if rng.IntN(3) == 0 {
			if typ == "integer" {
				s["multipleOf"] = 1 + rng.IntN(5)
			} else {
				s["multipleOf"] = []float64{0.5, 0.25, 0.1, 2.5}[rng.IntN(4)]
			}
		}
		return s
	case "boolean":
		return map[string]any{"type": "boolean"}
	case "null":
		return map[string]any{"type": "null"}
	case "enum":
		return map[string]any{"enum": []any{"a", 1, true, nil, []any{1}}[:1+rng.IntN(5)]}
	case "const":
		return map[string]any{"const": map[string]any{"k": rng.IntN(9)}}
	case "ref":
		name := fmt.Sprintf("d%d", rng.IntN(3))
		if d, ok := defs[name]; ok && d == nil {
			return map[string]any{"type": "string"} // a definition that is only itself is a cycle
		}
		if _, ok := defs[name]; !ok {
			defs[name] = nil // a placeholder stops a definition's own references looping here
			defs[name] = randomSchema(rng, max(depth-1, 0), defs)
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	case "object":
		props := map[string]any{}
		var req []any
		for i := range rng.IntN(4) {
			name := fmt.Sprintf("p%d", i)
			props[name] = randomSchema(rng, depth-1, defs)
			if rng.IntN(2) == 0 {
				req = append(req, name)
			}
		}
		s := map[string]any{"type": "object", "properties": props}
		if len(req) > 0 {
			s["required"] = req
		}
		if rng.IntN(2) == 0 {
			s["additionalProperties"] = false
		}
		return s
	case "array":
		lo := rng.IntN(3)
		s := map[string]any{"type": "array", "items": randomSchema(rng, depth-1, defs), "minItems": lo}
		if rng.IntN(2) == 0 {
			s["maxItems"] = lo + rng.IntN(3)
		}
		return s
	case "anyOf", "oneOf":
		var bs []any
		for range 1 + rng.IntN(3) {
			bs = append(bs, randomSchema(rng, depth-1, defs))
		}
		return map[string]any{[]string{"anyOf", "oneOf"}[rng.IntN(2)]: bs}
	case "allOf":
		a := map[string]any{"type": "object", "properties": map[string]any{"x": randomSchema(rng, depth-1, defs)}, "required": []any{"x"}}
		b := map[string]any{"properties": map[string]any{"y": map[string]any{"type": "integer"}}}
		return map[string]any{"allOf": []any{a, b}}
	default: // types
		return map[string]any{"type": []any{"string", "integer", "null", "boolean"}[:1+rng.IntN(4)]}
	}
}

// buildFuzzSchema builds a random schema from seed, with its definitions under $defs.
func buildFuzzSchema(seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 77))
	defs := map[string]any{}
	root := randomSchema(rng, 4, defs)
	m, ok := root.(map[string]any)
	if !ok {
		m = map[string]any{"allOf": []any{root}}
	}
	for k, v := range defs {
		if v == nil {
			defs[k] = map[string]any{"type": "null"}
		}
	}
	if len(defs) > 0 {
		m["$defs"] = defs
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// FuzzSchemaValue: for random schemas built from a seed, every generated value the
// generator's own check accepts validates with the maintained validator, and values
// the check rejects are only those of an infeasible oneOf (branches that overlap).
func FuzzSchemaValue(f *testing.F) {
	for seed := range uint64(64) {
		f.Add(seed, uint64(seed*31+7))
	}
	f.Fuzz(func(t *testing.T, schemaSeed, valueSeed uint64) {
		schema := buildFuzzSchema(schemaSeed)
		sch := compileSchema(t, schema)
		text := schemaValue([]byte(schema), rand.New(rand.NewPCG(valueSeed, 5)), 20, false)
		err := validateJSON(sch, text)
		if err == nil {
			return
		}
		if strings.Contains(schema, `"oneOf"`) && strings.Contains(err.Error(), "oneOf") {
			t.Skipf("schema %s: no value found that matches exactly one oneOf branch", schema)
		}
		t.Fatalf("schemaValue(%s, seed %d) = %s, invalid: %v", schema, valueSeed, text, err)
	})
}

// TestSchemaValueBoundedOnInfeasible: a nested oneOf of equal branches has no value;
// the generator gives up after a bounded number of attempts instead of 8^depth.
func TestSchemaValueBoundedOnInfeasible(t *testing.T) {
	t.Parallel()
	defs := []string{`"d0":{"type":"integer"}`}
	for i := 1; i <= 20; i++ {
		ref := fmt.Sprintf(`{"$ref":"#/$defs/d%d"}`, i-1)
		defs = append(defs, fmt.Sprintf(`"d%d":{"type":"array","minItems":2,"items":{"oneOf":[%s,%s]}}`, i, ref, ref))
	}
	s := `{"$defs":{` + strings.Join(defs, ",") + `},"$ref":"#/$defs/d20"}`
	g := &schemaGen{rng: rand.New(rand.NewPCG(1, 1)), budget: 10, maxWords: 2}
	root, _ := decodeSchema([]byte(s))
	g.root = root
	for range schemaAttempts {
		g.gen(root, 0)
	}
	if g.steps > 4*schemaMaxSteps+100 {
		t.Errorf("gen steps = %d, want at most %d", g.steps, 4*schemaMaxSteps)
	}
	if g.steps < schemaMaxSteps {
		t.Errorf("gen steps = %d, want the bound %d reached (the schema is infeasible)", g.steps, schemaMaxSteps)
	}
	if text := schemaValue([]byte(s), rand.New(rand.NewPCG(1, 1)), 10, false); !json.Valid(text) {
		t.Errorf("schemaValue(infeasible) = %s, want JSON all the same", text)
	}
}

// FuzzSchemaValueBytes: any schema bytes, as a request may send, give JSON (an object
// for a tool input) without a panic.
func FuzzSchemaValueBytes(f *testing.F) {
	for _, tc := range schemaCases {
		f.Add([]byte(tc.schema), uint64(1))
	}
	f.Add([]byte(`{"type":"string","pattern":"(a{1000}){1000}"}`), uint64(2))
	f.Add([]byte(`{"type":"number","multipleOf":1e-400,"minimum":1e300}`), uint64(3))
	f.Fuzz(func(t *testing.T, schema []byte, seed uint64) {
		for _, object := range []bool{false, true} {
			text := schemaValue(schema, rand.New(rand.NewPCG(seed, 1)), 20, object)
			if !json.Valid(text) {
				t.Fatalf("schemaValue(%q) = %q, not JSON", schema, text)
			}
			if object && (len(text) == 0 || text[0] != '{') {
				t.Fatalf("schemaValue(%q, object) = %s, want an object", schema, text)
			}
		}
	})
}
