package emulator

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestSchemaValueKeepsDescriptionHints: the schemas the TypeScript SDK 1.16's
// zodOutputFormat and the AI SDK 7's Anthropic provider send for z.object({score: z.number().int().min(1).max(10), title:
// z.string().min(3).max(40), tags: z.array(z.string()).min(1).max(3)}) carries the
// bounds only in descriptions, each in its own notation; every value validates against the full schema the SDK
// then checks the answer with.
func TestSchemaValueKeepsDescriptionHints(t *testing.T) {
	t.Parallel()
	tsSent := `{"type":"object","properties":{` +
		`"title":{"type":"string","description":"{minLength: 3, maxLength: 40}"},` +
		`"score":{"type":"integer","description":"The score.\n\n{minimum: 1, maximum: 10}"},` +
		`"tags":{"type":"array","items":{"type":"string"},"minItems":1,"description":"{maxItems: 3}"}},` +
		`"additionalProperties":false,"required":["title","score","tags"]}`
	full := `{"type":"object","properties":{` +
		`"title":{"type":"string","minLength":3,"maxLength":40},` +
		`"score":{"type":"integer","minimum":1,"maximum":10},` +
		`"tags":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":3},` +
		`"kind":{"enum":["a","b"]}},` +
		`"additionalProperties":false,"required":["title","score","tags"]}`
	sch := compileSchema(t, full)
	if validateJSON(sch, []byte(`{"title":"abc","score":26,"tags":["x"]}`)) == nil {
		t.Fatal("the full schema accepts score 26: the test checks nothing")
	}
	// The same schema as the AI SDK 7's Anthropic provider sends it.
	aiSent := `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{` +
		`"title":{"type":"string","description":"min length: 3; max length: 40."},` +
		`"score":{"type":"integer","description":"The score.\nminimum: 1; maximum: 10."},` +
		`"tags":{"type":"array","items":{"type":"string"},"description":"min items: 1; max items: 3."}},` +
		`"additionalProperties":false,"required":["title","score","tags"]}`
	// LangChain JS 1.5's copy of the SDK's transform also moves enum.
	lcSent := `{"type":"object","properties":{` +
		`"title":{"type":"string","description":"{minLength: 3, maxLength: 40}"},` +
		`"score":{"type":"integer","description":"{minimum: 1, maximum: 10}"},` +
		`"tags":{"type":"array","items":{"type":"string"},"minItems":1,"description":"{maxItems: 3}"},` +
		`"kind":{"type":"string","description":"{enum: [\"a\",\"b\"]}"}},` +
		`"additionalProperties":false,"required":["title","score","tags","kind"]}`
	for _, sent := range []string{tsSent, aiSent, lcSent} {
		for seed := range uint64(200) {
			text := schemaValue([]byte(sent), rand.New(rand.NewPCG(seed, 3)), 60, false)
			if err := validateJSON(sch, text); err != nil {
				t.Fatalf("schemaValue(%s, seed %d) = %s, invalid against the SDK's full schema: %v", sent, seed, text, err)
			}
		}
	}
}

func TestDescriptionHints(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, desc string
		want       map[string]any
	}{
		{name: "bounds", desc: "{minimum: 1, maximum: 10}", want: map[string]any{"minimum": "1", "maximum": "10"}},
		{name: "after text", desc: "A title.\n\n{maxLength: 40}", want: map[string]any{"maxLength": "40"}},
		{name: "enum", desc: `{enum: ["a","b"]}`, want: map[string]any{"enum": []any{"a", "b"}}},
		{name: "pattern", desc: `{pattern: "^a{2}, b$"}`, want: map[string]any{"pattern": "^a{2}, b$"}},
		{name: "ai sdk", desc: "A title.\nmin length: 3; max length: 40.", want: map[string]any{"minLength": "3", "maxLength": "40"}},
		{name: "ai sdk pattern", desc: "pattern: ^a; b$; min length: 2.", want: map[string]any{"pattern": "^a; b$", "minLength": "2"}},
		{name: "ai sdk bounds", desc: "minimum: 1; exclusive maximum: 10.", want: map[string]any{"minimum": "1", "exclusiveMaximum": "10"}},
		{name: "sentence", desc: "The minimum: one per day.", want: nil},
		{name: "prose", desc: "A set {of things}", want: nil},
		{name: "plain", desc: "no hint", want: nil},
		{name: "bad json", desc: "{minimum: one}", want: nil},
	} {
		got := descriptionHints(tc.desc)
		norm := map[string]any{}
		for k, v := range got {
			if n, ok := v.(interface{ String() string }); ok {
				v = n.String()
			}
			norm[k] = v
		}
		if tc.want == nil && got != nil || tc.want != nil && !reflect.DeepEqual(norm, tc.want) {
			t.Errorf("%s: descriptionHints(%q) = %v, want %v", tc.name, tc.desc, got, tc.want)
		}
	}
}
