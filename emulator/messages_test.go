package emulator_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	option1 "github.com/anthropics/anthropic-sdk-go/option"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/emulator"
)

func TestMessagesPlainV2(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	c := clientV2(em.URL)
	var resp *http.Response
	msg, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     anthropic.ModelClaudeHaiku4_5,
		MaxTokens: 1000,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello there"))},
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("Messages.New error: %v", err)
	}
	if msg.Role != "assistant" || len(msg.Content) == 0 || msg.Content[0].Type != "text" {
		t.Fatalf("Messages.New = %+v, want an assistant text message", msg)
	}
	if msg.StopReason != anthropic.StopReasonEndTurn {
		t.Errorf("StopReason = %q, want end_turn", msg.StopReason)
	}
	if msg.Usage.InputTokens <= 0 || msg.Usage.OutputTokens <= 0 {
		t.Errorf("Usage = %+v, want positive input and output", msg.Usage)
	}
	if !strings.HasPrefix(resp.Header.Get("request-id"), "req_") {
		t.Errorf("request-id header = %q, want req_…", resp.Header.Get("request-id"))
	}
	if !strings.HasPrefix(msg.ID, "msg_") {
		t.Errorf("ID = %q, want msg_…", msg.ID)
	}
}

func TestMessagesPlainV1(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	c := clientV1(em.URL)
	msg, err := c.Messages.New(context.Background(), anthropic1.MessageNewParams{
		Model:     anthropic1.ModelClaudeSonnet5_5,
		MaxTokens: 5,
		Messages:  []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("Write a long essay"))},
	}, option1.WithHeader("x-test", "1"))
	if err != nil {
		t.Fatalf("Messages.New error: %v", err)
	}
	if msg.StopReason != anthropic1.StopReasonMaxTokens || msg.Usage.OutputTokens != 5 {
		t.Errorf("stop/output = %q/%d, want max_tokens/5", msg.StopReason, msg.Usage.OutputTokens)
	}
}

func TestMessagesStreamingAccumulates(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", Seed: 7})
	for _, sdk := range []string{"v1", "v2"} {
		t.Run(sdk, func(t *testing.T) {
			t.Parallel()
			var got struct {
				text    string
				stop    string
				in, out int64
				events  int
			}
			switch sdk {
			case "v2":
				c := clientV2(em.URL)
				st := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{
					Model: anthropic.ModelClaudeSonnet5, MaxTokens: 300,
					Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("stream please"))},
				})
				acc := anthropic.Message{}
				for st.Next() {
					if err := acc.Accumulate(st.Current()); err != nil {
						t.Fatalf("Accumulate error: %v", err)
					}
					got.events++
				}
				if err := st.Err(); err != nil {
					t.Fatalf("stream error: %v", err)
				}
				got.text, got.stop, got.in, got.out = acc.Content[0].Text, string(acc.StopReason), acc.Usage.InputTokens, acc.Usage.OutputTokens
			case "v1":
				c := clientV1(em.URL)
				st := c.Messages.NewStreaming(context.Background(), anthropic1.MessageNewParams{
					Model: anthropic1.ModelClaudeSonnet5_5, MaxTokens: 300,
					Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("stream please"))},
				})
				acc := anthropic1.Message{}
				for st.Next() {
					if err := acc.Accumulate(st.Current()); err != nil {
						t.Fatalf("Accumulate error: %v", err)
					}
					got.events++
				}
				if err := st.Err(); err != nil {
					t.Fatalf("stream error: %v", err)
				}
				got.text, got.stop, got.in, got.out = acc.Content[0].Text, string(acc.StopReason), acc.Usage.InputTokens, acc.Usage.OutputTokens
			}
			if got.stop == "" || got.in <= 0 || got.out <= 0 {
				t.Fatalf("accumulated stop/in/out = %q/%d/%d, want all set", got.stop, got.in, got.out)
			}
			if int64(len(got.text)) != 4*got.out && got.stop != "stop_sequence" {
				t.Errorf("text is %d bytes for %d output tokens, want 4 bytes a token", len(got.text), got.out)
			}
			if got.events < 5 {
				t.Errorf("got %d events, want at least 5", got.events)
			}
		})
	}
}

func TestCountTokensMatchesUsage(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	c := clientV2(em.URL)
	msgs := []anthropic.MessageParam{
		anthropic.NewUserMessage(anthropic.NewTextBlock(strings.Repeat("count these words ", 50))),
		anthropic.NewAssistantMessage(anthropic.NewTextBlock("ok")),
		anthropic.NewUserMessage(anthropic.NewTextBlock("and again")),
	}
	sys := []anthropic.TextBlockParam{{Text: "You are terse."}}
	ct, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
		Model: anthropic.ModelClaudeHaiku4_5, Messages: msgs, System: anthropic.MessageCountTokensParamsSystemUnion{OfTextBlockArray: sys},
	})
	if err != nil {
		t.Fatalf("CountTokens error: %v", err)
	}
	msg, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 10, Messages: msgs, System: sys,
	})
	if err != nil {
		t.Fatalf("Messages.New error: %v", err)
	}
	if ct.InputTokens != msg.Usage.InputTokens {
		t.Errorf("count_tokens = %d, usage.input_tokens = %d, want equal", ct.InputTokens, msg.Usage.InputTokens)
	}
}
