package emulator_test

import (
	"context"
	"errors"
	"testing"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/clade-dev/clade/emulator"
)

// TestEveryErrorTypeThroughBothSDKs injects each API error type and checks that both
// SDK generations see its status and type.
func TestEveryErrorTypeThroughBothSDKs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ    string
		status int
	}{
		{"invalid_request_error", 400},
		{"authentication_error", 401},
		{"billing_error", 402},
		{"permission_error", 403},
		{"not_found_error", 404},
		{"conflict_error", 409},
		{"request_too_large", 413},
		{"rate_limit_error", 429},
		{"api_error", 500},
		{"timeout_error", 504},
		{"overloaded_error", 529},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			t.Parallel()
			f, err := emulator.ParseFaults("error=" + tt.typ + ":1")
			if err != nil {
				t.Fatalf("ParseFaults: %v", err)
			}
			em := start(t, emulator.Config{Tier: "unlimited", Faults: f})
			ctx := context.Background()
			c2 := clientV2(em.URL)
			_, err = c2.Messages.New(ctx, userText("claude-haiku-4-5", 10, "hi"))
			var e2 *anthropic.Error
			if !errors.As(err, &e2) || e2.StatusCode != tt.status || string(e2.Type()) != tt.typ {
				t.Errorf("v2: %v, want %d %s", err, tt.status, tt.typ)
			}
			c1 := clientV1(em.URL)
			_, err = c1.Messages.New(ctx, anthropic1.MessageNewParams{
				Model: anthropic1.ModelClaudeHaiku4_5, MaxTokens: 10,
				Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("hi"))},
			})
			var e1 *anthropic1.Error
			if !errors.As(err, &e1) || e1.StatusCode != tt.status {
				t.Errorf("v1: %v, want status %d", err, tt.status)
			}
		})
	}
	if _, err := emulator.ParseFaults("error=made_up_error:1"); err == nil {
		t.Errorf("ParseFaults accepted an unknown error type")
	}
}
