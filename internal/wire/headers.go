package wire

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Rate-limit and retry header names (anthropic-api.md 1.6, 2.2).
const (
	HeaderRequestID    = "request-id"
	HeaderRetryAfter   = "retry-after"
	HeaderRetryAfterMs = "retry-after-ms"
	HeaderShouldRetry  = "x-should-retry"
)

// maxRetryAfter bounds a parsed retry-after so that a huge or hostile value cannot
// overflow time.Duration. The API never asks for more than a month (a spend cap sends
// no retry-after at all), so anything longer is clamped, not rejected.
const maxRetryAfter = 31 * 24 * time.Hour

// ParseRateLimitHeaders reads the rate-limit facts of one response, with retry-after
// HTTP dates measured from time.Now. See ParseRateLimitHeadersAt.
func ParseRateLimitHeaders(h http.Header) RateLimitHeaders {
	return ParseRateLimitHeadersAt(h, time.Now())
}

// ParseRateLimitHeadersAt reads the anthropic-ratelimit-{requests,input-tokens,
// output-tokens,tokens}-{limit,remaining,reset} headers, retry-after-ms / retry-after,
// x-should-retry and request-id. now turns a retry-after HTTP date into a wait.
//
// A LimitState is Valid only when its limit and remaining are non-negative integers
// and its reset, if sent, is an RFC 3339 time; any garbage makes it invalid rather than
// half-filled. It never panics, whatever the header values.
func ParseRateLimitHeadersAt(h http.Header, now time.Time) RateLimitHeaders {
	var r RateLimitHeaders
	if h == nil {
		return r
	}
	r.Requests = parseLimit(h, requestsKeys)
	r.InputTokens = parseLimit(h, inputKeys)
	r.OutputTokens = parseLimit(h, outputKeys)
	r.Tokens = parseLimit(h, tokensKeys)
	r.RetryAfter, r.HasRetryAfter = ParseRetryAfter(h, now)
	r.ShouldRetry = ParseShouldRetry(get(h, keyShouldRetry))
	r.RequestID = strings.TrimSpace(get(h, keyRequestID))
	return r
}

// limitKeys are one bucket's header names as http.Header keys them (canonical):
// looked up as they are, each call builds and canonicalizes no name (twelve of
// them a response, on every call the limiter settles).
type limitKeys struct{ limit, remaining, reset string }

func keysOf(prefix string) limitKeys {
	c := http.CanonicalHeaderKey
	return limitKeys{c(prefix + "limit"), c(prefix + "remaining"), c(prefix + "reset")}
}

var (
	requestsKeys    = keysOf("anthropic-ratelimit-requests-")
	inputKeys       = keysOf("anthropic-ratelimit-input-tokens-")
	outputKeys      = keysOf("anthropic-ratelimit-output-tokens-")
	tokensKeys      = keysOf("anthropic-ratelimit-tokens-")
	keyRetryAfter   = http.CanonicalHeaderKey(HeaderRetryAfter)
	keyRetryAfterMs = http.CanonicalHeaderKey(HeaderRetryAfterMs)
	keyShouldRetry  = http.CanonicalHeaderKey(HeaderShouldRetry)
	keyRequestID    = http.CanonicalHeaderKey(HeaderRequestID)
)

// get is h.Get of a canonical key: the same value, without canonicalizing it.
func get(h http.Header, canonical string) string {
	if v := h[canonical]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func parseLimit(h http.Header, k limitKeys) LimitState {
	limit, okL := parseCount(get(h, k.limit))
	remaining, okR := parseCount(get(h, k.remaining))
	if !okL || !okR {
		return LimitState{}
	}
	s := LimitState{Valid: true, Limit: limit, Remaining: remaining}
	if v := strings.TrimSpace(get(h, k.reset)); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return LimitState{}
		}
		s.Reset = t
	}
	return s
}

// parseCount parses a non-negative decimal integer header value.
func parseCount(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	if v == "" || v[0] == '+' || v[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// ParseRetryAfter returns the wait a response asks for, the way both official SDKs
// read it: retry-after-ms (float milliseconds) first, then retry-after as float
// seconds or an HTTP date (RFC 1123 and the other forms http.ParseTime accepts),
// measured from now. A header that does not parse is ignored, so a garbled
// retry-after-ms falls through to retry-after. Negative waits and dates in the past
// give 0 (still reported as sent); waits beyond a month are clamped to a month.
func ParseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if h == nil {
		return 0, false
	}
	if d, ok := parseFloatDuration(get(h, keyRetryAfterMs), float64(time.Millisecond)); ok {
		return d, true
	}
	v := strings.TrimSpace(get(h, keyRetryAfter))
	if v == "" {
		return 0, false
	}
	if d, ok := parseFloatDuration(v, float64(time.Second)); ok {
		return d, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return clampWait(float64(t.Sub(now))), true
	}
	return 0, false
}

func parseFloatDuration(v string, unit float64) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return clampWait(f * unit), true
}

// clampWait converts nanoseconds to a Duration in [0, maxRetryAfter]; the float
// comparison comes first because converting an out-of-range float to int64 is not
// defined.
func clampWait(ns float64) time.Duration {
	switch {
	case !(ns > 0): // also NaN
		return 0
	case ns >= float64(maxRetryAfter):
		return maxRetryAfter
	}
	return time.Duration(ns)
}

// ParseShouldRetry reads x-should-retry: 1 for "true", -1 for "false", 0 otherwise.
// Like the SDKs, only the exact lower-case words count.
func ParseShouldRetry(v string) int {
	switch strings.TrimSpace(v) {
	case "true":
		return 1
	case "false":
		return -1
	}
	return 0
}
