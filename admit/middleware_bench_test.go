package admit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

// benchAnswer is an in-memory API: every call is answered with body, with headers as
// the emulator sends them (rate-limit headers of limits that never bind), so a
// benchmark measures the middleware and not the network.
func benchAnswer(contentType string, body []byte) func(*http.Request) (*http.Response, error) {
	h := http.Header{
		"Content-Type":              {contentType},
		"Request-Id":                {"req_011CbenchXXXXXXXXXXXXXXXXX"},
		"Anthropic-Organization-Id": {"00000000-0000-4000-8000-00000000c1ad"},
	}
	for _, l := range []string{"Requests", "Input-Tokens", "Output-Tokens", "Tokens"} {
		h["Anthropic-Ratelimit-"+l+"-Limit"] = []string{"1000000000000"}
		h["Anthropic-Ratelimit-"+l+"-Remaining"] = []string{"999999000000"}
		h["Anthropic-Ratelimit-"+l+"-Reset"] = []string{"2026-11-26T12:00:00Z"}
	}
	return func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: req}, nil
	}
}

// benchMessage is a JSON Message of about 100 output tokens, as the emulator writes it.
var benchMessage = []byte(`{"id":"msg_01XbenchXXXXXXXXXXXXXXXXX","type":"message","role":"assistant","model":"claude-haiku-4-5",` +
	`"content":[{"type":"text","text":"` + strings.Repeat("the and for are ", 25) + `"}],"stop_reason":"end_turn","stop_sequence":null,` +
	`"usage":{"input_tokens":19,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":100,"service_tier":"standard"}}`)

// benchStream is the same answer as an SSE stream of 20 deltas of 5 tokens.
var benchStream = func() []byte {
	var b bytes.Buffer
	ev := func(name, data string) { fmt.Fprintf(&b, "event: %s\ndata: %s\n\n", name, data) }
	ev("message_start", `{"type":"message_start","message":{"id":"msg_01XbenchXXXXXXXXXXXXXXXXX","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":19,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}`)
	ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	ev("ping", `{"type":"ping"}`)
	for range 20 {
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"the and for are not "}}`)
	}
	ev("content_block_stop", `{"type":"content_block_stop","index":0}`)
	ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":19,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":100}}`)
	ev("message_stop", `{"type":"message_stop"}`)
	return b.Bytes()
}()

// passThrough is the baseline middleware: it only calls next.
func passThrough(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	return next(req)
}

// BenchmarkMiddleware is one Messages call through a middleware, answered in memory
// and read to the end as the SDK does: passthrough is the baseline (a middleware that
// only calls next), admit is Limiter.Middleware on limits that never bind (read the
// body, estimate, Wait, wrap the answer, commit its usage at the end). admit ÷
// passthrough is the middleware's own cost per call.
func BenchmarkMiddleware(b *testing.B) {
	body, err := json.Marshal(anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 300,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt(1)))}})
	if err != nil {
		b.Fatal(err)
	}
	for _, answer := range []struct {
		name, contentType string
		body              []byte
	}{
		{"json", "application/json", benchMessage},
		{"stream", "text/event-stream; charset=utf-8", benchStream},
	} {
		next := benchAnswer(answer.contentType, answer.body)
		lim := benchLimiter(b, nil)
		for _, mw := range []struct {
			name string
			mw   func(*http.Request, func(*http.Request) (*http.Response, error)) (*http.Response, error)
		}{
			{"passthrough", passThrough},
			{"admit", lim.Middleware},
		} {
			b.Run(answer.name+"/"+mw.name, func(b *testing.B) {
				req, err := http.NewRequest(http.MethodPost, "https://api.anthropic.com/v1/messages", bytes.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				b.ReportAllocs()
				for b.Loop() {
					resp, err := mw.mw(req, next)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, resp.Body); err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
				}
			})
		}
	}
}

// BenchmarkMiddlewareSDK puts BenchmarkMiddleware in proportion: a whole
// client.Messages.New (or a NewStreaming read to its end) of the official SDK v2,
// over an http.Client whose transport answers in memory, without a middleware (none)
// and with Limiter.Middleware (admit). admit − none is the middleware's cost, none
// the SDK's own.
func BenchmarkMiddlewareSDK(b *testing.B) {
	params := anthropic.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 300,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt(1)))}}
	for _, answer := range []struct {
		name, contentType string
		body              []byte
	}{
		{"json", "application/json", benchMessage},
		{"stream", "text/event-stream; charset=utf-8", benchStream},
	} {
		hc := &http.Client{Transport: roundTrip(benchAnswer(answer.contentType, answer.body))}
		for _, mw := range []string{"none", "admit"} {
			b.Run(answer.name+"/"+mw, func(b *testing.B) {
				opts := []option.RequestOption{option.WithoutEnvironmentDefaults(), option.WithHTTPClient(hc),
					option.WithBaseURL("https://api.anthropic.com"), option.WithAPIKey("sk-ant-bench")}
				if mw == "admit" {
					opts = append(opts, option.WithMiddleware(benchLimiter(b, nil).Middleware))
				}
				client := anthropic.NewClient(opts...)
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if answer.name == "json" {
						m, err := client.Messages.New(ctx, params)
						if err != nil || m.Usage.OutputTokens != 100 {
							b.Fatalf("Messages.New = %v output tokens, %v", m.Usage.OutputTokens, err)
						}
						continue
					}
					s := client.Messages.NewStreaming(ctx, params)
					n := 0
					for s.Next() {
						n++
					}
					if err := s.Err(); err != nil || n == 0 {
						b.Fatalf("NewStreaming = %d events, %v", n, err)
					}
					s.Close()
				}
			})
		}
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
