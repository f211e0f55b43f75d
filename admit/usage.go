package admit

import (
	"bytes"
	"encoding/json"
)

// usageJSON is a usage object as the API sends it; pointers tell a field sent from
// one left out, as message_delta's usage carries only what changed (cumulatively).
type usageJSON struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
}

func (u *usageJSON) mergeInto(dst *Usage) {
	if u == nil {
		return
	}
	set := func(p *int64, v *int64) {
		if v != nil {
			*p = *v
		}
	}
	set(&dst.InputTokens, u.InputTokens)
	set(&dst.OutputTokens, u.OutputTokens)
	set(&dst.CacheCreationInputTokens, u.CacheCreationInputTokens)
	set(&dst.CacheReadInputTokens, u.CacheReadInputTokens)
}

// MessageUsage reads the usage of a Messages response body (a Message object), and
// reports whether it had one.
func MessageUsage(body []byte) (Usage, bool) {
	var m struct {
		Usage *usageJSON `json:"usage"`
	}
	if json.Unmarshal(body, &m) != nil || m.Usage == nil {
		return Usage{}, false
	}
	var u Usage
	m.Usage.mergeInto(&u)
	return u, true
}

// StreamUsage follows the events of a Messages stream (SSE) and keeps its usage:
// message_start carries the input and cache counts, each message_delta the output
// generated so far, message_stop ends the answer. Give it every event, then Settle
// the stream's reservation with it. The zero value is ready to use.
type StreamUsage struct {
	u                 Usage
	started, complete bool
}

// Event takes one event: its name (the event: line) and its data.
func (s *StreamUsage) Event(name, data []byte) {
	switch string(name) {
	case "message_start":
		var ev struct {
			Message struct {
				Usage *usageJSON `json:"usage"`
			} `json:"message"`
		}
		if json.Unmarshal(data, &ev) == nil && ev.Message.Usage != nil {
			s.started = true
			ev.Message.Usage.mergeInto(&s.u)
		}
	case "message_delta":
		if !bytes.Contains(data, []byte(`"usage"`)) {
			return
		}
		var ev struct {
			Usage *usageJSON `json:"usage"`
		}
		if json.Unmarshal(data, &ev) == nil {
			ev.Usage.mergeInto(&s.u)
		}
	case "message_stop":
		s.complete = true
	}
}

// Usage is the usage seen so far.
func (s *StreamUsage) Usage() Usage { return s.u }

// Started reports whether the stream's message_start was seen.
func (s *StreamUsage) Started() bool { return s.started }

// Complete reports whether the stream reached message_stop after its message_start:
// the answer is whole and its usage final.
func (s *StreamUsage) Complete() bool { return s.started && s.complete }

// Settle finishes r, the reservation of the stream, with what the stream showed: a
// complete stream commits its usage; one cut short after it started commits its
// input and at least the output reserved (the API charged what it generated up to
// the cut, which the last usage seen may not include, as message_delta's usage comes
// at the end); one that never started fails, keeping the charge. The stream's
// headers are not resynced here: do that when they arrive (Limiter.Resync), as the
// buckets have refilled since.
func (s *StreamUsage) Settle(r *Reservation) error {
	switch {
	case s.Complete():
		return r.Commit(s.u, nil)
	case s.started:
		charged := s.u
		charged.OutputTokens = max(s.u.OutputTokens, r.Cost().OutputTokens)
		return r.Commit(charged, nil)
	}
	return r.Fail(nil)
}
