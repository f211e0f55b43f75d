package emulator

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// streamChunkTokens is how many output tokens one text_delta carries.
const streamChunkTokens = 8

// pingEvery is the most time between two events before a ping is sent.
const pingEvery = 5 * time.Second

// sseWriter writes SSE events, each with its event: line. Events are buffered and
// flushed before every pause of the stream (and when it ends), so a client sees each
// event when the API would have sent it, and a stream without latency costs one
// write instead of one per event.
type sseWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	buf      []byte
	lastSent time.Time
	dirty    bool // events written and not flushed
	err      error
}

func (e *sseWriter) event(name string, v any) {
	if e.err != nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		e.err = err
		return
	}
	e.buf = e.buf[:0]
	e.buf = append(e.buf, "event: "...)
	e.buf = append(e.buf, name...)
	e.buf = append(e.buf, "\ndata: "...)
	e.buf = append(e.buf, data...)
	e.buf = append(e.buf, "\n\n"...)
	if _, err := e.w.Write(e.buf); err != nil {
		e.err = err
		return
	}
	e.dirty = true
	e.lastSent = time.Now()
}

// flush sends the events written since the last flush.
func (e *sseWriter) flush() {
	if e.err != nil || !e.dirty {
		return
	}
	e.dirty = false
	if err := e.rc.Flush(); err != nil {
		e.err = err
	}
}

type sseDelta struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
	Delta any    `json:"delta"`
}

type textDelta struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type jsonDelta struct {
	Type        string `json:"type"`
	PartialJSON string `json:"partial_json"`
}

type deltaUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	// OutputTokensDetails is sent when the request asked for thinking.
	OutputTokensDetails *OutputTokensDetails `json:"output_tokens_details,omitempty"`
}

type thinkingDelta struct {
	Type     string `json:"type"`
	Thinking string `json:"thinking"`
}

type signatureDelta struct {
	Type      string `json:"type"`
	Signature string `json:"signature"`
}

// stream sends g as an SSE stream: message_start, each content block, message_delta
// with cumulative usage, message_stop, with pings, paced by the latency model, charging
// OTPM as tokens are generated, and with any mid-stream fault the fault model chose.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, c *call, p *prepared, g generation, u Usage, adm *admission, act faultAction) {
	defer func() { adm.finish(s.cfg.Now()) }()
	ctx := r.Context()
	// The response begins after the time to first token (responseStart): the headers
	// and message_start are sent then, when the prompt-cache entries the request
	// writes become readable. An injected delay comes after message_start.
	if !s.sleep(ctx, s.responseStart(p.class)) {
		return
	}
	h := w.Header()
	s.limits.setHeaders(h, p.class.Name, s.cfg.Now())
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}

	start := u
	start.OutputTokens = 1
	msg := &Message{ID: newID("msg_"), Type: "message", Role: "assistant", Model: p.req.Model, Content: []any{}, Usage: start}
	sw.event("message_start", map[string]any{"type": "message_start", "message": msg})
	defer sw.flush()

	if act.delay > 0 {
		sw.flush()
	}
	if !s.sleep(ctx, act.delay) {
		return
	}
	perTok := time.Duration(s.cfg.LatencyScale * float64(s.perToken(p.class)))
	var sent int64 // output tokens sent so far
	// progress charges n generated tokens, applies pacing and mid-stream faults; it
	// reports false when the stream must stop.
	progress := func(n int64) bool {
		wait := perTok * time.Duration(n)
		if wait > 0 {
			sw.flush() // what was sent before the pause arrives before it
		}
		if !s.sleep(ctx, wait) {
			return false
		}
		if sw.err == nil && time.Since(sw.lastSent) > pingEvery {
			sw.event("ping", map[string]string{"type": "ping"})
		}
		adm.charge(n, s.cfg.Now())
		sent += n
		if act.streamErr != nil && sent >= act.streamAfter {
			sw.event("error", map[string]any{"type": "error", "error": wire.ErrorBody{Type: act.streamErr.Type, Message: act.streamErr.Message}})
			s.metrics.observeError(act.streamErr)
			return false
		}
		if act.streamDrop && sent >= act.streamAfter {
			sw.flush()
			dropConnection(w)
		}
		return sw.err == nil
	}

	for i, blk := range g.blocks {
		switch b := blk.(type) {
		case TextBlock:
			sw.event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": TextBlock{Type: "text", Text: ""}})
			if i == 0 {
				sw.event("ping", map[string]string{"type": "ping"})
			}
			text := b.Text
			for len(text) > 0 {
				chunk := cutUTF8(text, streamChunkTokens*4) // a JSON text may hold any rune
				text = text[len(chunk):]
				if !progress(textTokens(chunk)) {
					return
				}
				sw.event("content_block_delta", sseDelta{Type: "content_block_delta", Index: i, Delta: textDelta{Type: "text_delta", Text: chunk}})
			}
		case ThinkingBlock:
			sw.event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": ThinkingBlock{Type: "thinking"}})
			text := b.Thinking
			if text == "" { // display omitted: the thinking takes its time all the same
				if !progress(b.tokens) {
					return
				}
			}
			for len(text) > 0 {
				chunk := cutUTF8(text, streamChunkTokens*4)
				text = text[len(chunk):]
				if !progress(textTokens(chunk)) {
					return
				}
				sw.event("content_block_delta", sseDelta{Type: "content_block_delta", Index: i, Delta: thinkingDelta{Type: "thinking_delta", Thinking: chunk}})
			}
			sw.event("content_block_delta", sseDelta{Type: "content_block_delta", Index: i, Delta: signatureDelta{Type: "signature_delta", Signature: b.Signature}})
		case RedactedThinkingBlock:
			if !progress(b.tokens) {
				return
			}
			sw.event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": b})
		case ToolUseBlock:
			sw.event("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": ToolUseBlock{Type: "tool_use", ID: b.ID, Name: b.Name, Input: json.RawMessage("{}")}})
			js := string(b.Input)
			parts := []string{js}
			if len(js) > 2 {
				half := cutUTF8(js, len(js)/2)
				parts = []string{half, js[len(half):]}
			}
			for _, part := range parts {
				if !progress(textTokens(part)) {
					return
				}
				sw.event("content_block_delta", sseDelta{Type: "content_block_delta", Index: i, Delta: jsonDelta{Type: "input_json_delta", PartialJSON: part}})
			}
		}
		sw.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": i})
	}
	// Tokens not carried by a delta (stop sequence, rounding) are charged at the end.
	if rest := g.outputTokens - sent; rest > 0 {
		adm.charge(rest, s.cfg.Now())
	}
	sw.event("message_delta", map[string]any{
		"type":  "message_delta",
		"delta": map[string]any{"stop_reason": g.stopReason, "stop_sequence": g.stopSequence},
		"usage": deltaUsage{InputTokens: u.InputTokens, CacheCreationInputTokens: u.CacheCreationInputTokens, CacheReadInputTokens: u.CacheReadInputTokens, OutputTokens: u.OutputTokens,
			OutputTokensDetails: u.OutputTokensDetails},
	})
	sw.event("message_stop", map[string]string{"type": "message_stop"})
}
