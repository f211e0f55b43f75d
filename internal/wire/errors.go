// Package wire holds the few Anthropic API shapes clade parses: message request fields
// that matter for limits and tokens, error envelopes, and batch request lines.
//
// Requests travel as the user's raw JSON; wire parses only what clade needs and never
// re-encodes a request through typed structs.
package wire

import (
	"encoding/json"
	"fmt"
)

// Error types, as the API sends them in error.type.
const (
	InvalidRequest  = "invalid_request_error"
	Authentication  = "authentication_error"
	Billing         = "billing_error"
	Permission      = "permission_error"
	NotFound        = "not_found_error"
	Conflict        = "conflict_error"
	RequestTooLarge = "request_too_large"
	RateLimit       = "rate_limit_error"
	APIError        = "api_error"
	Timeout         = "timeout_error"
	Overloaded      = "overloaded_error"
)

// StatusOf returns the HTTP status the API uses for an error type.
func StatusOf(errType string) int {
	switch errType {
	case InvalidRequest:
		return 400
	case Authentication:
		return 401
	case Billing:
		return 402
	case Permission:
		return 403
	case NotFound:
		return 404
	case Conflict:
		return 409
	case RequestTooLarge:
		return 413
	case RateLimit:
		return 429
	case Timeout:
		return 504
	case Overloaded:
		return 529
	default:
		return 500
	}
}

// Error is an API error: the status and the inner error object of the envelope.
type Error struct {
	Status  int
	Type    string
	Message string
	// Details is error.details (e.g. {"error_code":"enforced_spend_limit_reached"}), or nil.
	Details map[string]string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

// Errorf returns an Error of the given type with the status the API uses for it.
func Errorf(errType, format string, args ...any) *Error {
	return &Error{Status: StatusOf(errType), Type: errType, Message: fmt.Sprintf(format, args...)}
}

// ErrorBody is the inner error object.
type ErrorBody struct {
	Type    string            `json:"type"`
	Message string            `json:"message"`
	Details map[string]string `json:"details,omitempty"`
}

// Envelope is the API's error body: {"type":"error","error":{...},"request_id":"req_..."}.
type Envelope struct {
	Type      string    `json:"type"`
	Error     ErrorBody `json:"error"`
	RequestID *string   `json:"request_id"`
}

// Envelope returns the envelope for e with the given request id ("" gives null).
func (e *Error) Envelope(requestID string) Envelope {
	env := Envelope{Type: "error", Error: ErrorBody{Type: e.Type, Message: e.Message, Details: e.Details}}
	if requestID != "" {
		env.RequestID = &requestID
	}
	return env
}

// MarshalEnvelope returns the JSON error body for e.
func (e *Error) MarshalEnvelope(requestID string) []byte {
	b, _ := json.Marshal(e.Envelope(requestID))
	return b
}
