package serve_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/serve"
	"github.com/clade-dev/clade/internal/upstream"
)

// A gateway in front of an emulated API at tier-1, with two teams; an application
// calls it with the official SDK and its own client key.
func ExampleNew() {
	api, err := emulator.Start(emulator.Config{Tier: "tier-1"})
	if err != nil {
		panic(err)
	}
	defer api.Close()
	up, err := upstream.New(upstream.Config{BaseURL: api.URL, APIKey: upstream.NewSecret("sk-ant-organisation-key")})
	if err != nil {
		panic(err)
	}
	lim, err := admit.New(admit.Config{Tier: "tier-1"})
	if err != nil {
		panic(err)
	}
	keys, err := serve.ParseKeys([]byte("keys:\n  ck-search-7f3a: search\n  ck-ads-91b2: {team: ads, weight: 2}\n"))
	if err != nil {
		panic(err)
	}
	gw, err := serve.New(serve.Config{Upstream: up, Limiter: lim, Keys: keys})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	client := anthropic.NewClient(option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(srv.URL), option.WithAPIKey("ck-search-7f3a"))
	msg, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 50,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello"))},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(msg.Role, msg.StopReason != "")
	fmt.Println(gw.Status(context.Background()).Classes[0].RequestsPerMin, "request this minute")
	// Output:
	// assistant true
	// 1 request this minute
}
