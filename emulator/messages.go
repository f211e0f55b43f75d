package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/wire"
)

// Message is a Messages API response.
type Message struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Role         string  `json:"role"`
	Model        string  `json:"model"`
	Content      []any   `json:"content"`
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        Usage   `json:"usage"`
}

// Usage is a response's usage object.
type Usage struct {
	InputTokens              int64         `json:"input_tokens"`
	CacheCreationInputTokens int64         `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64         `json:"cache_read_input_tokens"`
	CacheCreation            CacheCreation `json:"cache_creation"`
	OutputTokens             int64         `json:"output_tokens"`
	ServiceTier              string        `json:"service_tier"`
	// OutputTokensDetails is sent when the request asked for thinking.
	OutputTokensDetails *OutputTokensDetails `json:"output_tokens_details,omitempty"`
}

// CacheCreation splits cache writes by TTL.
type CacheCreation struct {
	Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
	Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
}

// prepared is a validated request with its counted input.
type prepared struct {
	req   *wire.MessageRequest
	body  []byte
	model *catalog.Model
	class *catalog.Class
	input cacheprefix.Scan
}

// parseOptions are the checks of a request of this API version and these betas.
func (s *Server) parseOptions(version string, betas []string, countTokens bool) wire.ParseOptions {
	system := version == Version2026
	for _, b := range betas {
		system = system || slices.Contains(s.cfg.SystemRoleBetas, b)
	}
	return wire.ParseOptions{CountTokens: countTokens, AllowSystemRole: system}
}

// threadUnsupported is the answer to a request with "thread" (the message-threads
// beta): the API's fallback error, on which clients send the whole conversation
// without it. Threads (server-held conversations) are not simulated.
func threadUnsupported(body []byte) *wire.Error {
	if !bytes.Contains(body, []byte(`"thread"`)) {
		return nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return nil // the parse reports it
	}
	if _, ok := top["thread"]; !ok {
		return nil
	}
	e := wire.Errorf(wire.InvalidRequest, "thread: message threads are not supported by this server; send the whole conversation without thread")
	e.Details = map[string]string{"error_code": "thread_unsupported_request"}
	return e
}

// prepare parses and validates a Messages body the way the API does, up to the
// checks that need the model: unknown model, max_tokens above the model's, prompt too long.
func (s *Server) prepare(body []byte, opt wire.ParseOptions) (*prepared, *wire.Error) {
	req, err := wire.ParseMessageRequest(body, opt)
	if err != nil {
		return nil, err.(*wire.Error)
	}
	m, ok := s.cat.Model(req.Model)
	if !ok || m.Lifecycle == "retired" {
		return nil, wire.Errorf(wire.NotFound, "model: %s", req.Model)
	}
	if !opt.CountTokens && req.MaxTokens > m.MaxTokens {
		return nil, wire.Errorf(wire.InvalidRequest, "max_tokens: %d > %d, which is the maximum allowed number of output tokens for %s", req.MaxTokens, m.MaxTokens, req.Model)
	}
	p := &prepared{req: req, body: body, model: m, class: s.cat.Class(m)}
	p.input = countInput(m.ID, req, body)
	if p.input.Total > m.MaxInputTokens {
		return nil, wire.Errorf(wire.InvalidRequest, "prompt is too long: %d tokens > %d maximum", p.input.Total, m.MaxInputTokens)
	}
	return p, nil
}

// itpmCost is what a request charges to the input-tokens-per-minute bucket: uncached
// input and cache writes, and cache reads only on the classes marked for it.
func itpmCost(cu cacheUsage, cl *catalog.Class) int64 {
	n := cu.uncached + cu.write5m + cu.write1h
	if cl.CacheReadsCountITPM {
		n += cu.read
	}
	return n
}

func makeUsage(cu cacheUsage, output int64, serviceTier string) Usage {
	return Usage{
		InputTokens:              cu.uncached,
		CacheCreationInputTokens: cu.write5m + cu.write1h,
		CacheReadInputTokens:     cu.read,
		CacheCreation:            CacheCreation{Ephemeral5m: cu.write5m, Ephemeral1h: cu.write1h},
		OutputTokens:             output,
		ServiceTier:              serviceTier,
	}
}

// usage is the response's usage: makeUsage's, with the thinking tokens detailed
// when the request asked for thinking.
func (g generation) usage(cu cacheUsage, serviceTier string) Usage {
	u := makeUsage(cu, g.outputTokens, serviceTier)
	if g.thinking {
		u.OutputTokensDetails = &OutputTokensDetails{ThinkingTokens: g.thinkingTokens}
	}
	return u
}

func (g generation) message(model string, u Usage) *Message {
	sr := g.stopReason
	return &Message{
		ID: newID("msg_"), Type: "message", Role: "assistant", Model: model,
		Content: g.blocks, StopReason: &sr, StopSequence: g.stopSequence, Usage: u,
	}
}

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request, c *call) {
	body, werr := readBody(r, MaxMessageBody)
	if werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	if werr := threadUnsupported(body); werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	p, werr := s.prepare(body, s.parseOptions(c.version, c.betas, false))
	if werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	c.class = p.class.Name
	now := s.cfg.Now()
	act := s.faults.decide("messages", p.req.Stream, now)
	if act.drop {
		dropConnection(w)
		return
	}
	if act.err != nil {
		s.limits.setHeaders(w.Header(), p.class.Name, now)
		act.setHeaders(w.Header())
		s.writeError(w, c.requestID, act.err)
		return
	}

	interleaved := hasBeta(c.betas, InterleavedThinkingBeta)
	tc, werr := parseThinking(body, p.req, interleaved, hasBeta(c.betas, ThinkingDisplayUpdatesBeta))
	if werr == nil {
		werr = s.checkThinkingBlocks(body)
	}
	if werr == nil {
		werr = checkSurface(body)
	}
	if werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	cu := s.cache.peek(p.input, p.class.MinCacheTokens, now)
	adm, refused := s.limits.admit(p.class.Name, itpmCost(cu, p.class), p.req.MaxTokens, s.cfg.OrganizationID, now)
	if refused != nil {
		s.limits.setHeaders(w.Header(), p.class.Name, now)
		w.Header().Set("retry-after", strconv.FormatInt(retryAfterSeconds(refused.retryAfter), 10))
		s.metrics.observeRateLimited(p.class.Name, refused.limit)
		s.writeError(w, c.requestID, refused.err)
		return
	}
	// The prefixes this request writes become readable when its response begins
	// (responseStart): a stream's message_start; for a whole response, once the
	// injected delay (which a stream sends after message_start) has passed too.
	begins := s.responseStart(p.class)
	if !p.req.Stream {
		begins += act.delay
	}
	cu = s.cache.store(p.input, p.class.MinCacheTokens, now, now.Add(begins))
	g := s.generateWith(callable(p.req), body, tc, interleaved)
	u := g.usage(cu, "standard")
	s.metrics.observeTokens(p.class.Name, u.InputTokens, u.OutputTokens, u.CacheReadInputTokens, u.CacheCreationInputTokens)

	if p.req.Stream {
		act.place(g.outputTokens)
		s.stream(w, r, c, p, g, u, adm, act)
		return
	}

	ctx := r.Context()
	if !s.sleep(ctx, act.delay+s.latency(p.class, g.outputTokens)) {
		adm.charge(g.outputTokens, s.cfg.Now()) // the tokens were generated all the same
		adm.finish(s.cfg.Now())
		return
	}
	end := s.cfg.Now()
	adm.charge(g.outputTokens, end)
	adm.finish(end)
	s.limits.setHeaders(w.Header(), p.class.Name, end)
	b, err := json.Marshal(g.message(p.req.Model, u))
	if err != nil {
		s.writeError(w, c.requestID, wire.Errorf(wire.APIError, "Internal server error"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (s *Server) handleCountTokens(w http.ResponseWriter, r *http.Request, c *call) {
	body, werr := readBody(r, MaxMessageBody)
	if werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	p, werr := s.prepare(body, s.parseOptions(c.version, c.betas, true))
	if werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	if s.injectFault(w, r, c) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(`{"input_tokens":` + strconv.FormatInt(p.input.Total, 10) + "}"))
}

// latency is the modelled time for a whole response: time to first token plus output
// at the class's speed, scaled by LatencyScale (0: none).
func (s *Server) latency(cl *catalog.Class, outputTokens int64) time.Duration {
	if s.cfg.LatencyScale == 0 {
		return 0
	}
	return time.Duration(s.cfg.LatencyScale * float64(s.ttft(cl)+s.perToken(cl)*time.Duration(outputTokens)))
}

// responseStart is the modelled time from admission to the response's first byte
// (before any injected delay): the time to first token scaled by LatencyScale. A
// stream's message_start is sent then, and the prompt-cache entries the request
// writes become readable then.
func (s *Server) responseStart(cl *catalog.Class) time.Duration {
	return time.Duration(s.cfg.LatencyScale * float64(s.ttft(cl)))
}

func (s *Server) ttft(cl *catalog.Class) time.Duration {
	return time.Duration(cl.Latency.TTFTMillis * float64(time.Millisecond))
}

func (s *Server) perToken(cl *catalog.Class) time.Duration {
	if cl.Latency.OutputTokensPerSec <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / cl.Latency.OutputTokensPerSec)
}

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dropConnection closes the client's connection without a response.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := unwrapHijacker(w); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func unwrapHijacker(w http.ResponseWriter) (http.Hijacker, bool) {
	for {
		if hj, ok := w.(http.Hijacker); ok {
			return hj, true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil, false
		}
		w = u.Unwrap()
	}
}
