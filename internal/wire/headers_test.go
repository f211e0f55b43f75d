package wire

import (
	"net/http"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestParseRateLimitHeadersFull(t *testing.T) {
	t.Parallel()
	h := header(
		"anthropic-ratelimit-requests-limit", "1000",
		"anthropic-ratelimit-requests-remaining", "999",
		"anthropic-ratelimit-requests-reset", "2026-11-26T12:00:00.06Z",
		"anthropic-ratelimit-input-tokens-limit", "2000000",
		"anthropic-ratelimit-input-tokens-remaining", "1998000",
		"anthropic-ratelimit-input-tokens-reset", "2026-11-26T12:00:01Z",
		"anthropic-ratelimit-output-tokens-limit", "400000",
		"anthropic-ratelimit-output-tokens-remaining", "400000",
		"anthropic-ratelimit-output-tokens-reset", "2026-11-26T13:00:00+01:00",
		"anthropic-ratelimit-tokens-limit", "2400000",
		"anthropic-ratelimit-tokens-remaining", "2398000",
		"anthropic-ratelimit-tokens-reset", "2026-11-26T12:00:01Z",
		"Retry-After", "7",
		"x-should-retry", "true",
		"Request-Id", "req_018EeWyXxfu5pfWkrYcMdjWG",
	)
	got := ParseRateLimitHeadersAt(h, testNow)
	want := RateLimitHeaders{
		Requests:      LimitState{Valid: true, Limit: 1000, Remaining: 999, Reset: testNow.Add(60 * time.Millisecond)},
		InputTokens:   LimitState{Valid: true, Limit: 2000000, Remaining: 1998000, Reset: testNow.Add(time.Second)},
		OutputTokens:  LimitState{Valid: true, Limit: 400000, Remaining: 400000, Reset: testNow},
		Tokens:        LimitState{Valid: true, Limit: 2400000, Remaining: 2398000, Reset: testNow.Add(time.Second)},
		RetryAfter:    7 * time.Second,
		HasRetryAfter: true,
		ShouldRetry:   1,
		RequestID:     "req_018EeWyXxfu5pfWkrYcMdjWG",
	}
	if !sameHeaders(got, want) {
		t.Errorf("ParseRateLimitHeadersAt(full) =\n%+v\nwant\n%+v", got, want)
	}
}

// sameHeaders compares with time.Time.Equal, since zones differ.
func sameHeaders(a, b RateLimitHeaders) bool {
	eq := func(x, y LimitState) bool {
		return x.Valid == y.Valid && x.Limit == y.Limit && x.Remaining == y.Remaining && x.Reset.Equal(y.Reset)
	}
	return eq(a.Requests, b.Requests) && eq(a.InputTokens, b.InputTokens) && eq(a.OutputTokens, b.OutputTokens) &&
		eq(a.Tokens, b.Tokens) && a.RetryAfter == b.RetryAfter && a.HasRetryAfter == b.HasRetryAfter &&
		a.ShouldRetry == b.ShouldRetry && a.RequestID == b.RequestID
}

func TestParseRateLimitHeadersLimitState(t *testing.T) {
	t.Parallel()
	const p = "anthropic-ratelimit-requests-"
	tests := []struct {
		name string
		h    http.Header
		want LimitState
	}{
		{name: "absent", h: header(), want: LimitState{}},
		{name: "no reset", h: header(p+"limit", "50", p+"remaining", "0"), want: LimitState{Valid: true, Limit: 50}},
		{name: "spaces", h: header(p+"limit", " 50 ", p+"remaining", "3", p+"reset", " 2026-11-26T12:00:00Z "), want: LimitState{Valid: true, Limit: 50, Remaining: 3, Reset: testNow}},
		{name: "limit missing", h: header(p+"remaining", "3"), want: LimitState{}},
		{name: "remaining missing", h: header(p+"limit", "3"), want: LimitState{}},
		{name: "negative", h: header(p+"limit", "50", p+"remaining", "-1"), want: LimitState{}},
		{name: "plus sign", h: header(p+"limit", "+50", p+"remaining", "1"), want: LimitState{}},
		{name: "float", h: header(p+"limit", "50.5", p+"remaining", "1"), want: LimitState{}},
		{name: "overflow", h: header(p+"limit", "99999999999999999999", p+"remaining", "1"), want: LimitState{}},
		{name: "garbage", h: header(p+"limit", "lots", p+"remaining", "1"), want: LimitState{}},
		{name: "bad reset", h: header(p+"limit", "50", p+"remaining", "1", p+"reset", "soon"), want: LimitState{}},
		{name: "unix reset", h: header(p+"limit", "50", p+"remaining", "1", p+"reset", "1764158400"), want: LimitState{}},
		{name: "http-date reset", h: header(p+"limit", "50", p+"remaining", "1", p+"reset", "Thu, 26 Nov 2026 12:00:00 GMT"), want: LimitState{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ParseRateLimitHeadersAt(tt.h, testNow).Requests
			if got.Valid != tt.want.Valid || got.Limit != tt.want.Limit || got.Remaining != tt.want.Remaining || !got.Reset.Equal(tt.want.Reset) {
				t.Errorf("Requests = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		h      http.Header
		want   time.Duration
		wantOK bool
	}{
		{name: "absent", h: header()},
		{name: "seconds", h: header("retry-after", "12"), want: 12 * time.Second, wantOK: true},
		{name: "float seconds", h: header("retry-after", "1.5"), want: 1500 * time.Millisecond, wantOK: true},
		{name: "zero", h: header("retry-after", "0"), want: 0, wantOK: true},
		{name: "negative", h: header("retry-after", "-3"), want: 0, wantOK: true},
		{name: "ms first", h: header("retry-after-ms", "250.5", "retry-after", "9"), want: 250500 * time.Microsecond, wantOK: true},
		{name: "bad ms falls through", h: header("retry-after-ms", "x", "retry-after", "9"), want: 9 * time.Second, wantOK: true},
		{name: "ms only", h: header("retry-after-ms", "40"), want: 40 * time.Millisecond, wantOK: true},
		{name: "http date", h: header("retry-after", "Thu, 26 Nov 2026 12:00:30 GMT"), want: 30 * time.Second, wantOK: true},
		{name: "rfc850 date", h: header("retry-after", "Thursday, 26-Nov-26 12:01:00 GMT"), want: time.Minute, wantOK: true},
		{name: "past date", h: header("retry-after", "Thu, 26 Nov 2026 11:00:00 GMT"), want: 0, wantOK: true},
		{name: "huge", h: header("retry-after", "1e300"), want: maxRetryAfter, wantOK: true},
		{name: "far date", h: header("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"), want: maxRetryAfter, wantOK: true},
		{name: "NaN", h: header("retry-after", "NaN")},
		{name: "Inf", h: header("retry-after", "+Inf")},
		{name: "garbage", h: header("retry-after", "soon")},
		{name: "empty", h: header("retry-after", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseRetryAfter(tt.h, testNow)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseRetryAfter(%v) = %v, %v, want %v, %v", tt.h, got, ok, tt.want, tt.wantOK)
			}
			rl := ParseRateLimitHeadersAt(tt.h, testNow)
			if rl.RetryAfter != tt.want || rl.HasRetryAfter != tt.wantOK {
				t.Errorf("ParseRateLimitHeadersAt(%v) retry = %v, %v, want %v, %v", tt.h, rl.RetryAfter, rl.HasRetryAfter, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseShouldRetry(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]int{"true": 1, "false": -1, "": 0, "TRUE": 0, "1": 0, "maybe": 0, " true ": 1} {
		if got := ParseShouldRetry(v); got != want {
			t.Errorf("ParseShouldRetry(%q) = %d, want %d", v, got, want)
		}
	}
}

func TestParseRateLimitHeadersNil(t *testing.T) {
	t.Parallel()
	if got := ParseRateLimitHeaders(nil); got != (RateLimitHeaders{}) {
		t.Errorf("ParseRateLimitHeaders(nil) = %+v, want zero", got)
	}
}

func FuzzParseRateLimitHeaders(f *testing.F) {
	f.Add("1000", "999", "2026-11-26T12:00:00Z", "12", "", "true", "req_1")
	f.Add("-1", "x", "2026-13-99T99:99:99Z", "NaN", "1e309", "false", "")
	f.Add("99999999999999999999", "0", "Thu, 26 Nov 2026 12:00:30 GMT", "Thu, 26 Nov 2026 12:00:30 GMT", "-0", "", "\x00")
	f.Fuzz(func(t *testing.T, limit, remaining, reset, retryAfter, retryAfterMs, shouldRetry, reqID string) {
		h := http.Header{}
		for _, p := range []string{"requests", "input-tokens", "output-tokens", "tokens"} {
			h["Anthropic-Ratelimit-"+p+"-Limit"] = []string{limit}
			h["Anthropic-Ratelimit-"+p+"-Remaining"] = []string{remaining}
			h["Anthropic-Ratelimit-"+p+"-Reset"] = []string{reset}
		}
		h.Set("retry-after", retryAfter)
		h.Set("retry-after-ms", retryAfterMs)
		h.Set("x-should-retry", shouldRetry)
		h.Set("request-id", reqID)
		got := ParseRateLimitHeadersAt(h, testNow)
		for _, s := range []LimitState{got.Requests, got.InputTokens, got.OutputTokens, got.Tokens} {
			if s.Valid && (s.Limit < 0 || s.Remaining < 0) {
				t.Fatalf("valid state with negative numbers: %+v", s)
			}
			if !s.Valid && s != (LimitState{}) {
				t.Fatalf("invalid state is not zero: %+v", s)
			}
		}
		if got.RetryAfter < 0 || got.RetryAfter > maxRetryAfter {
			t.Fatalf("RetryAfter = %v, out of [0, %v]", got.RetryAfter, maxRetryAfter)
		}
		if !got.HasRetryAfter && got.RetryAfter != 0 {
			t.Fatalf("RetryAfter = %v without HasRetryAfter", got.RetryAfter)
		}
		if got.ShouldRetry < -1 || got.ShouldRetry > 1 {
			t.Fatalf("ShouldRetry = %d", got.ShouldRetry)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "1.5", "-3", "1e300", "NaN", "Inf", "0x10", "Thu, 26 Nov 2026 12:00:30 GMT", "Mon Jan  2 15:04:05 2006", "٣"} {
		f.Add(s, "")
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, retryAfter, retryAfterMs string) {
		h := http.Header{}
		h.Set("retry-after", retryAfter)
		h.Set("retry-after-ms", retryAfterMs)
		d, ok := ParseRetryAfter(h, testNow)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q, %q) = %v, out of range", retryAfter, retryAfterMs, d)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q, %q) = %v, false", retryAfter, retryAfterMs, d)
		}
	})
}
