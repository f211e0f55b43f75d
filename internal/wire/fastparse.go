package wire

import (
	"strconv"
)

// The fast path of ParseMessageRequest. parseSlow decodes the body into a map of raw
// values and then decodes each of them again, so every byte is scanned several times
// and every field allocates; at the emulator's request rates that is most of its cost.
// parseFast reads a valid body once, without reflection, but only in the shape
// well-formed requests have: plain object keys, each at most once and spelled exactly,
// values of the right type, no null where a value is checked. Anything else — any
// request parseSlow would reject, and the odd valid ones — makes it give up, and
// ParseMessageRequest falls back to parseSlow, which stays the one source of error
// messages. For every body parseFast accepts it returns what parseSlow returns (up to
// the order of Fields); FuzzParseFastMatchesSlow checks this.

// Top-level fields, in the order of topFieldNames.
const (
	fModel = iota
	fMaxTokens
	fMessages
	fSystem
	fStream
	fTemperature
	fTopP
	fTopK
	fStopSequences
	fTools
	fToolChoice
	fThinking
	fMetadata
	fServiceTier
	fOutputConfig
	fCacheControl
	fContainer
	fInferenceGeo
	fMCPServers
	fContextManagement
	fSpeed
	fOutputFormat
	numTopFields
)

var topFieldNames = [numTopFields]string{
	"model", "max_tokens", "messages", "system", "stream", "temperature", "top_p", "top_k",
	"stop_sequences", "tools", "tool_choice", "thinking", "metadata", "service_tier",
	"output_config", "cache_control", "container", "inference_geo", "mcp_servers",
	"context_management", "speed", "output_format",
}

// messageMask and countMask are messageFields and countFields as bit sets over
// topFieldNames; a field missing from topFieldNames just sends its requests to parseSlow.
var messageMask, countMask = fieldMask(messageFields), fieldMask(countFields)

func fieldMask(allowed map[string]bool) uint32 {
	var m uint32
	for i, name := range topFieldNames {
		if allowed[name] {
			m |= 1 << i
		}
	}
	return m
}

func topField(key []byte) int {
	switch string(key) {
	case "model":
		return fModel
	case "max_tokens":
		return fMaxTokens
	case "messages":
		return fMessages
	case "system":
		return fSystem
	case "stream":
		return fStream
	case "temperature":
		return fTemperature
	case "top_p":
		return fTopP
	case "top_k":
		return fTopK
	case "stop_sequences":
		return fStopSequences
	case "tools":
		return fTools
	case "tool_choice":
		return fToolChoice
	case "thinking":
		return fThinking
	case "metadata":
		return fMetadata
	case "service_tier":
		return fServiceTier
	case "output_config":
		return fOutputConfig
	case "cache_control":
		return fCacheControl
	case "container":
		return fContainer
	case "inference_geo":
		return fInferenceGeo
	case "mcp_servers":
		return fMCPServers
	case "context_management":
		return fContextManagement
	case "speed":
		return fSpeed
	case "output_format":
		return fOutputFormat
	}
	return -1
}

// parseFast parses body when it has the common shape of a valid request; ok is false
// when parseSlow must decide.
func parseFast(body []byte, opt ParseOptions) (r *MessageRequest, ok bool) {
	if !validJSON(body) {
		return nil, false
	}
	s := scanner{b: body}
	if !s.objectStart() {
		return nil, false
	}
	allowed := messageMask
	if opt.CountTokens {
		allowed = countMask
	}
	var raw [numTopFields][]byte
	var seen uint32
	n := 0
	for {
		key, more := s.nextKey()
		if !more {
			break
		}
		f := topField(key)
		if f < 0 || allowed&(1<<f) == 0 || seen&(1<<f) != 0 {
			return nil, false
		}
		seen |= 1 << f
		raw[f] = s.value()
		n++
	}
	if opt.RejectSampling && seen&(1<<fTemperature|1<<fTopP|1<<fTopK) != 0 {
		return nil, false
	}
	r = &MessageRequest{Fields: make([]string, 0, n)}
	for f := range numTopFields {
		if seen&(1<<f) != 0 {
			r.Fields = append(r.Fields, topFieldNames[f])
		}
	}

	if r.Model, ok = decodeString(raw[fModel]); !ok || r.Model == "" {
		return nil, false
	}
	if !opt.CountTokens {
		if r.MaxTokens, ok = decodeInt(raw[fMaxTokens]); !ok || r.MaxTokens < 1 {
			return nil, false
		}
		r.HasMaxTokens = true
		if v := raw[fStream]; v != nil && !isNullLit(v) {
			switch string(v) {
			case "true":
				r.Stream = true
			case "false":
			default:
				return nil, false
			}
			r.HasStream = true
		}
	}

	v := raw[fMessages]
	if len(v) == 0 || v[0] != '[' {
		return nil, false
	}
	s = scanner{b: v}
	s.arrayStart()
	for s.nextElem() {
		m, ok := s.message(opt)
		if !ok {
			return nil, false
		}
		r.Messages = append(r.Messages, m)
	}
	if len(r.Messages) == 0 {
		return nil, false
	}

	if v := raw[fSystem]; v != nil && !isNullLit(v) {
		s = scanner{b: v}
		blocks, ok := s.content()
		if !ok {
			return nil, false
		}
		for _, b := range blocks {
			if b.Type != "text" {
				return nil, false
			}
		}
		r.System = blocks
	}
	for _, f := range [...]int{fTemperature, fTopP} {
		if v := raw[f]; v != nil && !isNullLit(v) {
			x, err := strconv.ParseFloat(string(v), 64) // as encoding/json decodes a float64
			if err != nil || !(x >= 0 && x <= 1) || !isNumber(v) {
				return nil, false
			}
		}
	}
	if v := raw[fTopK]; v != nil && !isNullLit(v) {
		if _, ok := decodeInt(v); !ok {
			return nil, false
		}
	}
	if v := raw[fStopSequences]; v != nil && !isNullLit(v) {
		if v[0] != '[' {
			return nil, false
		}
		s = scanner{b: v}
		s.arrayStart()
		r.StopSequences = []string{}
		for s.nextElem() {
			str, ok := decodeString(s.value())
			if !ok {
				return nil, false
			}
			r.StopSequences = append(r.StopSequences, str)
		}
	}
	if v := raw[fTools]; v != nil && !isNullLit(v) {
		if v[0] != '[' {
			return nil, false
		}
		s = scanner{b: v}
		s.arrayStart()
		r.Tools = []Tool{}
		for s.nextElem() {
			t, ok := s.tool()
			if !ok || r.hasTool(t.Name) {
				return nil, false
			}
			r.Tools = append(r.Tools, t)
		}
	}
	if v := raw[fToolChoice]; v != nil && !isNullLit(v) {
		s = scanner{b: v}
		tc, ok := s.toolChoice()
		if !ok {
			return nil, false
		}
		switch tc.Type {
		case "auto", "none":
		case "any":
			if len(r.Tools) == 0 {
				return nil, false
			}
		case "tool":
			if tc.Name == "" || !r.hasTool(tc.Name) {
				return nil, false
			}
		default:
			return nil, false
		}
		r.ToolChoice = tc
	}
	if v := raw[fCacheControl]; v != nil && !isNullLit(v) {
		s = scanner{b: v}
		if r.CacheControl, ok = s.cacheControl(); !ok {
			return nil, false
		}
	}
	if v := raw[fMetadata]; v != nil && !isNullLit(v) && v[0] != '{' {
		return nil, false
	}
	return r, true
}

// message parses one item of messages[] (parseMessage).
func (s *scanner) message(opt ParseOptions) (Message, bool) {
	if !s.objectStart() {
		return Message{}, false
	}
	var m Message
	var haveRole, haveContent bool
	for {
		key, more := s.nextKey()
		if !more {
			break
		}
		switch string(key) {
		case "role":
			var ok bool
			if m.Role, ok = decodeString(s.value()); !ok || haveRole {
				return Message{}, false
			}
			haveRole = true
		case "content":
			var ok bool
			if m.Content, ok = s.content(); !ok || haveContent {
				return Message{}, false
			}
			haveContent = true
		default:
			if foldsTo(key, "role", "content") {
				return Message{}, false
			}
			s.value()
		}
	}
	if !haveRole || !haveContent {
		return Message{}, false
	}
	switch m.Role {
	case "user", "assistant":
	case "system":
		if !opt.AllowSystemRole {
			return Message{}, false
		}
		for _, b := range m.Content {
			if b.Type != "text" {
				return Message{}, false
			}
		}
	default:
		return Message{}, false
	}
	return m, true
}

// content parses a string or a list of blocks (parseContent).
func (s *scanner) content() ([]Block, bool) {
	s.ws()
	switch s.b[s.i] {
	case '"':
		text, ok := decodeString(s.value())
		if !ok {
			return nil, false
		}
		return []Block{{Type: "text", Text: text}}, true
	case '[':
		s.arrayStart()
		out := []Block{}
		for s.nextElem() {
			b, ok := s.block()
			if !ok {
				return nil, false
			}
			out = append(out, b)
		}
		return out, true
	}
	return nil, false
}

// block parses one content block (the loop body of parseContent).
func (s *scanner) block() (Block, bool) {
	if !s.objectStart() {
		return Block{}, false
	}
	const (
		kType = 1 << iota
		kText
		kThinking
		kInput
		kContent
		kSource
		kCacheControl
		kName
	)
	var (
		b                    Block
		seen                 int
		text, thinking, name string
		input, inner         []byte
		ok                   bool
	)
	for {
		key, more := s.nextKey()
		if !more {
			break
		}
		var k int
		switch string(key) {
		case "type":
			k = kType
			b.Type, ok = decodeString(s.value())
		case "text":
			k = kText
			text, ok = decodeString(s.value())
		case "thinking":
			k = kThinking
			thinking, ok = decodeString(s.value())
		case "name":
			k = kName
			name, ok = decodeString(s.value())
		case "input":
			k = kInput
			input = s.value()
			ok = !isNullLit(input)
		case "content":
			k = kContent
			s.ws()
			inner = s.b[s.i:]
			ok = !isNullLit(s.value())
		case "source":
			k = kSource
			ok = !isNullLit(s.value())
		case "cache_control":
			k = kCacheControl
			b.CacheControl, ok = s.cacheControl()
		default:
			if foldsTo(key, "type", "text", "thinking", "input", "content", "source", "cache_control", "name") {
				return Block{}, false
			}
			s.value()
			continue
		}
		if !ok || seen&k != 0 {
			return Block{}, false
		}
		seen |= k
	}
	if seen&kType == 0 {
		return Block{}, false
	}
	switch b.Type {
	case "text":
		if seen&kText == 0 {
			return Block{}, false
		}
		b.Text = text
	case "thinking", "redacted_thinking":
		b.Text = thinking
	case "tool_use", "server_tool_use":
		b.Text = name + string(input)
	case "tool_result", "web_search_tool_result":
		if seen&kContent != 0 {
			is := scanner{b: inner}
			blocks, ok := is.content()
			if !ok {
				return Block{}, false
			}
			if len(blocks) == 1 {
				b.Text, b.Media = blocks[0].Text, blocks[0].Media
			} else {
				var n int
				for _, ib := range blocks {
					n += len(ib.Text)
				}
				buf := make([]byte, 0, n)
				for _, ib := range blocks {
					b.Media = b.Media || ib.Media
					buf = append(buf, ib.Text...)
				}
				b.Text = string(buf)
			}
		}
	case "image", "document":
		if seen&kSource == 0 {
			return Block{}, false
		}
		b.Media = true
	case "search_result", "container_upload":
		b.Media = true
	default:
		return Block{}, false
	}
	return b, true
}

// cacheControl parses a cache_control object (parseCacheControl).
func (s *scanner) cacheControl() (*CacheControl, bool) {
	if !s.objectStart() {
		return nil, false
	}
	var cc CacheControl
	var seen int
	for {
		key, more := s.nextKey()
		if !more {
			break
		}
		var ok bool
		switch string(key) {
		case "type":
			cc.Type, ok = decodeString(s.value())
			ok = ok && seen&1 == 0
			seen |= 1
		case "ttl":
			cc.TTL, ok = decodeString(s.value())
			ok = ok && seen&2 == 0
			seen |= 2
		default:
			ok = !foldsTo(key, "type", "ttl")
			s.value()
		}
		if !ok {
			return nil, false
		}
	}
	if cc.Type != "ephemeral" {
		return nil, false
	}
	switch cc.TTL {
	case "":
		cc.TTL = "5m"
	case "5m", "1h":
	default:
		return nil, false
	}
	return &cc, true
}

// tool parses one tool definition (the loop body of parseTools).
func (s *scanner) tool() (Tool, bool) {
	s.ws()
	start := s.i
	if !s.objectStart() {
		return Tool{}, false
	}
	var t Tool
	var typ string
	var seen int
	for {
		key, more := s.nextKey()
		if !more {
			break
		}
		var k int
		ok := true
		switch string(key) {
		case "name":
			k = 1
			t.Name, ok = decodeString(s.value())
		case "type":
			k = 2
			typ, ok = decodeString(s.value())
		case "input_schema":
			k = 4
			t.InputSchema = s.value()
			ok = !isNullLit(t.InputSchema)
		case "cache_control":
			k = 8
			t.CacheControl, ok = s.cacheControl()
		default:
			if foldsTo(key, "name", "type", "input_schema", "cache_control") {
				return Tool{}, false
			}
			s.value()
			continue
		}
		if !ok || seen&k != 0 {
			return Tool{}, false
		}
		seen |= k
	}
	if t.Name == "" || (typ == "" || typ == "custom") && t.InputSchema == nil {
		return Tool{}, false
	}
	t.Raw = s.b[start:s.i]
	return t, true
}

// toolChoice parses tool_choice's type and name.
func (s *scanner) toolChoice() (ToolChoice, bool) {
	if !s.objectStart() {
		return ToolChoice{}, false
	}
	var tc ToolChoice
	var seen int
	for {
		key, more := s.nextKey()
		if !more {
			break
		}
		var ok bool
		switch string(key) {
		case "type":
			tc.Type, ok = decodeString(s.value())
			ok = ok && seen&1 == 0
			seen |= 1
		case "name":
			tc.Name, ok = decodeString(s.value())
			ok = ok && seen&2 == 0
			seen |= 2
		default:
			ok = !foldsTo(key, "type", "name")
			s.value()
		}
		if !ok {
			return ToolChoice{}, false
		}
	}
	return tc, true
}
