// Package emulator is a faithful local Anthropic API for tests and load tests: a
// Server that answers the official SDKs, or any HTTP client, as the API would, with no
// key and no network, so code that calls Claude can be tested at Tier 1, under 529
// overloads or at a spend cap without paying for a token. `clade emulate` is this
// package behind a command line.
//
// It serves the Messages API (plain and streaming), Token Counting, Message Batches
// (create, retrieve, list, cancel, delete, results) and Models, with:
//   - one organisation's rate limits for the configured tier, per model class, as
//     continuously refilling request, input-token and output-token buckets that answer
//     429 with retry-after and the anthropic-ratelimit-* headers;
//   - prompt caching at cache_control breakpoints, per model, with real-time TTLs;
//   - a per-class latency model (time to first token, output tokens per second);
//   - injected faults (overloads, bursts, mid-stream errors, dropped connections, slow
//     starts, ramp and spend-cap 429s, any API error type), set in Config.Faults and
//     changed while running with Server.SetFaults or PUT /_emulator/faults;
//   - a batch clock that can run faster than real time or be advanced at once, so a
//     batch's 24-hour expiry and 29-day archiving can be tested in seconds;
//   - Prometheus metrics at /metrics, with labels from closed sets only.
//
// What a client can see follows the API's wire facts to the byte: status codes, error
// envelopes, request-id, rate-limit and retry-after headers, SSE framing, batch objects
// and results JSONL, for both versions the SDKs send (2023-06-01 with x-api-key from
// SDK v1, 2026-10-21 with Authorization: Bearer from Go SDK v2). The models, classes,
// tiers and limits are package catalog's. What is synthetic is deterministic: outputs
// are filler text drawn from Config.Seed and the request body (the same seed and body
// give the same response, whatever the concurrency), and tokens are counted by one fixed
// rule used everywhere (count_tokens, usage, the buckets), not Claude's tokenizer.
// Rate-limit buckets and the cache use real time (Config.Now); only the batch lifecycle
// uses the batch clock (Config.ClockSpeed, Server.Clock).
//
// In a Go test, Start serves an emulator on a free loopback port; point the client at
// its URL and close it when done:
//
//	em, err := emulator.Start(emulator.Config{Tier: "tier-1"})
//	if err != nil {
//		t.Fatal(err)
//	}
//	defer em.Close()
//	client := anthropic.NewClient(
//		option.WithoutEnvironmentDefaults(),
//		option.WithBaseURL(em.URL),
//		option.WithAPIKey("test"),
//	)
//
// StartTB does the same, fails the test if the emulator cannot start and closes it at
// cleanup. New returns the Server as an http.Handler for httptest.NewServer or a mux of
// your own; Server.Run and Server.Serve serve it until ctx ends, then shut down
// gracefully. The zero Config is usable: the embedded catalog, tier "start", any
// non-empty key, latency off (clade emulate's default is a latency scale of 1), and a
// real-time batch clock. A Config that cannot be honoured (an unknown tier, a negative
// clock speed or latency scale, a burst fraction above 1, invalid faults) is an error
// from New or Start, never silently replaced.
//
// docs/emulator.md describes every behaviour in full, the flags of clade emulate, and
// where the emulator differs from the real API.
package emulator
