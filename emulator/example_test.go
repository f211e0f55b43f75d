package emulator_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/emulator"
)

// Start serves an emulator on a free loopback port; point the official SDK at its URL.
func Example() {
	em, err := emulator.Start(emulator.Config{Tier: "tier-1", Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer em.Close()

	client := anthropic.NewClient(
		option.WithoutEnvironmentDefaults(), // ignore ANTHROPIC_* in the environment
		option.WithBaseURL(em.URL),
		option.WithAPIKey("any-non-empty-key"),
	)
	msg, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     anthropic.ModelClaudeHaiku4_5,
		MaxTokens: 5,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello"))},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg.Role, msg.StopReason, msg.Usage.OutputTokens)
	// Output: assistant max_tokens 5
}

// StartTB starts an emulator for one test and closes it when the test ends.
func ExampleStartTB() {
	_ = func(t *testing.T) {
		em := emulator.StartTB(t, emulator.Config{Tier: "tier-1", LatencyScale: 1})
		client := anthropic.NewClient(
			option.WithoutEnvironmentDefaults(),
			option.WithBaseURL(em.URL),
			option.WithAPIKey("test"),
		)
		_ = client // … exercise your code with client, or hand it em.URL.

		// Inject faults while the test runs; the same seed gives the same faults.
		faults, err := emulator.ParseFaults("overloaded=0.1,stream_error=0.05")
		if err != nil {
			t.Fatal(err)
		}
		if err := em.Server.SetFaults(faults); err != nil {
			t.Fatal(err)
		}
	}
}

// A Server is an http.Handler: mount it on a test server, a mux or your own listener.
func ExampleNew() {
	srv, err := emulator.New(emulator.Config{Tier: "unlimited"})
	if err != nil {
		log.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	client := anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(ts.URL),
		option.WithAPIKey("test"),
	)
	n, err := client.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
		Model:    anthropic.ModelClaudeSonnet5,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Count me, please."))},
	})
	if err != nil {
		log.Fatal(err)
	}
	// "Count me, please." is 17 bytes: 5 tokens, +4 for the message, +3 for the request.
	fmt.Println(n.InputTokens)
	// Output: 12
}
