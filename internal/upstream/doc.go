// Package upstream is clade's HTTP client for the Anthropic API: Messages,
// count_tokens and Message Batches, plus the one retry decision and the backoff and
// retry-budget pieces a runner composes.
//
// The model: a request is the user's raw JSON and goes out byte for byte (DESIGN.md
// decision 1); a response comes back as raw bytes plus the few facts clade acts on
// (usage, stop_reason, rate-limit headers, request id). A Client makes exactly one
// attempt per call. Whether to try again is Classify's answer alone:
//
//	OK           success
//	Final        fix the request (400, 403, 404, 413, other 4xx, x-should-retry: false)
//	Retry        transient (408, 409, 500, 504, other 5xx, connection errors, timeouts)
//	RateLimited  429 with retry-after: wait at least that long, pause the model class
//	Overloaded   529: back off and shrink concurrency
//	Stop         spend cap (429 enforced_spend_limit_reached, or 429 with no
//	             retry-after), 401 bad key, 402 billing, 400 user spend limit: stop the run
//	Canceled     the caller's ctx ended: requeue without counting an attempt
//
// Backoff.Delay turns a retryable failure into a wait (0.5 s doubling to a cap,
// jittered, retry-after as a floor), and RetryBudget.Allow keeps retries to a
// fraction of recent traffic so a failing API is not hammered. Admission (rate
// limits, AIMD on 529) lives in another package; this one only reports.
//
// Streaming: MessagesStream sends the same params with "stream": true and assembles the
// server-sent events into the message JSON Messages would have returned (members in
// the API's order, tool input parsed from its partial_json, usage from message_start
// updated by message_delta's cumulative counts), so a caller handles both alike. It
// exists for answers that may take longer than a non-streaming call may wait (the
// SDKs' 10-minute rule); it has no total timeout, only Config.StreamIdleTimeout between
// reads. An SSE error event becomes the *APIError of its type's status (overloaded_error:
// 529); a stream that ends before message_stop is a retryable *TransportError.
//
// What is authoritative: the API's status, error envelope and headers. An error body
// that is not an envelope (a proxy's page) still yields an APIError, typed by status,
// with a synthesized envelope in Body so an errored result line is always valid JSON.
//
// Failure behaviour: every error is an *APIError (the API answered non-2xx), a
// *TransportError (no usable answer: connection, timeout, unreadable or undecodable
// body), or the caller's ctx error, wrapped. The API key is a Secret: it appears in no
// error string, log line, %+v dump or JSON, and is scrubbed from error bodies that echo
// it.
package upstream
