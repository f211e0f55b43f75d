package serve_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestServeSDKCalls drives every endpoint through the gateway with both SDK
// generations, as an application pointed at clade serve would.
func TestServeSDKCalls(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{emCfg: emulator.Config{Seed: 7}})
	ctx := context.Background()
	c2 := v2(gw.URL, clientKey)
	c1 := v1(gw.URL, clientKey)

	t.Run("messages", func(t *testing.T) {
		m, err := c2.Messages.New(ctx, hello("claude-haiku-4-5", 200, "Hello there"))
		if err != nil {
			t.Fatalf("v2 Messages.New: %v", err)
		}
		if m.Type != "message" || len(m.Content) == 0 || m.Usage.InputTokens == 0 || m.Usage.OutputTokens == 0 {
			t.Errorf("v2 Messages.New = %+v, want a message with content and usage", m)
		}
		m1, err := c1.Messages.New(ctx, anthropic1.MessageNewParams{Model: anthropic1.ModelClaudeHaiku4_5, MaxTokens: 100,
			Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("Hi"))}})
		if err != nil || m1.StopReason == "" || m1.Usage.OutputTokens == 0 {
			t.Errorf("v1 Messages.New = %+v, %v; want a finished message", m1, err)
		}
	})

	t.Run("stream", func(t *testing.T) {
		st := c2.Messages.NewStreaming(ctx, hello("claude-sonnet-5", 300, "Tell me a story"))
		var acc anthropic.Message
		events := 0
		for st.Next() {
			events++
			if err := acc.Accumulate(st.Current()); err != nil {
				t.Fatalf("Accumulate: %v", err)
			}
		}
		if err := st.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		st.Close()
		if events < 5 || acc.StopReason == "" || len(acc.Content) == 0 || acc.Content[0].Text == "" || acc.Usage.OutputTokens == 0 {
			t.Errorf("streamed message = %+v after %d events, want a whole message", acc, events)
		}
		// The gateway counted the stream's usage as it passed.
		if got := testkit.MetricSum(t, gw.reg, "clade_serve_tokens_total", map[string]string{"direction": "output"}); got < float64(acc.Usage.OutputTokens) {
			t.Errorf("clade_serve_tokens_total{direction=output} = %v, want at least the stream's %d", got, acc.Usage.OutputTokens)
		}
		st1 := c1.Messages.NewStreaming(ctx, anthropic1.MessageNewParams{Model: anthropic1.ModelClaudeHaiku4_5, MaxTokens: 50,
			Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("Hi"))}})
		var acc1 anthropic1.Message
		for st1.Next() {
			acc1.Accumulate(st1.Current())
		}
		if err := st1.Err(); err != nil || acc1.StopReason == "" {
			t.Errorf("v1 stream = %+v, %v; want a whole message", acc1, err)
		}
		st1.Close()
	})

	t.Run("count_tokens", func(t *testing.T) {
		n, err := c2.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: "claude-haiku-4-5",
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("How many tokens is this?"))}})
		if err != nil || n.InputTokens <= 0 {
			t.Errorf("CountTokens = %+v, %v; want a positive count", n, err)
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := c2.Models.List(ctx, anthropic.ModelListParams{Limit: anthropic.Int(2)})
		if err != nil || len(page.Data) != 2 || !page.HasMore {
			t.Errorf("Models.List(limit 2) = %+v, %v; want 2 models and has_more", page, err)
		}
		m, err := c1.Models.Get(ctx, "claude-haiku-4-5-20251001", anthropic1.ModelGetParams{})
		if err != nil || m.ID != "claude-haiku-4-5-20251001" {
			t.Errorf("v1 Models.Get = %+v, %v", m, err)
		}
	})

	t.Run("batch", func(t *testing.T) {
		b, err := c2.Messages.Batches.New(ctx, anthropic.MessageBatchNewParams{Requests: []anthropic.MessageBatchNewParamsRequest{
			{CustomID: "a", Params: anthropic.MessageBatchNewParamsRequestParams{Model: "claude-haiku-4-5", MaxTokens: 20,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("one"))}}},
			{CustomID: "b", Params: anthropic.MessageBatchNewParamsRequestParams{Model: "claude-haiku-4-5", MaxTokens: 20,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("two"))}}},
		}})
		if err != nil || !strings.HasPrefix(b.ID, "msgbatch_") {
			t.Fatalf("Batches.New = %+v, %v", b, err)
		}
		got, err := c1.Messages.Batches.Get(ctx, b.ID, anthropic1.MessageBatchGetParams{})
		if err != nil || got.ID != b.ID || got.RequestCounts.Processing+got.RequestCounts.Succeeded != 2 {
			t.Errorf("Batches.Get(%s) = %+v, %v; want the batch of 2", b.ID, got, err)
		}
		// Once it ends, results_url points at the gateway, so the SDKs that follow it
		// (Python's) fetch the results through the gateway with their client key.
		deadline := time.Now().Add(20 * time.Second)
		for got.ProcessingStatus != "ended" {
			if time.Now().After(deadline) {
				t.Fatalf("batch %s not ended after 20s: %+v", b.ID, got)
			}
			time.Sleep(10 * time.Millisecond)
			if got, err = c1.Messages.Batches.Get(ctx, b.ID, anthropic1.MessageBatchGetParams{}); err != nil {
				t.Fatal(err)
			}
		}
		if want := gw.URL + "/v1/messages/batches/" + b.ID + "/results"; got.ResultsURL != want {
			t.Fatalf("results_url = %q, want %q", got.ResultsURL, want)
		}
		req, _ := http.NewRequest(http.MethodGet, got.ResultsURL, nil)
		req.Header.Set("x-api-key", clientKey)
		req.Header.Set("anthropic-version", "2023-06-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		lines, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Count(string(lines), `"custom_id"`) != 2 {
			t.Errorf("GET results_url = %d %s, want 2 result lines", resp.StatusCode, lines)
		}
	})

	t.Run("unknown path", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/v1/nothing", nil)
		req.Header.Set("x-api-key", clientKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || !strings.Contains(string(b), `"not_found_error"`) {
			t.Errorf("GET /v1/nothing = %d %s, want 404 not_found_error", resp.StatusCode, b)
		}
	})
}

// TestServeClientKeys checks that only the client keys of the file get in, in either
// auth style, and that an unknown one fails as the API's authentication error.
func TestServeClientKeys(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{keys: "keys:\n  ck-search-0001: search\n  ck-ads-000002: {team: ads, weight: 2}\n"})
	ctx := context.Background()
	search := v2(gw.URL, "ck-search-0001")
	if _, err := search.Messages.New(ctx, hello("claude-haiku-4-5", 20, "hi")); err != nil {
		t.Errorf("v2 (Bearer) with a known key: %v", err)
	}
	ads := v1(gw.URL, "ck-ads-000002")
	if _, err := ads.Models.List(ctx, anthropic1.ModelListParams{}); err != nil {
		t.Errorf("v1 (x-api-key) with a known key: %v", err)
	}
	bad2 := v2(gw.URL, "ck-unknown-999")
	_, err := bad2.Messages.New(ctx, hello("claude-haiku-4-5", 20, "hi"))
	var e2 *anthropic.Error
	if !errors.As(err, &e2) || e2.StatusCode != 401 || e2.Type() != "authentication_error" || e2.RequestID == "" {
		t.Errorf("v2 with an unknown key: %v, want 401 authentication_error with a request id", err)
	}
	bad1 := v1(gw.URL, "ck-unknown-999")
	_, err = bad1.Messages.CountTokens(ctx, anthropic1.MessageCountTokensParams{Model: "claude-haiku-4-5",
		Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("x"))}})
	var e1 *anthropic1.Error
	if !errors.As(err, &e1) || e1.StatusCode != 401 {
		t.Errorf("v1 count_tokens with an unknown key: %v, want 401", err)
	}
	if n := gw.rec.count(200) + gw.rec.count(401); n != 2 {
		t.Errorf("upstream saw %d calls, want 2: a refused client never reaches the API", n)
	}
	if got := testkit.MetricSum(t, gw.reg, "clade_serve_requests_total", map[string]string{"team": "search", "code": "200"}); got != 1 {
		t.Errorf("requests of team search = %v, want 1", got)
	}
}

// TestServeGatewayKeyRefused: when the API refuses the gateway's own key, clients are
// not told their key is wrong: they get a 502 that points at the operator, who gets a
// log line.
func TestServeGatewayKeyRefused(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{upKey: "sk-ant-revoked-key-000000"})
	ctx := context.Background()
	c := v2(gw.URL, clientKey)
	_, err := c.Messages.New(ctx, hello("claude-haiku-4-5", 20, "hi"))
	var e *anthropic.Error
	if !errors.As(err, &e) || e.StatusCode != 502 || e.Type() != "api_error" || !strings.Contains(e.RawJSON(), "operator") {
		t.Errorf("Messages.New with the gateway's key revoked = %v, want 502 api_error naming the operator", err)
	}
	_, err = c.Models.List(ctx, anthropic.ModelListParams{})
	if !errors.As(err, &e) || e.StatusCode != 502 {
		t.Errorf("Models.List with the gateway's key revoked = %v, want 502", err)
	}
	if logs := gw.logs.String(); !strings.Contains(logs, "refused the gateway's key") || strings.Contains(logs, "sk-ant-revoked") {
		t.Errorf("logs = %s\nwant a line on the refused key, without the key", logs)
	}
}

// TestServeForwardsVersionNotCredentials: the client's anthropic-version and
// anthropic-beta go upstream; its credentials do not, the organisation's key does.
func TestServeForwardsVersionNotCredentials(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{})
	ctx := context.Background()
	c2 := v2(gw.URL, clientKey, option.WithHeader("anthropic-beta", "context-1m-2025-08-07"))
	if _, err := c2.Messages.New(ctx, hello("claude-haiku-4-5", 20, "hi")); err != nil {
		t.Fatal(err)
	}
	c1 := v1(gw.URL, clientKey)
	if _, err := c1.Messages.New(ctx, anthropic1.MessageNewParams{Model: anthropic1.ModelClaudeHaiku4_5, MaxTokens: 20,
		Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("hi"))}}); err != nil {
		t.Fatal(err)
	}
	hs := gw.rec.headersSoFar()
	if len(hs) != 2 {
		t.Fatalf("upstream saw %d requests, want 2", len(hs))
	}
	for i, want := range []struct{ version, beta string }{{"2026-10-21", "context-1m-2025-08-07"}, {"2023-06-01", ""}} {
		h := hs[i]
		if h.Get("anthropic-version") != want.version || h.Get("anthropic-beta") != want.beta {
			t.Errorf("request %d upstream: anthropic-version %q, anthropic-beta %q; want %q, %q",
				i, h.Get("anthropic-version"), h.Get("anthropic-beta"), want.version, want.beta)
		}
		if h.Get("x-api-key") != orgKey || h.Get("Authorization") != "" {
			t.Errorf("request %d upstream carried x-api-key %q and Authorization %q; want only the organisation's key",
				i, h.Get("x-api-key"), h.Get("Authorization"))
		}
	}
}

// TestServeForwardsQuery: the query a client's SDK puts on a call (v1's beta methods
// send ?beta=true) reaches the API on Messages as on the endpoints passed through.
func TestServeForwardsQuery(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, setup{})
	ctx := context.Background()
	c1 := v1(gw.URL, clientKey)
	params := anthropic1.BetaMessageNewParams{Model: anthropic1.ModelClaudeHaiku4_5, MaxTokens: 20,
		Messages: []anthropic1.BetaMessageParam{anthropic1.NewBetaUserMessage(anthropic1.NewBetaTextBlock("hi"))}}
	if _, err := c1.Beta.Messages.New(ctx, params); err != nil {
		t.Fatalf("v1 Beta.Messages.New: %v", err)
	}
	st := c1.Beta.Messages.NewStreaming(ctx, params)
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatalf("v1 Beta.Messages.NewStreaming: %v", err)
	}
	st.Close()
	if _, err := c1.Beta.Messages.CountTokens(ctx, anthropic1.BetaMessageCountTokensParams{Model: anthropic1.ModelClaudeHaiku4_5,
		Messages: params.Messages}); err != nil {
		t.Fatalf("v1 Beta.Messages.CountTokens: %v", err)
	}
	want := []string{"/v1/messages?beta=true", "/v1/messages?beta=true", "/v1/messages/count_tokens?beta=true"}
	if got := gw.rec.urlsSoFar(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("upstream got %q, want %q", got, want)
	}
}
