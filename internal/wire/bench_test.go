package wire

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkParseMessageRequest parses typical bodies: the small request the load
// generator sends, one with tools, one with block content and an 8 KiB prompt; the reference
// sub-benchmarks run parseSlow, the encoding/json decoder the fast path falls back to.
func BenchmarkParseMessageRequest(b *testing.B) {
	bodies := []struct {
		name string
		body string
	}{
		{name: "small", body: `{"model":"claude-haiku-4-5","max_tokens":256,"system":"You are terse.","messages":[{"role":"user","content":"Write a haiku about load testing."}]}`},
		{name: "tools", body: seedBodies[4]},
		{name: "blocks", body: seedBodies[5]},
		{name: "8KiB", body: `{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"` + strings.Repeat("Summarise the following text. ", 280) + `"}]}`},
	}
	parsers := []struct {
		name  string
		parse func([]byte, ParseOptions) (*MessageRequest, error)
	}{
		{name: "", parse: ParseMessageRequest},
		{name: "/reference", parse: parseSlow},
	}
	for _, bb := range bodies {
		for _, p := range parsers {
			b.Run(bb.name+p.name, func(b *testing.B) {
				body := []byte(bb.body)
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if _, err := p.parse(body, ParseOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkParseRateLimitHeaders reads the headers of one emulator answer, as the
// limiter does on every call it settles (the four buckets, retry hints, request-id).
func BenchmarkParseRateLimitHeaders(b *testing.B) {
	h := http.Header{}
	for _, d := range []string{"requests", "input-tokens", "output-tokens", "tokens"} {
		h.Set("anthropic-ratelimit-"+d+"-limit", "2000000")
		h.Set("anthropic-ratelimit-"+d+"-remaining", "1998000")
		h.Set("anthropic-ratelimit-"+d+"-reset", "2026-11-26T12:00:00.06Z")
	}
	h.Set("request-id", "req_011CUn7tQ3ZJ5Yhvd9cKFNh8")
	h.Set("content-type", "application/json")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if r := ParseRateLimitHeadersAt(h, now); !r.Tokens.Valid {
			b.Fatal("tokens bucket not read")
		}
	}
}
