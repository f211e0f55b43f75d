package wire

import "time"

// LimitState is one limit as a response's anthropic-ratelimit-* headers report it.
// Valid is false when the headers were absent or unparsable.
type LimitState struct {
	Valid     bool
	Limit     int64
	Remaining int64
	// Reset is when the bucket will be full again.
	Reset time.Time
}

// RateLimitHeaders are the rate-limit facts of one response (anthropic-api.md 1.6).
type RateLimitHeaders struct {
	Requests     LimitState // anthropic-ratelimit-requests-*
	InputTokens  LimitState // anthropic-ratelimit-input-tokens-*
	OutputTokens LimitState // anthropic-ratelimit-output-tokens-*
	Tokens       LimitState // anthropic-ratelimit-tokens-* (most restrictive, or combined)
	// RetryAfter is the retry-after (or retry-after-ms) wait; HasRetryAfter says if sent.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// ShouldRetry is x-should-retry: 1 true, -1 false, 0 absent.
	ShouldRetry int
	RequestID   string
}
