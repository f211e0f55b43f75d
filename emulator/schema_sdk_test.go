package emulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/clade-dev/clade/emulator"
)

// reportSchema is a structured-output schema with nesting, $defs, enums, formats,
// bounds and a oneOf.
const reportSchema = `{
	"type": "object",
	"$defs": {
		"item": {"type": "object", "properties": {
			"sku": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3}$"},
			"qty": {"type": "integer", "minimum": 1, "maximum": 9},
			"price": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.01}
		}, "required": ["sku", "qty", "price"], "additionalProperties": false}
	},
	"properties": {
		"id": {"type": "string", "format": "uuid"},
		"when": {"type": "string", "format": "date-time"},
		"status": {"enum": ["open", "closed"]},
		"summary": {"type": "string", "maxLength": 120},
		"items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1, "maxItems": 4},
		"contact": {"oneOf": [{"type": "string", "format": "email"}, {"type": "null"}]}
	},
	"required": ["id", "when", "status", "summary", "items", "contact"],
	"additionalProperties": false
}`

func mustSchema(t *testing.T, schema string) (*jsonschema.Schema, map[string]any) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(schema), &m); err != nil {
		t.Fatalf("schema: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("mem://s.json", doc); err != nil {
		t.Fatalf("AddResource: %v", err)
	}
	sch, err := c.Compile("mem://s.json")
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return sch, m
}

func validates(t *testing.T, sch *jsonschema.Schema, text string) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		t.Fatalf("text %q is not JSON: %v", text, err)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("text %s does not validate: %v", text, err)
	}
}

// sendBoth sends params plain and streaming and returns both messages. The two bodies
// differ ("stream":true), so their generated values do too.
func sendBoth(t *testing.T, c anthropic.Client, params anthropic.MessageNewParams) (plain, streamed anthropic.Message) {
	t.Helper()
	ctx := context.Background()
	msg, err := c.Messages.New(ctx, params)
	if err != nil {
		t.Fatalf("Messages.New: %v", err)
	}
	st := c.Messages.NewStreaming(ctx, params)
	acc := anthropic.Message{}
	for st.Next() {
		if err := acc.Accumulate(st.Current()); err != nil {
			t.Fatalf("Accumulate: %v", err)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	return *msg, acc
}

func TestStructuredOutputValidatesSDK(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", Seed: 11})
	c := clientV2(em.URL)
	sch, m := mustSchema(t, reportSchema)
	contacts := map[bool]bool{}
	for _, prompt := range []string{"one", "two", "three", "four", "five", "six"} {
		params := anthropic.MessageNewParams{
			Model: anthropic.ModelClaudeSonnet5, MaxTokens: 4000,
			Messages:     []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
			OutputConfig: anthropic.OutputConfigParam{Format: anthropic.JSONOutputFormatParam{Schema: m}},
		}
		plain, streamed := sendBoth(t, c, params)
		for name, msg := range map[string]anthropic.Message{"plain": plain, "stream": streamed} {
			if len(msg.Content) != 1 || msg.Content[0].Type != "text" {
				t.Fatalf("%s %s: content = %+v, want one text block", name, prompt, msg.Content)
			}
			text := msg.Content[0].Text
			validates(t, sch, text)
			if msg.StopReason != "end_turn" {
				t.Errorf("%s %s: stop_reason = %q, want end_turn", name, prompt, msg.StopReason)
			}
			if want := int64((len(text) + 3) / 4); msg.Usage.OutputTokens != want {
				t.Errorf("%s %s: output_tokens = %d, want %d for %d bytes", name, prompt, msg.Usage.OutputTokens, want, len(text))
			}
			var v struct{ Contact any }
			_ = json.Unmarshal([]byte(text), &v)
			contacts[v.Contact == nil] = true
		}
	}
	if len(contacts) != 2 {
		t.Errorf("oneOf contact over 6 prompts: saw null %v, want both an email and null", contacts)
	}
}

func TestStructuredOutputMaxTokensSDK(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", Seed: 11})
	c := clientV2(em.URL)
	_, m := mustSchema(t, reportSchema)
	params := anthropic.MessageNewParams{
		Model: anthropic.ModelClaudeSonnet5, MaxTokens: 9,
		Messages:     []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("cut me"))},
		OutputConfig: anthropic.OutputConfigParam{Format: anthropic.JSONOutputFormatParam{Schema: m}},
	}
	plain, streamed := sendBoth(t, c, params)
	for name, msg := range map[string]anthropic.Message{"plain": plain, "stream": streamed} {
		text := msg.Content[0].Text
		if msg.StopReason != "max_tokens" || msg.Usage.OutputTokens != 9 {
			t.Errorf("%s: stop_reason/output_tokens = %q/%d, want max_tokens/9", name, msg.StopReason, msg.Usage.OutputTokens)
		}
		if len(text) != 36 || !strings.HasPrefix(text, `{"contact":`) || json.Valid([]byte(text)) {
			t.Errorf("%s: text = %q, want the first 36 bytes of the value, not valid JSON", name, text)
		}
	}
}

// toolSchema is an input_schema beyond top-level properties: nested objects, $defs and
// $ref, arrays with bounds, anyOf, allOf and formats.
const toolSchema = `{
	"type": "object",
	"$defs": {"point": {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number", "minimum": -180, "maximum": 180}}, "required": ["lat", "lon"], "additionalProperties": false}},
	"properties": {
		"route": {"type": "array", "items": {"$ref": "#/$defs/point"}, "minItems": 2, "maxItems": 5},
		"depart": {"type": "string", "format": "date"},
		"mode": {"anyOf": [{"const": "walk"}, {"type": "object", "properties": {"vehicle": {"enum": ["car", "bike"]}}, "required": ["vehicle"], "additionalProperties": false}]},
		"limits": {"allOf": [{"type": "object", "properties": {"km": {"type": "integer", "minimum": 1}}, "required": ["km"]}, {"properties": {"km": {"maximum": 50}}}]},
		"note": {"type": ["string", "null"], "maxLength": 40}
	},
	"required": ["route", "depart", "mode", "limits"],
	"additionalProperties": false
}`

func TestToolInputValidatesSDK(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", Seed: 5})
	c := clientV2(em.URL)
	sch, m := mustSchema(t, toolSchema)
	extra := map[string]any{"$defs": m["$defs"], "additionalProperties": false}
	tool := anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
		Properties: m["properties"], Required: []string{"route", "depart", "mode", "limits"}, ExtraFields: extra,
	}, "plan_route")
	for _, prompt := range []string{"Lyon to Nice", "Oslo to Bergen", "Rome to Pisa"} {
		params := anthropic.MessageNewParams{
			Model: anthropic.ModelClaudeSonnet5, MaxTokens: 2000,
			Messages:   []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
			Tools:      []anthropic.ToolUnionParam{tool},
			ToolChoice: anthropic.ToolChoiceParamOfTool("plan_route"),
		}
		plain, streamed := sendBoth(t, c, params)
		for name, msg := range map[string]anthropic.Message{"plain": plain, "stream": streamed} {
			last := msg.Content[len(msg.Content)-1]
			if msg.StopReason != "tool_use" || last.Type != "tool_use" || last.Name != "plan_route" {
				t.Fatalf("%s %s: stop_reason %q, last block %+v, want a tool_use of plan_route", name, prompt, msg.StopReason, last)
			}
			validates(t, sch, string(last.Input))
			if !bytes.Contains(last.Input, []byte(`"route":[{`)) {
				t.Errorf("%s %s: input %s has no route of points: nested values not generated", name, prompt, last.Input)
			}
		}
		// Round trip: the tool's result goes back and the model answers.
		tu := plain.Content[len(plain.Content)-1]
		params.Messages = append(params.Messages, plain.ToParam(),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock(tu.ID, `{"km":12}`, false)))
		params.ToolChoice = anthropic.ToolChoiceUnionParam{OfNone: &anthropic.ToolChoiceNoneParam{}}
		next, err := c.Messages.New(context.Background(), params)
		if err != nil {
			t.Fatalf("%s: tool result round trip: %v", prompt, err)
		}
		if next.StopReason == "tool_use" || len(next.Content) == 0 || next.Content[0].Type != "text" {
			t.Errorf("%s: answer to the tool result = %q %+v, want text", prompt, next.StopReason, next.Content)
		}
	}
}
