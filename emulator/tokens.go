package emulator

import (
	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/wire"
)

// Token counting. No Claude tokenizer exists offline, so the emulator counts with a
// simple, documented rule (docs/emulator.md; it lives in cacheprefix, which the
// runner's scheduling shares) and uses the same number everywhere: in count_tokens, in
// usage.input_tokens and in the rate-limit buckets.
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

// textTokens counts a text under the emulator's rule.
func textTokens(s string) int64 { return cacheprefix.TextTokens(s) }

// countInput counts a request's input tokens and finds its cache breakpoints, in the
// API's prefix order (tools, then system, then messages); body is the request's JSON.
func countInput(model string, req *wire.MessageRequest, body []byte) cacheprefix.Scan {
	return cacheprefix.Of(model, req, body)
}
