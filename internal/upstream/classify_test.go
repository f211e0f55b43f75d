package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/upstream"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	ra := func(e upstream.APIError) *upstream.APIError {
		e.HasRetryAfter, e.RetryAfter = true, 5*time.Second
		return &e
	}
	tests := []struct {
		name string
		err  error
		want upstream.Class
	}{
		{name: "nil", err: nil, want: upstream.OK},
		{name: "400", err: &upstream.APIError{Status: 400, Type: "invalid_request_error"}, want: upstream.Final},
		{name: "403", err: &upstream.APIError{Status: 403, Type: "permission_error"}, want: upstream.Final},
		{name: "404", err: &upstream.APIError{Status: 404, Type: "not_found_error"}, want: upstream.Final},
		{name: "413", err: &upstream.APIError{Status: 413, Type: "request_too_large"}, want: upstream.Final},
		{name: "422", err: &upstream.APIError{Status: 422}, want: upstream.Final},
		{name: "401", err: &upstream.APIError{Status: 401, Type: "authentication_error"}, want: upstream.Stop},
		{name: "402", err: &upstream.APIError{Status: 402, Type: "billing_error"}, want: upstream.Stop},
		{name: "400 org spend limit", err: &upstream.APIError{Status: 400, Message: "You have reached your specified API usage limits. You will regain access on 2026-12-01 at 00:00 UTC."}, want: upstream.Stop},
		{name: "400 workspace spend limit", err: &upstream.APIError{Status: 400, Message: "You have reached your specified workspace API usage limits."}, want: upstream.Stop},
		{name: "408", err: &upstream.APIError{Status: 408}, want: upstream.Retry},
		{name: "409", err: &upstream.APIError{Status: 409, Type: "conflict_error"}, want: upstream.Retry},
		{name: "500", err: &upstream.APIError{Status: 500, Type: "api_error"}, want: upstream.Retry},
		{name: "502", err: &upstream.APIError{Status: 502}, want: upstream.Retry},
		{name: "504", err: &upstream.APIError{Status: 504, Type: "timeout_error"}, want: upstream.Retry},
		{name: "529", err: &upstream.APIError{Status: 529, Type: "overloaded_error"}, want: upstream.Overloaded},
		{name: "529 should-retry true", err: &upstream.APIError{Status: 529, ShouldRetry: 1}, want: upstream.Overloaded},
		{name: "529 should-retry false", err: &upstream.APIError{Status: 529, ShouldRetry: -1}, want: upstream.Final},
		{name: "429 retry-after", err: ra(upstream.APIError{Status: 429, Type: "rate_limit_error"}), want: upstream.RateLimited},
		{name: "429 retry-after 0", err: &upstream.APIError{Status: 429, HasRetryAfter: true}, want: upstream.RateLimited},
		{name: "429 ramp", err: ra(upstream.APIError{Status: 429, ErrorCode: upstream.CodeRampLimit}), want: upstream.RateLimited},
		{name: "429 spend cap", err: &upstream.APIError{Status: 429, ErrorCode: upstream.CodeSpendLimit}, want: upstream.Stop},
		{name: "429 spend cap with retry-after", err: ra(upstream.APIError{Status: 429, ErrorCode: upstream.CodeSpendLimit}), want: upstream.Stop},
		{name: "429 spend cap should-retry true", err: &upstream.APIError{Status: 429, ErrorCode: upstream.CodeSpendLimit, ShouldRetry: 1}, want: upstream.Stop},
		{name: "429 contract cap", err: ra(upstream.APIError{Status: 429, ErrorCode: upstream.CodeContractSpendLimit}), want: upstream.Stop},
		{name: "429 no retry-after", err: &upstream.APIError{Status: 429}, want: upstream.Stop},
		{name: "429 no retry-after should-retry true", err: &upstream.APIError{Status: 429, ShouldRetry: 1}, want: upstream.RateLimited},
		{name: "429 should-retry false", err: ra(upstream.APIError{Status: 429, ShouldRetry: -1}), want: upstream.Final},
		{name: "500 should-retry false", err: &upstream.APIError{Status: 500, ShouldRetry: -1}, want: upstream.Final},
		{name: "400 should-retry true", err: &upstream.APIError{Status: 400, ShouldRetry: 1}, want: upstream.Retry},
		{name: "401 should-retry true", err: &upstream.APIError{Status: 401, ShouldRetry: 1}, want: upstream.Stop},
		{name: "wrapped 529", err: fmt.Errorf("job 7: %w", &upstream.APIError{Status: 529}), want: upstream.Overloaded},
		{name: "transport", err: &upstream.TransportError{Op: "POST /v1/messages", Err: io.ErrUnexpectedEOF}, want: upstream.Retry},
		{name: "transport timeout", err: &upstream.TransportError{Timeout: true, Err: context.DeadlineExceeded}, want: upstream.Retry},
		{name: "transport should-retry false", err: &upstream.TransportError{ShouldRetry: -1}, want: upstream.Final},
		{name: "transport maybe delivered", err: &upstream.TransportError{MaybeDelivered: true}, want: upstream.Final},
		{name: "transport too large", err: &upstream.TransportError{TooLarge: true}, want: upstream.Final},
		{name: "canceled", err: fmt.Errorf("upstream: x: %w", context.Canceled), want: upstream.Canceled},
		{name: "deadline", err: context.DeadlineExceeded, want: upstream.Canceled},
		{name: "other", err: errors.New("build request: bad"), want: upstream.Final},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := upstream.Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	want := map[upstream.Class]string{
		upstream.OK: "ok", upstream.Final: "final", upstream.Retry: "retry", upstream.RateLimited: "rate_limited",
		upstream.Overloaded: "overloaded", upstream.Stop: "stop", upstream.Canceled: "canceled", upstream.Class(99): "Class(99)",
	}
	for c, s := range want {
		if c.String() != s {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), c.String(), s)
		}
	}
}

func TestAPIErrorString(t *testing.T) {
	t.Parallel()
	e := &upstream.APIError{Status: 429, Type: "rate_limit_error", ErrorCode: "enforced_spend_limit_reached", Message: "You have reached", RequestID: "req_1"}
	want := "upstream: 429 rate_limit_error (enforced_spend_limit_reached): You have reached [request_id req_1]"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}
