package intake

import (
	"bytes"
	"encoding/json"
)

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
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return 0
	}
	var msgs []json.RawMessage
	_ = json.Unmarshal(p["messages"], &msgs)
	return estimate(p, msgs)
}

func estimate(p map[string]json.RawMessage, msgs []json.RawMessage) int64 {
	n := int64(estPerRequest)
	for _, m := range msgs {
		var msg struct {
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(m, &msg)
		n += estPerMessage + contentTokens(msg.Content)
	}
	if sys, ok := p["system"]; ok && !isNull(sys) {
		n += estPerSystem + contentTokens(sys)
	}
	if raw, ok := p["tools"]; ok {
		var tools []json.RawMessage
		if json.Unmarshal(raw, &tools) == nil && len(tools) > 0 {
			n += estForTools
			for _, t := range tools {
				n += byteTokens(len(t))
			}
		}
	}
	return n
}

// contentTokens estimates a content value: a string, or an array of blocks.
func contentTokens(raw json.RawMessage) int64 {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	switch raw[0] {
	case '"':
		return byteTokens(len(raw) - 2)
	case '[':
		var blocks []json.RawMessage
		if json.Unmarshal(raw, &blocks) != nil {
			return byteTokens(len(raw))
		}
		var n int64
		for _, b := range blocks {
			n += blockTokens(b)
		}
		return n
	default:
		return byteTokens(len(raw))
	}
}

func blockTokens(raw json.RawMessage) int64 {
	var b struct {
		Type    string          `json:"type"`
		Text    json.RawMessage `json:"text"`
		Input   json.RawMessage `json:"input"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &b) != nil {
		return byteTokens(len(raw))
	}
	switch b.Type {
	case "text":
		return byteTokens(len(b.Text) - 2)
	case "image", "document":
		return estPerMedia
	case "tool_use":
		return byteTokens(len(b.Input))
	case "tool_result":
		return contentTokens(b.Content)
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
