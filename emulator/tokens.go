package emulator

import (
	"hash/fnv"

	"github.com/clade-dev/clade/internal/wire"
)

// Token counting. No Claude tokenizer exists offline, so the emulator counts with a
// simple, documented rule (docs/emulator.md) and uses the same number everywhere: in
// count_tokens, in usage.input_tokens and in the rate-limit buckets.
//
//	text                     ceil(UTF-8 bytes / 4)
//	each message             +4
//	system prompt            +2 when present
//	request                  +3
//	image or document block  1,500
//	tools                    +300 when any, plus ceil(bytes of each definition / 4)
//
// Output text is generated from 4-byte pieces, so N output tokens are exactly 4N bytes
// and counting the output text gives back N.
const (
	tokensPerRequest = 3
	tokensPerMessage = 4
	tokensPerSystem  = 2
	tokensPerMedia   = 1500
	tokensForTools   = 300
)

// textTokens counts a text under the emulator's rule.
func textTokens(s string) int64 { return int64((len(s) + 3) / 4) }

// breakpoint is a cache_control mark: the prefix up to and including its block.
type breakpoint struct {
	tokens int64  // tokens of the prefix
	hash   uint64 // identity of the prefix
	ttl    string // "5m" or "1h"
}

// inputCount is the counted input of one request.
type inputCount struct {
	total       int64
	breakpoints []breakpoint
}

// countInput counts a request's input tokens and finds its cache breakpoints, in the
// API's prefix order: tools, then system, then messages.
func countInput(model string, req *wire.MessageRequest) inputCount {
	h := fnv.New64a()
	h.Write([]byte(model)) // caches are per model
	var ic inputCount
	n := int64(tokensPerRequest)
	mark := func(cc *wire.CacheControl) {
		if cc != nil {
			ic.breakpoints = append(ic.breakpoints, breakpoint{tokens: n, hash: h.Sum64(), ttl: cc.TTL})
		}
	}
	if len(req.Tools) > 0 {
		n += tokensForTools
		for _, t := range req.Tools {
			n += textTokens(string(t.Raw))
			h.Write(t.Raw)
			mark(t.CacheControl)
		}
	}
	if len(req.System) > 0 {
		n += tokensPerSystem
		for _, b := range req.System {
			n += blockTokens(b)
			h.Write([]byte{0})
			h.Write([]byte(b.Text))
			mark(b.CacheControl)
		}
	}
	var last *wire.CacheControl
	for _, m := range req.Messages {
		n += tokensPerMessage
		h.Write([]byte{1})
		h.Write([]byte(m.Role))
		for _, b := range m.Content {
			n += blockTokens(b)
			h.Write([]byte{2})
			h.Write([]byte(b.Type))
			h.Write([]byte(b.Text))
			mark(b.CacheControl)
		}
	}
	// Top-level cache_control (automatic caching) marks the last block.
	if req.CacheControl != nil {
		last = req.CacheControl
		ic.breakpoints = append(ic.breakpoints, breakpoint{tokens: n, hash: h.Sum64(), ttl: last.TTL})
	}
	ic.total = n
	return ic
}

func blockTokens(b wire.Block) int64 {
	n := textTokens(b.Text)
	if b.Media {
		n += tokensPerMedia
	}
	return n
}
