package intake

import "encoding/json"

// Token estimate. No Claude tokenizer exists offline, so the estimate follows the
// emulator's counting rule (see emulator/tokens.go), read cheaply from the raw JSON:
//
//	text                     ceil(bytes / 4)
//	each message             +4
//	system prompt            +2 when present
//	request                  +3
//	image or document block  1,500
//	tools                    +300 when any, plus ceil(bytes of each definition / 4)
//
// String lengths are taken from the JSON text (escapes included), so the estimate
// leans high. The runner calibrates it from the usage of responses.
const (
	estPerRequest = 3
	estPerMessage = 4
	estPerSystem  = 2
	estPerMedia   = 1500
	estForTools   = 300
)

// EstimateInputTokens returns the estimated input tokens of a Messages params
// object, or 0 when params is not an object.
func EstimateInputTokens(params json.RawMessage) int64 {
	if !json.Valid(params) {
		return 0
	}
	params = trimSpace(params)
	if params[0] != '{' {
		return 0
	}
	var p paramFields
	p.read(params)
	return p.estimate()
}

func (p *paramFields) estimate() int64 {
	n := int64(estPerRequest)
	elements(p.messages, func(m []byte) {
		n += estPerMessage
		var content []byte
		members(m, func(k, v []byte) {
			if keyIs(k, "content") {
				content = v
			}
		})
		n += contentTokens(content)
	})
	if p.system != nil && !isNull(p.system) {
		n += estPerSystem + contentTokens(p.system)
	}
	if len(p.tools) > 0 && p.tools[0] == '[' && count(p.tools) > 0 {
		n += estForTools
		elements(p.tools, func(t []byte) { n += byteTokens(len(t)) })
	}
	return n
}

// contentTokens estimates a content value: a string, or an array of blocks.
func contentTokens(raw []byte) int64 {
	if len(raw) == 0 {
		return 0
	}
	switch raw[0] {
	case '"':
		return byteTokens(len(raw) - 2)
	case '[':
		var n int64
		elements(raw, func(b []byte) { n += blockTokens(b) })
		return n
	default:
		return byteTokens(len(raw))
	}
}

func blockTokens(raw []byte) int64 {
	if len(raw) == 0 || raw[0] != '{' {
		return byteTokens(len(raw))
	}
	var typ, text, input, content []byte
	members(raw, func(k, v []byte) {
		switch {
		case keyIs(k, "type"):
			typ = v
		case keyIs(k, "text"):
			text = v
		case keyIs(k, "input"):
			input = v
		case keyIs(k, "content"):
			content = v
		}
	})
	switch {
	case stringIs(typ, "text"):
		return byteTokens(len(text) - 2)
	case stringIs(typ, "image"), stringIs(typ, "document"):
		return estPerMedia
	case stringIs(typ, "tool_use"):
		return byteTokens(len(input))
	case stringIs(typ, "tool_result"):
		return contentTokens(content)
	default:
		return byteTokens(len(raw))
	}
}

func byteTokens(n int) int64 {
	if n <= 0 {
		return 0
	}
	return int64((n + 3) / 4)
}
