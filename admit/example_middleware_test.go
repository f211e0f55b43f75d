package admit_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"strings"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/emulator"
)

// The official Go SDK paced by the account's limits: every client.Messages.New and
// NewStreaming of the client waits for room in the tier's RPM, ITPM and OTPM
// buckets, so goroutines can call it freely. The emulator stands in for the API.
func ExampleLimiter_Middleware() {
	em, err := emulator.Start(emulator.Config{Tier: "tier-2", Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer em.Close()

	lim, err := admit.New(admit.Config{Tier: "tier-2"}) // or "auto": learn the limits from the headers
	if err != nil {
		log.Fatal(err)
	}
	client := anthropic.NewClient(
		option.WithBaseURL(em.URL), option.WithAPIKey("sk-ant-example"), // the real API: leave both out
		option.WithMiddleware(lim.Middleware),
	)
	msg, err := client.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     "claude-haiku-4-5",
		MaxTokens: 200,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Name a colour."))},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg.Role, msg.Usage.OutputTokens > 0)
	// Output: assistant true
}

// Any other HTTP client goes through Transport: here plain net/http.
func ExampleLimiter_Transport() {
	em, err := emulator.Start(emulator.Config{Tier: "tier-2"})
	if err != nil {
		log.Fatal(err)
	}
	defer em.Close()

	lim, err := admit.New(admit.Config{Tier: "tier-2"})
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{Transport: lim.Transport(http.DefaultTransport)}
	req, err := http.NewRequest(http.MethodPost, em.URL+"/v1/messages", strings.NewReader(
		`{"model":"claude-haiku-4-5","max_tokens":100,"messages":[{"role":"user","content":"Hello"}]}`))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("x-api-key", "sk-ant-example")
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// Processes (on any number of machines) that share one organisation's limits give
// their limiters one Redis backend and the same namespace.
func Example_redisShared() {
	opts, err := admit.ParseRedisURL("redis://127.0.0.1:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	backend, err := admit.NewRedis(admit.RedisConfig{Client: rdb, Namespace: "my-org"})
	if err != nil {
		log.Fatal(err)
	}
	lim, err := admit.New(admit.Config{Tier: "tier-4", Backend: backend})
	if err != nil {
		log.Fatal(err)
	}
	client := anthropic.NewClient(option.WithMiddleware(lim.Middleware)) // ANTHROPIC_API_KEY from the environment
	_ = client
}
