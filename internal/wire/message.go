package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// MessageRequest is the part of a Messages request clade reads. Raw keeps what the
// user sent; the fields are views into it.
type MessageRequest struct {
	Model         string
	MaxTokens     int64
	HasMaxTokens  bool
	Stream        bool
	HasStream     bool
	System        []Block
	Messages      []Message
	Tools         []Tool
	ToolChoice    ToolChoice
	StopSequences []string
	// CacheControl is the top-level (automatic) cache_control, if any.
	CacheControl *CacheControl
	// Fields lists the top-level field names present, in no particular order.
	Fields []string
}

// Message is one item of messages[].
type Message struct {
	Role    string
	Content []Block
}

// Block is one content block, reduced to what counts for tokens and caching.
type Block struct {
	Type string
	// Text is the block's text (text, thinking), or the JSON of a tool_use input, or
	// the flattened content of a tool_result.
	Text string
	// Media is set for image and document blocks, which count a fixed amount.
	Media        bool
	CacheControl *CacheControl
}

// CacheControl is a prompt-caching breakpoint.
type CacheControl struct {
	Type string `json:"type"`
	TTL  string `json:"ttl,omitempty"`
}

// Tool is a tool definition.
type Tool struct {
	Name         string
	Raw          json.RawMessage // the whole definition, counted for tokens
	InputSchema  json.RawMessage
	CacheControl *CacheControl
}

// ToolChoice is tool_choice: auto (default), any, tool (with Name) or none.
type ToolChoice struct {
	Type string
	Name string
}

// messageFields are the top-level fields the Messages API accepts.
var messageFields = map[string]bool{
	"model": true, "max_tokens": true, "messages": true, "system": true, "stream": true,
	"temperature": true, "top_p": true, "top_k": true, "stop_sequences": true, "tools": true,
	"tool_choice": true, "thinking": true, "metadata": true, "service_tier": true,
	"output_config": true, "cache_control": true, "container": true, "inference_geo": true,
	"mcp_servers": true, "context_management": true, "speed": true, "output_format": true,
}

// countFields are the fields count_tokens accepts (no max_tokens, no stream).
var countFields = map[string]bool{
	"model": true, "messages": true, "system": true, "tools": true, "tool_choice": true,
	"thinking": true, "output_config": true, "cache_control": true, "mcp_servers": true,
	"context_management": true, "speed": true, "output_format": true,
}

// ParseOptions select which request shape is checked.
type ParseOptions struct {
	// CountTokens checks the count_tokens shape: max_tokens not required.
	CountTokens bool
	// AllowSystemRole accepts role "system" in messages (API version 2026-10-21).
	AllowSystemRole bool
	// RejectSampling rejects temperature, top_p and top_k (API version 2026-10-21
	// dropped them; whether the live API rejects them is unconfirmed, so it is an option).
	RejectSampling bool
}

// ParseMessageRequest parses and validates a Messages (or count_tokens) body. Errors are
// *Error values of type invalid_request_error whose message names the field, in the
// style the API uses ("max_tokens: Field required").
func ParseMessageRequest(body []byte, opt ParseOptions) (*MessageRequest, error) {
	if r, ok := parseFast(body, opt); ok {
		return r, nil
	}
	return parseSlow(body, opt)
}

// parseSlow is ParseMessageRequest for any body: it decodes each field with
// encoding/json and is the source of every error message (see fastparse.go).
func parseSlow(body []byte, opt ParseOptions) (*MessageRequest, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, Errorf(InvalidRequest, "There was an error parsing the body of your request: %s", jsonProblem(err))
	}
	allowed := messageFields
	if opt.CountTokens {
		allowed = countFields
	}
	r := &MessageRequest{Fields: make([]string, 0, len(top))}
	for k := range top {
		if !allowed[k] {
			return nil, Errorf(InvalidRequest, "%s: Extra inputs are not permitted", k)
		}
		r.Fields = append(r.Fields, k)
	}
	if opt.RejectSampling {
		for _, k := range []string{"temperature", "top_p", "top_k"} {
			if _, ok := top[k]; ok {
				return nil, Errorf(InvalidRequest, "%s: Extra inputs are not permitted", k)
			}
		}
	}

	raw, ok := top["model"]
	if !ok {
		return nil, Errorf(InvalidRequest, "model: Field required")
	}
	if err := json.Unmarshal(raw, &r.Model); err != nil || isNull(raw) {
		return nil, Errorf(InvalidRequest, "model: Input should be a valid string")
	}
	if r.Model == "" {
		return nil, Errorf(InvalidRequest, "model: String should have at least 1 character")
	}

	if !opt.CountTokens {
		raw, ok = top["max_tokens"]
		if !ok {
			return nil, Errorf(InvalidRequest, "max_tokens: Field required")
		}
		if err := json.Unmarshal(raw, &r.MaxTokens); err != nil || isNull(raw) {
			return nil, Errorf(InvalidRequest, "max_tokens: Input should be a valid integer")
		}
		if r.MaxTokens < 1 {
			return nil, Errorf(InvalidRequest, "max_tokens: Input should be greater than or equal to 1")
		}
		r.HasMaxTokens = true
		if raw, ok = top["stream"]; ok && !isNull(raw) {
			if err := json.Unmarshal(raw, &r.Stream); err != nil {
				return nil, Errorf(InvalidRequest, "stream: Input should be a valid boolean")
			}
			r.HasStream = true
		}
	}

	raw, ok = top["messages"]
	if !ok {
		return nil, Errorf(InvalidRequest, "messages: Field required")
	}
	var msgs []json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil || isNull(raw) {
		return nil, Errorf(InvalidRequest, "messages: Input should be a valid list")
	}
	if len(msgs) == 0 {
		return nil, Errorf(InvalidRequest, "messages: at least one message is required")
	}
	r.Messages = make([]Message, 0, len(msgs))
	for i, m := range msgs {
		msg, err := parseMessage(m, i, opt)
		if err != nil {
			return nil, err
		}
		r.Messages = append(r.Messages, msg)
	}

	if raw, ok = top["system"]; ok && !isNull(raw) {
		blocks, err := parseContent(raw, "system")
		if err != nil {
			return nil, err
		}
		for i, b := range blocks {
			if b.Type != "text" {
				return nil, Errorf(InvalidRequest, "system.%d.type: Input should be 'text'", i)
			}
		}
		r.System = blocks
	}
	for _, k := range []string{"temperature", "top_p"} {
		if raw, ok = top[k]; ok && !isNull(raw) {
			var f float64
			if err := json.Unmarshal(raw, &f); err != nil {
				return nil, Errorf(InvalidRequest, "%s: Input should be a valid number", k)
			}
			if f < 0 || f > 1 {
				return nil, Errorf(InvalidRequest, "%s: Input should be less than or equal to 1 and greater than or equal to 0", k)
			}
		}
	}
	if raw, ok = top["top_k"]; ok && !isNull(raw) {
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, Errorf(InvalidRequest, "top_k: Input should be a valid integer")
		}
	}
	if raw, ok = top["stop_sequences"]; ok && !isNull(raw) {
		if err := json.Unmarshal(raw, &r.StopSequences); err != nil {
			return nil, Errorf(InvalidRequest, "stop_sequences: Input should be a valid list of strings")
		}
	}
	if raw, ok = top["tools"]; ok && !isNull(raw) {
		tools, err := parseTools(raw)
		if err != nil {
			return nil, err
		}
		r.Tools = tools
	}
	if raw, ok = top["tool_choice"]; ok && !isNull(raw) {
		var tc struct {
			Type string `json:"type"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &tc); err != nil {
			return nil, Errorf(InvalidRequest, "tool_choice: Input should be a valid dictionary")
		}
		switch tc.Type {
		case "auto", "any", "none":
		case "tool":
			if tc.Name == "" {
				return nil, Errorf(InvalidRequest, "tool_choice.tool.name: Field required")
			}
			if !r.hasTool(tc.Name) {
				return nil, Errorf(InvalidRequest, "tool_choice: tool %q not found in tools", tc.Name)
			}
		default:
			return nil, Errorf(InvalidRequest, "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
		}
		if (tc.Type == "any" || tc.Type == "tool") && len(r.Tools) == 0 {
			return nil, Errorf(InvalidRequest, "tool_choice: tool_choice requires tools")
		}
		r.ToolChoice = ToolChoice{Type: tc.Type, Name: tc.Name}
	}
	if raw, ok = top["cache_control"]; ok && !isNull(raw) {
		cc, err := parseCacheControl(raw, "cache_control")
		if err != nil {
			return nil, err
		}
		r.CacheControl = cc
	}
	if raw, ok = top["metadata"]; ok && !isNull(raw) {
		var md map[string]json.RawMessage
		if err := json.Unmarshal(raw, &md); err != nil {
			return nil, Errorf(InvalidRequest, "metadata: Input should be a valid dictionary")
		}
	}
	return r, nil
}

func (r *MessageRequest) hasTool(name string) bool {
	for _, t := range r.Tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

func parseMessage(raw json.RawMessage, i int, opt ParseOptions) (Message, error) {
	var m struct {
		Role    *string         `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(raw, &m); err != nil || isNull(raw) {
		return Message{}, Errorf(InvalidRequest, "messages.%d: Input should be a valid dictionary", i)
	}
	if m.Role == nil {
		return Message{}, Errorf(InvalidRequest, "messages.%d.role: Field required", i)
	}
	switch *m.Role {
	case "user", "assistant":
	case "system":
		if !opt.AllowSystemRole {
			return Message{}, Errorf(InvalidRequest, "messages.%d.role: Input should be 'user' or 'assistant'", i)
		}
	default:
		return Message{}, Errorf(InvalidRequest, "messages.%d.role: Input should be 'user' or 'assistant'", i)
	}
	if m.Content == nil {
		return Message{}, Errorf(InvalidRequest, "messages.%d.content: Field required", i)
	}
	blocks, err := parseContent(m.Content, fmt.Sprintf("messages.%d.content", i))
	if err != nil {
		return Message{}, err
	}
	if *m.Role == "system" {
		for j, b := range blocks {
			if b.Type != "text" {
				return Message{}, Errorf(InvalidRequest, "messages.%d.content.%d.type: system messages take text blocks only", i, j)
			}
		}
	}
	return Message{Role: *m.Role, Content: blocks}, nil
}

type rawBlock struct {
	Type         *string         `json:"type"`
	Text         *string         `json:"text"`
	Thinking     string          `json:"thinking"`
	Input        json.RawMessage `json:"input"`
	Content      json.RawMessage `json:"content"`
	Source       json.RawMessage `json:"source"`
	CacheControl json.RawMessage `json:"cache_control"`
	Name         string          `json:"name"`
}

// parseContent reads a string or a list of blocks.
func parseContent(raw json.RawMessage, path string) ([]Block, error) {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, Errorf(InvalidRequest, "%s: Input should be a valid string", path)
		}
		return []Block{{Type: "text", Text: s}}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || isNull(raw) {
		return nil, Errorf(InvalidRequest, "%s: Input should be a valid string or list", path)
	}
	out := make([]Block, 0, len(items))
	for j, it := range items {
		var rb rawBlock
		p := fmt.Sprintf("%s.%d", path, j)
		if err := json.Unmarshal(it, &rb); err != nil || isNull(it) {
			return nil, Errorf(InvalidRequest, "%s: Input should be a valid dictionary", p)
		}
		if rb.Type == nil {
			return nil, Errorf(InvalidRequest, "%s.type: Field required", p)
		}
		b := Block{Type: *rb.Type}
		switch b.Type {
		case "text":
			if rb.Text == nil {
				return nil, Errorf(InvalidRequest, "%s.text: Field required", p)
			}
			b.Text = *rb.Text
		case "thinking", "redacted_thinking":
			b.Text = rb.Thinking
		case "tool_use", "server_tool_use":
			b.Text = rb.Name + string(rb.Input)
		case "tool_result", "web_search_tool_result":
			if len(rb.Content) > 0 && !isNull(rb.Content) {
				inner, err := parseContent(rb.Content, p+".content")
				if err != nil {
					return nil, err
				}
				var sb strings.Builder
				for _, ib := range inner {
					if ib.Media {
						b.Media = true
					}
					sb.WriteString(ib.Text)
				}
				b.Text = sb.String()
			}
		case "image", "document", "search_result", "container_upload":
			if rb.Source == nil && b.Type != "container_upload" && b.Type != "search_result" {
				return nil, Errorf(InvalidRequest, "%s.source: Field required", p)
			}
			b.Media = true
		default:
			return nil, Errorf(InvalidRequest, "%s.type: Input tag '%s' found using 'type' does not match any of the expected tags", p, b.Type)
		}
		if rb.CacheControl != nil && !isNull(rb.CacheControl) {
			cc, err := parseCacheControl(rb.CacheControl, p+".cache_control")
			if err != nil {
				return nil, err
			}
			b.CacheControl = cc
		}
		out = append(out, b)
	}
	return out, nil
}

func parseTools(raw json.RawMessage) ([]Tool, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, Errorf(InvalidRequest, "tools: Input should be a valid list")
	}
	out := make([]Tool, 0, len(items))
	seen := make(map[string]bool, len(items))
	for i, it := range items {
		var t struct {
			Name         *string         `json:"name"`
			Type         string          `json:"type"`
			InputSchema  json.RawMessage `json:"input_schema"`
			CacheControl json.RawMessage `json:"cache_control"`
		}
		if err := json.Unmarshal(it, &t); err != nil || isNull(it) {
			return nil, Errorf(InvalidRequest, "tools.%d: Input should be a valid dictionary", i)
		}
		if t.Name == nil || *t.Name == "" {
			return nil, Errorf(InvalidRequest, "tools.%d.name: Field required", i)
		}
		if t.Type == "" || t.Type == "custom" {
			if t.InputSchema == nil {
				return nil, Errorf(InvalidRequest, "tools.%d.input_schema: Field required", i)
			}
		}
		if seen[*t.Name] {
			return nil, Errorf(InvalidRequest, "tools: Tool names must be unique.")
		}
		seen[*t.Name] = true
		tool := Tool{Name: *t.Name, Raw: it, InputSchema: t.InputSchema}
		if t.CacheControl != nil && !isNull(t.CacheControl) {
			cc, err := parseCacheControl(t.CacheControl, fmt.Sprintf("tools.%d.cache_control", i))
			if err != nil {
				return nil, err
			}
			tool.CacheControl = cc
		}
		out = append(out, tool)
	}
	return out, nil
}

func parseCacheControl(raw json.RawMessage, path string) (*CacheControl, error) {
	var cc CacheControl
	if err := json.Unmarshal(raw, &cc); err != nil {
		return nil, Errorf(InvalidRequest, "%s: Input should be a valid dictionary", path)
	}
	if cc.Type != "ephemeral" {
		return nil, Errorf(InvalidRequest, "%s.type: Input should be 'ephemeral'", path)
	}
	switch cc.TTL {
	case "":
		cc.TTL = "5m"
	case "5m", "1h":
	default:
		return nil, Errorf(InvalidRequest, "%s.ttl: Input should be '5m' or '1h'", path)
	}
	return &cc, nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// jsonProblem describes a JSON decoding error without echoing request content.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return "the body must be a JSON object"
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return "the body must be a JSON object"
	default:
		return "invalid JSON"
	}
}
