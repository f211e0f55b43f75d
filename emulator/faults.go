package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// Faults configures the failures the emulator injects, so that clients can be tested
// against the errors the real API returns under load. The zero value injects nothing.
//
// Each request to an endpoint named in Endpoints gets at most one of the errors, in
// this order: the spend cap (every request once it is reached), an overload burst
// (every request inside a burst window), then one random draw among Overloaded, Ramp,
// ServerError, Timeout, Drop and StreamError, whose rates must therefore sum to at most
// 1. Slow is drawn separately and may add delay to any response that is served.
//
// Errors decided before the response starts (everything but StreamError, and Drop on a
// stream) are returned before rate-limit admission, so they charge no bucket. Draws are
// seeded by Config.Seed and the request's sequence number since the faults were set:
// the same seed and the same sequence of requests give the same faults.
//
// In JSON (PUT /_emulator/faults, ParseFaults) durations are Go duration strings such
// as "2s"; unknown fields are rejected.
type Faults struct {
	// Overloaded is the probability that a request gets 529 overloaded_error with the
	// message "Overloaded" before any work, as when the API is loaded across all users.
	Overloaded float64 `json:"overloaded,omitempty"`
	// BurstEvery and BurstFor make overload bursts: in every BurstEvery of real time,
	// every request during the last BurstFor gets the 529. Periods start at the first
	// request after the faults are set, so a run begins with BurstEvery-BurstFor of
	// calm. Both 0 (the default) disables bursts; BurstFor must be in (0, BurstEvery].
	BurstEvery time.Duration `json:"burst_every,omitempty"`
	BurstFor   time.Duration `json:"burst_for,omitempty"`
	// StreamError is the probability that a streaming request gets a 200 and then,
	// at a uniformly random point of its output, an SSE error event with
	// overloaded_error "Overloaded" that ends the stream. Non-streaming requests ignore it.
	StreamError float64 `json:"stream_error,omitempty"`
	// ServerError is the probability of a 500 api_error.
	ServerError float64 `json:"server_error,omitempty"`
	// Timeout is the probability of a 504 timeout_error.
	Timeout float64 `json:"timeout,omitempty"`
	// Drop is the probability that the connection is closed: with no response for a
	// non-streaming request, at a uniformly random point of the output for a stream.
	// Clients see a transport error, not an API error.
	Drop float64 `json:"drop,omitempty"`
	// Slow is the probability that a served response is delayed by SlowDelay before it
	// starts (after message_start for a stream).
	Slow float64 `json:"slow,omitempty"`
	// SlowDelay is the added delay of a slow response. Default 2s; at most 10m.
	SlowDelay time.Duration `json:"slow_delay,omitempty"`
	// SpendCap makes requests fail as if the organization had reached the monthly spend
	// cap of its tier: 429 rate_limit_error with no retry-after and
	// error.details.error_code "enforced_spend_limit_reached", whose message names the
	// first of next month (UTC) as the time access returns. Retrying never helps.
	SpendCap bool `json:"spend_cap,omitempty"`
	// SpendCapAfter is how many requests are served before the spend cap is reached
	// (requests to the faulted endpoints, counted from when the faults were set).
	// Default 0: from the first request. Only used with SpendCap.
	SpendCapAfter int64 `json:"spend_cap_after,omitempty"`
	// Ramp is the probability of a ramp (acceleration) limit 429: rate_limit_error with
	// retry-after and error.details.error_code "ramp_limit_exceeded".
	Ramp float64 `json:"ramp,omitempty"`
	// RampRetryAfter is the retry-after of a ramp 429, sent in whole seconds (rounded
	// up). Default 10s; at most 1h.
	RampRetryAfter time.Duration `json:"ramp_retry_after,omitempty"`
	// Error and ErrorRate answer that fraction of requests with any API error type
	// (billing_error, permission_error, conflict_error, ...), with the status the API
	// uses for it, so clients can be tested against every error type.
	Error     string  `json:"error,omitempty"`
	ErrorRate float64 `json:"error_rate,omitempty"`
	// Endpoints names the endpoints faults apply to: "messages", "count_tokens",
	// "batches", "models", or "all". Default: messages only.
	Endpoints []string `json:"endpoints,omitempty"`
	// ResultsRate throttles Message Batches results downloads to this many lines per
	// second of real time (flushed as they go), so a client can be stopped in the
	// middle of reading a results file. It applies to every download, whatever
	// Endpoints says. Default 0: no throttle.
	ResultsRate float64 `json:"results_rate,omitempty"`
}

// Defaults and bounds of the Faults durations.
const (
	defaultSlowDelay      = 2 * time.Second
	maxSlowDelay          = 10 * time.Minute
	defaultRampRetryAfter = 10 * time.Second
	maxRampRetryAfter     = time.Hour
)

// Endpoint bits of faultPlan.endpoints.
const (
	epMessages uint8 = 1 << iota
	epCountTokens
	epBatches
	epModels
	epAll = epMessages | epCountTokens | epBatches | epModels
)

func endpointBit(name string) uint8 {
	switch name {
	case "messages":
		return epMessages
	case "count_tokens":
		return epCountTokens
	case "batches":
		return epBatches
	case "models":
		return epModels
	case "all":
		return epAll
	}
	return 0
}

// enabled reports whether f injects anything at all.
func (f Faults) enabled() bool {
	return f.Overloaded > 0 || f.BurstFor > 0 || f.StreamError > 0 || f.ServerError > 0 ||
		f.Timeout > 0 || f.Drop > 0 || f.Slow > 0 || f.SpendCap || f.Ramp > 0 || f.ErrorRate > 0
}

// validate checks every field; the error names the field as it is spelled in JSON.
func (f Faults) validate() error {
	rates := []struct {
		name string
		v    float64
	}{
		{"overloaded", f.Overloaded}, {"ramp", f.Ramp}, {"server_error", f.ServerError},
		{"timeout", f.Timeout}, {"drop", f.Drop}, {"stream_error", f.StreamError}, {"slow", f.Slow},
		{"error_rate", f.ErrorRate},
	}
	for _, r := range rates {
		if !(r.v >= 0 && r.v <= 1) { // also rejects NaN
			return fmt.Errorf("faults: %s = %v, want a probability in [0, 1]", r.name, r.v)
		}
	}
	if f.ErrorRate > 0 && !faultErrorTypes[f.Error] {
		return fmt.Errorf("faults: error = %q, want an API error type such as billing_error, permission_error or conflict_error", f.Error)
	}
	if sum := f.Overloaded + f.Ramp + f.ServerError + f.Timeout + f.Drop + f.StreamError + f.ErrorRate; sum > 1+1e-9 {
		return fmt.Errorf("faults: overloaded + ramp + server_error + timeout + drop + stream_error + error_rate = %v, want at most 1 (a request gets at most one of them)", sum)
	}
	switch {
	case f.BurstEvery < 0:
		return fmt.Errorf("faults: burst_every = %v, want a positive duration", f.BurstEvery)
	case f.BurstFor < 0:
		return fmt.Errorf("faults: burst_for = %v, want a positive duration", f.BurstFor)
	case f.BurstFor > 0 && f.BurstEvery == 0:
		return fmt.Errorf("faults: burst_for = %v needs burst_every", f.BurstFor)
	case f.BurstEvery > 0 && f.BurstFor == 0:
		return fmt.Errorf("faults: burst_every = %v needs burst_for", f.BurstEvery)
	case f.BurstFor > f.BurstEvery:
		return fmt.Errorf("faults: burst_for = %v is longer than burst_every = %v", f.BurstFor, f.BurstEvery)
	}
	if f.SlowDelay < 0 || f.SlowDelay > maxSlowDelay {
		return fmt.Errorf("faults: slow_delay = %v, want a duration in [0, %v]", f.SlowDelay, maxSlowDelay)
	}
	if f.RampRetryAfter < 0 || f.RampRetryAfter > maxRampRetryAfter {
		return fmt.Errorf("faults: ramp_retry_after = %v, want a duration in [0, %v]", f.RampRetryAfter, maxRampRetryAfter)
	}
	if f.SpendCapAfter < 0 {
		return fmt.Errorf("faults: spend_cap_after = %d, want 0 or more", f.SpendCapAfter)
	}
	if !(f.ResultsRate >= 0) || math.IsInf(f.ResultsRate, 0) {
		return fmt.Errorf("faults: results_rate = %v, want lines per second, 0 or more", f.ResultsRate)
	}
	for _, e := range f.Endpoints {
		if endpointBit(e) == 0 {
			return fmt.Errorf("faults: endpoints: unknown endpoint %q, want messages, count_tokens, batches, models or all", e)
		}
	}
	return nil
}

// faultsJSON is Faults on the wire: durations as Go duration strings.
type faultsJSON struct {
	Overloaded     float64  `json:"overloaded,omitempty"`
	BurstEvery     string   `json:"burst_every,omitempty"`
	BurstFor       string   `json:"burst_for,omitempty"`
	StreamError    float64  `json:"stream_error,omitempty"`
	ServerError    float64  `json:"server_error,omitempty"`
	Timeout        float64  `json:"timeout,omitempty"`
	Drop           float64  `json:"drop,omitempty"`
	Slow           float64  `json:"slow,omitempty"`
	SlowDelay      string   `json:"slow_delay,omitempty"`
	SpendCap       bool     `json:"spend_cap,omitempty"`
	SpendCapAfter  int64    `json:"spend_cap_after,omitempty"`
	Ramp           float64  `json:"ramp,omitempty"`
	RampRetryAfter string   `json:"ramp_retry_after,omitempty"`
	Error          string   `json:"error,omitempty"`
	ErrorRate      float64  `json:"error_rate,omitempty"`
	Endpoints      []string `json:"endpoints,omitempty"`
	ResultsRate    float64  `json:"results_rate,omitempty"`
}

func durationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// MarshalJSON encodes f with durations as strings such as "2s".
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		Overloaded: f.Overloaded, BurstEvery: durationString(f.BurstEvery), BurstFor: durationString(f.BurstFor),
		StreamError: f.StreamError, ServerError: f.ServerError, Timeout: f.Timeout, Drop: f.Drop,
		Slow: f.Slow, SlowDelay: durationString(f.SlowDelay), SpendCap: f.SpendCap, SpendCapAfter: f.SpendCapAfter,
		Ramp: f.Ramp, RampRetryAfter: durationString(f.RampRetryAfter), Endpoints: f.Endpoints,
		Error: f.Error, ErrorRate: f.ErrorRate, ResultsRate: f.ResultsRate,
	})
}

// UnmarshalJSON decodes a Faults object, rejecting unknown fields. It does not
// validate the values; SetFaults and ParseFaults do.
func (f *Faults) UnmarshalJSON(data []byte) error {
	var j faultsJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("faults: %w", err)
	}
	out := Faults{
		Overloaded: j.Overloaded, StreamError: j.StreamError, ServerError: j.ServerError,
		Timeout: j.Timeout, Drop: j.Drop, Slow: j.Slow, SpendCap: j.SpendCap,
		SpendCapAfter: j.SpendCapAfter, Ramp: j.Ramp, Endpoints: j.Endpoints,
		Error: j.Error, ErrorRate: j.ErrorRate, ResultsRate: j.ResultsRate,
	}
	for _, d := range []struct {
		name string
		s    string
		dst  *time.Duration
	}{
		{"burst_every", j.BurstEvery, &out.BurstEvery}, {"burst_for", j.BurstFor, &out.BurstFor},
		{"slow_delay", j.SlowDelay, &out.SlowDelay}, {"ramp_retry_after", j.RampRetryAfter, &out.RampRetryAfter},
	} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("faults: %s = %q, want a duration such as \"2s\"", d.name, d.s)
		}
		*d.dst = v
	}
	*f = out
	return nil
}

// faultAction is what the fault model decided for one request.
type faultAction struct {
	// err, when set, is returned instead of the response (before any token is charged).
	err *wire.Error
	// retryAfter, when positive, is sent in retry-after with err (ramp 429s).
	retryAfter time.Duration
	// drop closes the connection without a response.
	drop bool
	// delay is extra latency before the response starts.
	delay time.Duration
	// streamErr, for a streaming response, is sent as an SSE error event after a 200,
	// once streamAfter output tokens have been sent.
	streamErr *wire.Error
	// streamDrop, for a streaming response, drops the connection after streamAfter
	// output tokens.
	streamDrop  bool
	streamAfter int64
	// streamAt is where in the output (a fraction in [0, 1)) the stream fault falls;
	// place turns it into streamAfter once the output length is known.
	streamAt float64
}

// place sets streamAfter for a stream of outputTokens tokens.
func (a *faultAction) place(outputTokens int64) {
	if a.streamErr != nil || a.streamDrop {
		a.streamAfter = int64(a.streamAt * float64(outputTokens))
	}
}

// setHeaders adds the headers that go with err (retry-after on a ramp 429).
func (a *faultAction) setHeaders(h http.Header) {
	if a.err != nil && a.retryAfter > 0 {
		h.Set("retry-after", strconv.FormatInt(retryAfterSeconds(a.retryAfter), 10))
	}
}

// faultState holds the current fault plan. It is safe for concurrent use; with no
// faults configured, decide is one atomic load.
type faultState struct {
	seed uint64
	cur  atomic.Pointer[faultPlan]
}

// faultPlan is one validated Faults with the counters of its run.
type faultPlan struct {
	f         Faults
	endpoints uint8
	// Cumulative thresholds of the single exclusive draw.
	cOverloaded, cRamp, cServer, cTimeout, cDrop, cStream, cError float64
	slowDelay, rampRetry                                          time.Duration
	seq                                                           atomic.Uint64 // requests decided so far
	anchor                                                        atomic.Int64  // UnixNano of the first request; noAnchor before
}

const noAnchor = math.MinInt64

func newFaultState(f Faults, seed int64) *faultState {
	s := &faultState{seed: uint64(seed)}
	s.set(f)
	return s
}

// set replaces the plan; f must be valid. Counters (request sequence, burst anchor,
// spend-cap count) start again.
func (s *faultState) set(f Faults) {
	f.Endpoints = slices.Clone(f.Endpoints)
	if !f.enabled() && len(f.Endpoints) == 0 && f.SlowDelay == 0 && f.RampRetryAfter == 0 && f.BurstEvery == 0 && f.SpendCapAfter == 0 && f.ResultsRate == 0 {
		s.cur.Store(nil) // nothing to inject or report: the fast path
		return
	}
	p := &faultPlan{f: f, slowDelay: f.SlowDelay, rampRetry: f.RampRetryAfter}
	if f.enabled() { // otherwise the plan only records f for Faults()
		p.endpoints = epMessages
		if len(f.Endpoints) > 0 {
			p.endpoints = 0
			for _, e := range f.Endpoints {
				p.endpoints |= endpointBit(e)
			}
		}
	}
	p.cOverloaded = f.Overloaded
	p.cRamp = p.cOverloaded + f.Ramp
	p.cServer = p.cRamp + f.ServerError
	p.cTimeout = p.cServer + f.Timeout
	p.cDrop = p.cTimeout + f.Drop
	p.cStream = p.cDrop + f.StreamError
	p.cError = p.cStream + f.ErrorRate
	if p.slowDelay == 0 {
		p.slowDelay = defaultSlowDelay
	}
	if p.rampRetry == 0 {
		p.rampRetry = defaultRampRetryAfter
	}
	p.anchor.Store(noAnchor)
	s.cur.Store(p)
}

// get returns the Faults in force.
// resultsRate is the ResultsRate in force: lines per second, 0 for no throttle.
func (s *faultState) resultsRate() float64 {
	if p := s.cur.Load(); p != nil {
		return p.f.ResultsRate
	}
	return 0
}

func (s *faultState) get() Faults {
	p := s.cur.Load()
	if p == nil {
		return Faults{}
	}
	f := p.f
	f.Endpoints = slices.Clone(f.Endpoints)
	return f
}

// faultRand is the random stream of one request: PCG seeded by the server seed and
// the request's sequence number, so draws do not depend on goroutine scheduling.
type faultRand struct{ pcg rand.PCG }

func (r *faultRand) float() float64 { return float64(r.pcg.Uint64()>>11) / (1 << 53) }

// splitmix64 spreads nearby integers over the whole range before they seed PCG.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// decide returns the faults for one request to endpoint ("messages", "count_tokens",
// "batches", "models"); stream says whether the response is SSE.
func (s *faultState) decide(endpoint string, stream bool, now time.Time) faultAction {
	p := s.cur.Load()
	if p == nil || p.endpoints&endpointBit(endpoint) == 0 {
		return faultAction{}
	}
	n := p.seq.Add(1)
	f := &p.f
	if f.SpendCap && n > uint64(f.SpendCapAfter) {
		return faultAction{err: spendCapError(now)}
	}
	if f.BurstFor > 0 {
		t := now.UnixNano()
		p.anchor.CompareAndSwap(noAnchor, t)
		if el := t - p.anchor.Load(); el >= 0 && el%int64(f.BurstEvery) >= int64(f.BurstEvery-f.BurstFor) {
			return faultAction{err: overloadedError()}
		}
	}
	var r faultRand
	r.pcg.Seed(splitmix64(s.seed), splitmix64(n))
	u, slow, at := r.float(), r.float(), r.float()
	var a faultAction
	switch {
	case u < p.cOverloaded:
		return faultAction{err: overloadedError()}
	case u < p.cRamp:
		return faultAction{err: rampError(), retryAfter: p.rampRetry}
	case u < p.cServer:
		return faultAction{err: wire.Errorf(wire.APIError, "Internal server error")}
	case u < p.cTimeout:
		return faultAction{err: wire.Errorf(wire.Timeout, "Request timed out")}
	case u < p.cDrop:
		if !stream {
			return faultAction{drop: true}
		}
		a.streamDrop, a.streamAt = true, at
	case u < p.cStream:
		if stream {
			a.streamErr, a.streamAt = overloadedError(), at
		}
	case u < p.cError:
		return faultAction{err: typedError(f.Error)}
	}
	if slow < f.Slow {
		a.delay = p.slowDelay
	}
	return a
}

// faultErrorTypes are the error types the error fault can send.
var faultErrorTypes = map[string]bool{
	wire.InvalidRequest: true, wire.Authentication: true, wire.Billing: true, wire.Permission: true,
	wire.NotFound: true, wire.Conflict: true, wire.RequestTooLarge: true, wire.RateLimit: true,
	wire.APIError: true, wire.Timeout: true, wire.Overloaded: true,
}

// typedError is the error fault: an error of type t with a message like the API's.
func typedError(t string) *wire.Error {
	msg := map[string]string{
		wire.InvalidRequest:  "Injected invalid request.",
		wire.Authentication:  "invalid x-api-key",
		wire.Billing:         "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
		wire.Permission:      "Your API key does not have permission to use the specified resource.",
		wire.NotFound:        "The requested resource could not be found.",
		wire.Conflict:        "The request conflicts with the current state of the resource. Resolve the conflict, then retry.",
		wire.RequestTooLarge: "Request exceeds the maximum allowed number of bytes.",
		wire.RateLimit:       "Number of request tokens has exceeded your per-minute rate limit.",
		wire.APIError:        "Internal server error",
		wire.Timeout:         "Request timed out",
		wire.Overloaded:      "Overloaded",
	}[t]
	return wire.Errorf(t, "%s", msg)
}

func overloadedError() *wire.Error { return wire.Errorf(wire.Overloaded, "Overloaded") }

func rampError() *wire.Error {
	e := wire.Errorf(wire.RateLimit, "This request would exceed your organization's ramp limit, which caps how fast usage can grow. Please retry after the time in the retry-after header, and increase your request rate gradually.")
	e.Details = map[string]string{"error_code": "ramp_limit_exceeded"}
	return e
}

// spendCapError is the tier spend-cap 429; access returns at 00:00 UTC on the first
// of the month after now.
func spendCapError(now time.Time) *wire.Error {
	t := now.UTC()
	back := time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	e := wire.Errorf(wire.RateLimit, "You have reached your API usage limits: your organization has used the monthly spend allowance of its usage tier. You will regain access on %s at 00:00 UTC.", back.Format(time.DateOnly))
	e.Details = map[string]string{"error_code": "enforced_spend_limit_reached"}
	return e
}

// SetFaults replaces the injected faults at once; requests already decided keep
// theirs. It returns an error naming the bad field if f is invalid, and then changes
// nothing.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.faults.set(f)
	return nil
}

// Faults returns the faults in force.
func (s *Server) Faults() Faults { return s.faults.get() }

// injectFault applies the fault model to a non-streaming request to c.endpoint: it
// drops the connection or writes the error and reports true, or reports false when
// the request should be served.
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request, c *call) bool {
	act := s.faults.decide(c.endpoint, false, s.cfg.Now())
	switch {
	case act.drop:
		dropConnection(w)
		return true
	case act.err != nil:
		act.setHeaders(w.Header())
		s.writeError(w, c.requestID, act.err)
		return true
	case act.delay > 0:
		return !s.sleep(r.Context(), act.delay)
	}
	return false
}

// maxFaultsBody bounds a PUT /_emulator/faults body.
const maxFaultsBody = 64 << 10

// handleFaultsGet answers GET /_emulator/faults with the faults in force as JSON.
func (s *Server) handleFaultsGet(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

// handleFaultsPut replaces the faults: PUT /_emulator/faults with a JSON Faults object
// or a --faults spec (see ParseFaults); an empty body or "none" clears them. It answers
// with the faults now in force, or 400 {"error": "..."} naming the bad field and
// changing nothing.
func (s *Server) handleFaultsPut(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFaultsBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("faults: body is larger than %d bytes", maxFaultsBody)})
			return
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "faults: could not read the body"})
		return
	}
	f, err := ParseFaults(string(body))
	if err == nil {
		err = s.SetFaults(f)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, s.Faults())
}
