package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clade-dev/clade/internal/wire"
)

// Error codes of error.details.error_code that clade acts on (anthropic-api.md 1.5, 10).
const (
	CodeSpendLimit         = "enforced_spend_limit_reached"
	CodeContractSpendLimit = "contract_spend_limit_reached"
	CodeRampLimit          = "ramp_limit_exceeded"
)

// APIError is an error response from the API (any status outside 2xx), with what the
// retry decision and an errored result line need.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Type is error.type (e.g. rate_limit_error). For a body that is not an error
	// envelope (a proxy's HTML page), it is the type the API uses for Status.
	Type string
	// Message is error.message, or the start of a non-envelope body.
	Message string
	// RequestID is the request-id header, else the envelope's request_id.
	RequestID string
	// RetryAfter is the retry-after-ms / retry-after wait; HasRetryAfter says if sent.
	RetryAfter    time.Duration
	HasRetryAfter bool
	// ErrorCode is error.details.error_code (e.g. enforced_spend_limit_reached), or "".
	ErrorCode string
	// ShouldRetry is x-should-retry: 1 true, -1 false, 0 absent.
	ShouldRetry int
	// RateLimit holds the response's rate-limit headers (429s carry them), parsed.
	RateLimit wire.RateLimitHeaders
	// Header is the response's headers, to settle an admission with (admit).
	Header http.Header
	// Body is the full error envelope, {"type":"error","error":{...},"request_id":...},
	// as an errored result line embeds it. When the API sent something else, it is an
	// envelope built from Status, Type and Message.
	Body []byte
}

// maxErrorText bounds Message in Error() so a large HTML error page stays readable.
const maxErrorText = 300

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream: %d %s", e.Status, e.Type)
	if e.ErrorCode != "" {
		fmt.Fprintf(&b, " (%s)", e.ErrorCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(truncate(e.Message, maxErrorText))
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [request_id %s]", e.RequestID)
	}
	return b.String()
}

// Class is Classify(e).
func (e *APIError) Class() Class { return Classify(e) }

// Retryable reports whether resending the same request may succeed.
func (e *APIError) Retryable() bool { return Classify(e).Retryable() }

// SpendCap reports whether e is the tier's (or a contract's) monthly spend cap: a 429
// that no retry can cure until the cap resets.
func (e *APIError) SpendCap() bool {
	return e.Status == http.StatusTooManyRequests &&
		(e.ErrorCode == CodeSpendLimit || e.ErrorCode == CodeContractSpendLimit)
}

// TransportError is a call that got no usable response: the connection failed or
// dropped, the attempt timed out, or the body could not be read or decoded.
type TransportError struct {
	// Op names the call, e.g. "POST /v1/messages".
	Op string
	// Status is the HTTP status if headers arrived before the failure, else 0.
	Status int
	// RequestID is the request-id header, if headers arrived.
	RequestID string
	// Timeout is set when the client's per-call timeout (Config.RequestTimeout) ran
	// out. The caller's own ctx ending is not a TransportError.
	Timeout bool
	// MaybeDelivered is set for a non-idempotent call (batch create) that failed after
	// the request may have reached the API: resending could duplicate it. List batches
	// first. Classify treats it as Final.
	MaybeDelivered bool
	// TooLarge is set when the body exceeded Config.MaxResponseBytes (not retried).
	TooLarge bool
	// ShouldRetry is x-should-retry when headers arrived: 1 true, -1 false, 0 absent.
	ShouldRetry int
	Err         error
}

func (e *TransportError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream: %s: ", e.Op)
	switch {
	case e.Timeout:
		b.WriteString("timed out: ")
	case e.TooLarge:
		b.WriteString("response too large: ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("transport error")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (after status %d)", e.Status)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [request_id %s]", e.RequestID)
	}
	return b.String()
}

func (e *TransportError) Unwrap() error { return e.Err }

// Retryable reports whether resending may succeed.
func (e *TransportError) Retryable() bool { return Classify(e).Retryable() }

// Class is what a failed call means for the request and for the run. Classify is the
// only place that decides it.
type Class int

const (
	// OK: no error.
	OK Class = iota
	// Final: the request itself is wrong (400, 404, 413, 403, ...); resending it
	// unchanged fails the same way. Record it as errored.
	Final
	// Retry: a transient failure (408, 409, 5xx other than 529, connection errors,
	// timeouts); back off and resend.
	Retry
	// RateLimited: a 429 with retry-after; wait at least that long and pause the model
	// class (the admission layer's job), then resend.
	RateLimited
	// Overloaded: 529, load across all users, not our quota; back off, shrink
	// concurrency and resend.
	Overloaded
	// Stop: no request can succeed until a person acts (spend cap, bad key, billing);
	// stop the run cleanly and do not count the request as failed.
	Stop
	// Canceled: the caller's ctx ended; the request goes back to the queue without
	// counting as an attempt.
	Canceled
)

var classNames = [...]string{"ok", "final", "retry", "rate_limited", "overloaded", "stop", "canceled"}

// String returns a stable snake_case name, fit for a metric label.
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Retryable reports whether the request should be sent again (after Backoff.Delay).
func (c Class) Retryable() bool { return c == Retry || c == RateLimited || c == Overloaded }

// Classify is the one retry decision (anthropic-api.md 1.5, 2.2):
//
//	nil                                                  OK
//	caller's ctx canceled or past its deadline           Canceled
//	429 with error_code enforced_spend_limit_reached or
//	    contract_spend_limit_reached (spend cap)          Stop
//	429 without retry-after, unless x-should-retry: true Stop (a spend cap without its code)
//	401 authentication_error, 402 billing_error          Stop (every request would fail)
//	400 "You have reached your specified ... usage limits" Stop (user-set spend limit)
//	x-should-retry: false                                Final
//	429 (with retry-after, or x-should-retry: true)      RateLimited
//	529                                                  Overloaded
//	x-should-retry: true                                 Retry
//	408, 409, 5xx                                        Retry
//	other statuses                                       Final
//	*TransportError                                      Retry (Final if x-should-retry:
//	                                                     false, MaybeDelivered or TooLarge)
//	any other error                                      Final
//
// x-should-retry overrides the status as the SDKs do, except that it cannot make a
// spend cap, a bad key or billing retryable: the SDKs retry those, which the docs call
// out as wrong.
func Classify(err error) Class {
	if err == nil {
		return OK
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return classifyAPI(ae)
	}
	var te *TransportError
	if errors.As(err, &te) {
		if te.ShouldRetry < 0 || te.MaybeDelivered || te.TooLarge {
			return Final
		}
		return Retry
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Canceled
	}
	return Final
}

func classifyAPI(e *APIError) Class {
	switch {
	case e.SpendCap():
		return Stop
	case e.Status == http.StatusTooManyRequests && !e.HasRetryAfter && e.ShouldRetry <= 0:
		return Stop
	case e.Status == http.StatusUnauthorized, e.Status == http.StatusPaymentRequired:
		return Stop
	case e.Status == http.StatusBadRequest && userSpendLimit(e.Message):
		return Stop
	case e.ShouldRetry < 0:
		return Final
	case e.Status == http.StatusTooManyRequests:
		return RateLimited
	case e.Status == 529:
		return Overloaded
	case e.ShouldRetry > 0:
		return Retry
	case e.Status == http.StatusRequestTimeout, e.Status == http.StatusConflict, e.Status >= 500:
		return Retry
	}
	return Final
}

// userSpendLimit matches the 400 an organization's or workspace's own spend limit
// gives: "You have reached your specified (workspace) API usage limits ...".
func userSpendLimit(msg string) bool {
	return strings.HasPrefix(msg, "You have reached your specified")
}

// newAPIError builds the APIError for a non-2xx response whose body (at most
// maxErrorBody bytes of it) is body. key is scrubbed from everything kept.
func newAPIError(status int, h http.Header, body []byte, key Secret, now time.Time) *APIError {
	rl := wire.ParseRateLimitHeadersAt(h, now)
	rl.RequestID = key.scrubString(rl.RequestID)
	e := &APIError{
		Status:        status,
		RequestID:     rl.RequestID,
		RetryAfter:    rl.RetryAfter,
		HasRetryAfter: rl.HasRetryAfter,
		ShouldRetry:   rl.ShouldRetry,
		RateLimit:     rl,
		Header:        key.scrubHeader(h),
	}
	body = key.scrub(bytes.TrimSpace(body))
	var env struct {
		Type  string `json:"type"`
		Error *struct {
			Type    string          `json:"type"`
			Message string          `json:"message"`
			Details json.RawMessage `json:"details"`
		} `json:"error"`
		RequestID *string `json:"request_id"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Type != "" {
		e.Type = env.Error.Type
		e.Message = env.Error.Message
		e.ErrorCode = errorCode(env.Error.Details)
		if e.RequestID == "" && env.RequestID != nil {
			e.RequestID = *env.RequestID // from the scrubbed body
		}
		e.Body = body
		return e
	}
	// Not an envelope (a proxy or Cloudflare page): keep the status's type and the
	// start of the text, and build the envelope an errored result line needs.
	e.Type = typeForStatus(status)
	e.Message = truncate(string(body), 1024)
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	we := &wire.Error{Status: status, Type: e.Type, Message: e.Message}
	e.Body = we.MarshalEnvelope(e.RequestID)
	return e
}

// errorCode reads details.error_code, which must be a string; other shapes are ignored.
func errorCode(details json.RawMessage) string {
	if len(details) == 0 {
		return ""
	}
	var d struct {
		ErrorCode string `json:"error_code"`
	}
	if json.Unmarshal(details, &d) != nil {
		return ""
	}
	return d.ErrorCode
}

func typeForStatus(status int) string {
	switch status {
	case 400:
		return wire.InvalidRequest
	case 401:
		return wire.Authentication
	case 402:
		return wire.Billing
	case 403:
		return wire.Permission
	case 404:
		return wire.NotFound
	case 409:
		return wire.Conflict
	case 413:
		return wire.RequestTooLarge
	case 429:
		return wire.RateLimit
	case 504:
		return wire.Timeout
	case 529:
		return wire.Overloaded
	}
	if status >= 400 && status < 500 {
		return wire.InvalidRequest
	}
	return wire.APIError
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
