package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/emulator"
)

func thinkingParams(maxTokens int64, tc anthropic.ThinkingConfigParamUnion) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: maxTokens, Thinking: tc,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Think about token buckets"))}}
}

// thinkingOf returns the first block, which must be a thinking block.
func thinkingOf(t *testing.T, m *anthropic.Message) anthropic.ThinkingBlock {
	t.Helper()
	if len(m.Content) < 2 || m.Content[0].Type != "thinking" {
		t.Fatalf("content %s: want a thinking block, then the answer", m.RawJSON())
	}
	return m.Content[0].AsThinking()
}

// TestThinkingEnabled: with thinking enabled, a response opens with a thinking block
// (text and signature) within budget_tokens, its tokens counted in output_tokens and
// in output_tokens_details.thinking_tokens; streamed, the SDK accumulates the same
// shape from thinking_delta and signature_delta events.
func TestThinkingEnabled(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", Output: emulator.OutputModel{MedianTokens: 400}})
	c := clientV2(em.URL)
	ctx := context.Background()
	m, err := c.Messages.New(ctx, thinkingParams(8000, anthropic.ThinkingConfigParamOfEnabled(1024)))
	if err != nil {
		t.Fatal(err)
	}
	th := thinkingOf(t, m)
	thinkTok := m.Usage.OutputTokensDetails.ThinkingTokens
	if th.Thinking == "" || len(th.Signature) < 40 || thinkTok <= 0 || thinkTok > 1024 {
		t.Errorf("thinking %q (signature %d bytes), %d thinking tokens: want text, a signature and at most the budget of 1024", th.Thinking, len(th.Signature), thinkTok)
	}
	text := m.Content[1].AsText().Text
	if want := thinkTok + int64(len(text)/4); m.Usage.OutputTokens != want {
		t.Errorf("output_tokens = %d, want thinking %d + text %d", m.Usage.OutputTokens, thinkTok, len(text)/4)
	}

	st := c.Messages.NewStreaming(ctx, thinkingParams(8000, anthropic.ThinkingConfigParamOfEnabled(1024)))
	var acc anthropic.Message
	deltas := map[string]int{}
	for st.Next() {
		ev := st.Current()
		if ev.Type == "content_block_delta" {
			deltas[ev.Delta.Type]++
		}
		if err := acc.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	sth := thinkingOf(t, &acc)
	if deltas["thinking_delta"] == 0 || deltas["signature_delta"] != 1 || sth.Thinking != th.Thinking || sth.Signature != th.Signature {
		t.Errorf("stream deltas %v, thinking equal %v, signature equal %v: want thinking deltas, one signature delta, and the same block as unstreamed",
			deltas, sth.Thinking == th.Thinking, sth.Signature == th.Signature)
	}
	if acc.Usage.OutputTokens != m.Usage.OutputTokens {
		t.Errorf("streamed output_tokens %d, want %d as unstreamed", acc.Usage.OutputTokens, m.Usage.OutputTokens)
	}
}

// TestThinkingDisplayOmitted: display omitted returns an empty thinking with a
// signature, its tokens counted all the same.
func TestThinkingDisplayOmitted(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	tc := anthropic.ThinkingConfigParamUnion{OfEnabled: &anthropic.ThinkingConfigEnabledParam{BudgetTokens: 2000, Display: "omitted"}}
	c := clientV2(em.URL)
	m, err := c.Messages.New(context.Background(), thinkingParams(8000, tc))
	if err != nil {
		t.Fatal(err)
	}
	th := thinkingOf(t, m)
	if th.Thinking != "" || th.Signature == "" || m.Usage.OutputTokensDetails.ThinkingTokens <= 0 {
		t.Errorf("omitted thinking %q, signature %q, %d thinking tokens: want no text, a signature and the tokens counted",
			th.Thinking, th.Signature, m.Usage.OutputTokensDetails.ThinkingTokens)
	}
}

// TestThinkingRedacted: with RedactedThinkingRate 1 the thinking comes back as
// redacted_thinking with opaque data, which passes back unchanged.
func TestThinkingRedacted(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", RedactedThinkingRate: 1})
	c := clientV2(em.URL)
	p := thinkingParams(8000, anthropic.ThinkingConfigParamOfEnabled(1024))
	m, err := c.Messages.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if m.Content[0].Type != "redacted_thinking" || m.Content[0].AsRedactedThinking().Data == "" {
		t.Fatalf("first block %s, want redacted_thinking with data", m.Content[0].RawJSON())
	}
	p.Messages = append(p.Messages, m.ToParam(), anthropic.NewUserMessage(anthropic.NewTextBlock("and then?")))
	if _, err := c.Messages.New(context.Background(), p); err != nil {
		t.Errorf("redacted_thinking passed back unchanged: %v, want an answer", err)
	}
}

// TestThinkingToolLoop: thinking with tools: a turn opens with thinking, then calls
// the tool; the conversation passed back (thinking blocks unchanged) is answered,
// with thinking again only under the interleaved-thinking beta; a thinking block
// whose text was changed gets the API's 400.
func TestThinkingToolLoop(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	ctx := context.Background()
	tool := anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: "lookup", InputSchema: anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"q": map[string]any{"type": "string"}}, Required: []string{"q"}}}}
	for _, interleaved := range []bool{false, true} {
		var opts []option.RequestOption
		if interleaved {
			opts = append(opts, option.WithHeader("anthropic-beta", emulator.InterleavedThinkingBeta))
		}
		c := clientV2(em.URL, opts...)
		p := anthropic.MessageNewParams{Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 8000, Thinking: anthropic.ThinkingConfigParamOfEnabled(1024),
			Tools:    []anthropic.ToolUnionParam{tool},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Use lookup to find the answer"))}}
		m, err := c.Messages.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		thinkingOf(t, m)
		last := m.Content[len(m.Content)-1]
		if m.StopReason != "tool_use" || last.Type != "tool_use" {
			t.Fatalf("first answer %s: want thinking, then a call of lookup", m.RawJSON())
		}
		p.Messages = append(p.Messages, m.ToParam(), anthropic.NewUserMessage(anthropic.NewToolResultBlock(last.ID, "42", false)))
		m2, err := c.Messages.New(ctx, p)
		if err != nil {
			t.Fatalf("interleaved %v: the tool result with the thinking passed back: %v", interleaved, err)
		}
		if got := m2.Content[0].Type == "thinking"; got != interleaved {
			t.Errorf("interleaved %v: the answer to the tool result opens with thinking = %v, want %v", interleaved, got, interleaved)
		}

		tampered := m.ToParam()
		tampered.OfAssistant.Content[0].OfThinking.Thinking += " (edited)"
		p.Messages[1] = tampered
		_, err = c.Messages.New(ctx, p)
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.RawJSON(), "signature") {
			t.Errorf("a changed thinking block: %v, want a 400 about its signature", err)
		}
	}
}

// TestThinkingValidation: the API's 400s for thinking settings it refuses.
func TestThinkingValidation(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	c := clientV2(em.URL)
	for _, tt := range []struct {
		name string
		p    anthropic.MessageNewParams
		want string
	}{
		{"budget below 1024", thinkingParams(8000, anthropic.ThinkingConfigParamOfEnabled(512)), "greater than or equal to 1024"},
		{"budget not below max_tokens", thinkingParams(2000, anthropic.ThinkingConfigParamOfEnabled(2000)), "must be greater than `thinking.budget_tokens`"},
	} {
		_, err := c.Messages.New(context.Background(), tt.p)
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.RawJSON(), tt.want) {
			t.Errorf("%s: %v, want a 400 saying %q", tt.name, err, tt.want)
		}
	}
	p := thinkingParams(8000, anthropic.ThinkingConfigParamOfEnabled(1024))
	p.Tools = []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "x", InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{}}}}}
	p.ToolChoice = anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{}}
	if _, err := c.Messages.New(context.Background(), p); err == nil || !strings.Contains(err.Error(), "forces tool use") {
		t.Errorf("thinking with tool_choice any: %v, want the API's 400", err)
	}
}

// TestThinkingAdaptiveByEffort: adaptive thinking thinks more often, and longer,
// at higher effort; without thinking settings no response thinks.
func TestThinkingAdaptiveByEffort(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	c := clientV2(em.URL)
	count := func(effort anthropic.OutputConfigEffort, adaptive bool) (thought int) {
		for i := range 40 {
			p := anthropic.MessageNewParams{Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 8000,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("question " + strings.Repeat("x", i)))}}
			if adaptive {
				p.Thinking = anthropic.ThinkingConfigParamUnion{OfAdaptive: &anthropic.ThinkingConfigAdaptiveParam{}}
				p.OutputConfig = anthropic.OutputConfigParam{Effort: effort}
			}
			m, err := c.Messages.New(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if m.Content[0].Type == "thinking" {
				thought++
			}
		}
		return thought
	}
	none, low, max := count("", false), count("low", true), count("max", true)
	if none != 0 || max != 40 || low == 0 || low >= 25 {
		t.Errorf("of 40 calls, thinking: none %d, adaptive low %d, adaptive max %d; want 0, about 10, 40", none, low, max)
	}
}
