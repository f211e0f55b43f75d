package emulator

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"
	"unicode/utf8"

	"github.com/clade-dev/clade/internal/wire"
)

// pieces are the 4-byte units generated text is made of; each is one output token.
var pieces = [...]string{
	"the ", "and ", "for ", "are ", "but ", "not ", "you ", "all ", "any ", "can ",
	"had ", "her ", "was ", "one ", "our ", "out ", "day ", "get ", "has ", "him ",
	"his ", "how ", "man ", "new ", "now ", "old ", "see ", "two ", "way ", "who ",
	"its ", "let ", "put ", "say ", "she ", "too ", "use ", "set ", "run ", "key ",
	"map ", "row ", "sum ", "top ", "end ", "log ", "net ", "job ", "bit ", "cat ",
}

// TextBlock is a text content block of a response.
type TextBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// ToolUseBlock is a tool_use content block of a response.
type ToolUseBlock struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// generation is the planned output of one request.
type generation struct {
	blocks       []any // TextBlock, ToolUseBlock, ThinkingBlock or RedactedThinkingBlock
	outputTokens int64
	// thinkingTokens of outputTokens were thinking; thinking is set when the
	// request asked for thinking, so the usage details it.
	thinkingTokens int64
	thinking       bool
	stopReason     string
	stopSequence   *string
}

// requestRand returns the request's deterministic random source: the server seed and
// the request body together, so the same seed and body give the same response whatever
// the concurrency. The body's "stream":true member (as clients write it: compact or
// with one space) is left out, so a request gives the same answer streamed or not.
func (s *Server) requestRand(body []byte) *rand.Rand {
	h := fnv.New64a()
	h.Write(withoutStream(body))
	return rand.New(rand.NewPCG(uint64(s.cfg.Seed), h.Sum64()))
}

// streamMembers are the spellings of a "stream":true member that withoutStream
// removes, with the comma that joins it to its neighbour.
var streamMembers = [][]byte{
	[]byte(`,"stream":true`), []byte(`"stream":true,`),
	[]byte(`, "stream": true`), []byte(`"stream": true, `),
}

// withoutStream is body without its first "stream":true member, or body.
func withoutStream(body []byte) []byte {
	if !bytes.Contains(body, []byte(`"stream"`)) {
		return body
	}
	for _, m := range streamMembers {
		if i := bytes.Index(body, m); i >= 0 {
			out := make([]byte, 0, len(body)-len(m))
			return append(append(out, body[:i]...), body[i+len(m):]...)
		}
	}
	return body
}

// drawLength draws an output length from the log-normal output model.
func (s *Server) drawLength(rng *rand.Rand) int64 {
	m := s.cfg.Output
	n := m.MedianTokens
	if m.Sigma > 0 {
		n = m.MedianTokens * math.Exp(m.Sigma*rng.NormFloat64())
	}
	return max(1, int64(math.Round(n)))
}

// generate plans the response to req without thinking settings (see generateWith).
func (s *Server) generate(req *wire.MessageRequest, body []byte) generation {
	return s.generateWith(req, body, nil, false)
}

// generateWith plans the response to req: a thinking block first when tc asks for
// one (see thinking.go), then text whose length follows the output model and what
// max_tokens leaves, a tool_use block when tools call for one, and the right
// stop_reason.
func (s *Server) generateWith(req *wire.MessageRequest, body []byte, tc *thinkingConfig, interleaved bool) generation {
	rng := s.requestRand(body)
	want := s.drawLength(rng)
	ok, n := tc.thinks(rng, req, interleaved, want)
	if !ok {
		g := s.answer(rng, want, req.MaxTokens, req, body)
		g.thinking = tc != nil
		return g
	}
	if n >= req.MaxTokens {
		// The model runs out of tokens while thinking.
		return generation{blocks: []any{s.thinkingBlock(rng, tc, req.MaxTokens)}, outputTokens: req.MaxTokens,
			thinkingTokens: req.MaxTokens, stopReason: "max_tokens", thinking: true}
	}
	think := s.thinkingBlock(rng, tc, n)
	g := s.answer(rng, want, req.MaxTokens-n, req, body)
	g.blocks = append([]any{think}, g.blocks...)
	g.outputTokens += n
	g.thinkingTokens, g.thinking = n, true
	return g
}

// answer plans the text or tool call of a response given at most maxTok tokens.
func (s *Server) answer(rng *rand.Rand, want, maxTok int64, req *wire.MessageRequest, body []byte) generation {
	format := outputSchema(body)
	var g generation

	useTool := false
	named := -1 // the tool the last user text names, under tool_choice auto
	if len(req.Tools) > 0 {
		switch req.ToolChoice.Type {
		case "any", "tool":
			useTool = true
		case "none":
		default:
			named = namedTool(req)
			useTool = named >= 0 || rng.IntN(2<<min(toolRounds(req), 20)) == 0
		}
	}
	if useTool {
		tool := req.Tools[rng.IntN(len(req.Tools))]
		if named >= 0 {
			tool = req.Tools[named]
		}
		if req.ToolChoice.Type == "tool" {
			for _, t := range req.Tools {
				if t.Name == req.ToolChoice.Name {
					tool = t
				}
			}
		}
		input := json.RawMessage(schemaValue(tool.InputSchema, rng, want, true))
		toolTokens := textTokens(tool.Name) + textTokens(string(input))
		preface := int64(0)
		if format == nil && (req.ToolChoice.Type == "" || req.ToolChoice.Type == "auto") {
			preface = min(want/4+1, 40)
		}
		if preface+toolTokens <= maxTok {
			if preface > 0 {
				g.blocks = append(g.blocks, TextBlock{Type: "text", Text: makeText(rng, preface)})
			}
			g.blocks = append(g.blocks, ToolUseBlock{Type: "tool_use", ID: newID("toolu_"), Name: tool.Name, Input: input})
			g.outputTokens = preface + toolTokens
			g.stopReason = "tool_use"
			return g
		}
		// Not enough room for the call: the model runs out of tokens mid-text.
		want = maxTok + 1
		format = nil
	}
	if format != nil {
		// Structured output: the text is a value of the schema, cut at max_tokens.
		text := string(schemaValue(format, rng, want, false))
		g.stopReason = "end_turn"
		if textTokens(text) > maxTok {
			text = cutUTF8(text, int(maxTok)*4)
			g.stopReason = "max_tokens"
		}
		g.blocks = append(g.blocks, TextBlock{Type: "text", Text: text})
		g.outputTokens = textTokens(text)
		return g
	}

	n := want
	g.stopReason = "end_turn"
	if n >= maxTok {
		n = maxTok
		g.stopReason = "max_tokens"
	}
	text := makeText(rng, n)
	if len(req.StopSequences) > 0 && rng.IntN(4) == 0 && n > 1 {
		// Stop early on a stop sequence: the sequence itself is not in the text.
		seq := req.StopSequences[rng.IntN(len(req.StopSequences))]
		cut := 1 + rng.Int64N(n)
		text = text[:cut*4]
		n = cut + textTokens(seq)
		g.stopReason = "stop_sequence"
		g.stopSequence = &seq
		if n > maxTok {
			n = maxTok
		}
	}
	g.blocks = append(g.blocks, TextBlock{Type: "text", Text: text})
	g.outputTokens = n
	return g
}

func makeText(rng *rand.Rand, n int64) string {
	var b strings.Builder
	b.Grow(int(n) * 4)
	for i := int64(0); i < n; i++ {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

// outputSchema returns the JSON schema of a request's structured output
// (output_config.format, or the older top-level output_format, of type json_schema),
// or nil.
func outputSchema(body []byte) []byte {
	if !bytes.Contains(body, []byte(`"output_config"`)) && !bytes.Contains(body, []byte(`"output_format"`)) {
		return nil
	}
	type format struct {
		Type   string          `json:"type"`
		Schema json.RawMessage `json:"schema"`
	}
	var r struct {
		OutputConfig struct {
			Format *format `json:"format"`
		} `json:"output_config"`
		OutputFormat *format `json:"output_format"`
	}
	if json.Unmarshal(body, &r) != nil {
		return nil
	}
	for _, f := range []*format{r.OutputConfig.Format, r.OutputFormat} {
		if f != nil && f.Type == "json_schema" && len(f.Schema) > 0 && !bytes.Equal(f.Schema, []byte("null")) {
			return f.Schema
		}
	}
	return nil
}

// cutUTF8 returns s cut to at most n bytes, on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// namedTool is the index of the tool that the last message's text names, as a
// whole word, when that message (system-role messages aside) is the user's own
// text, not tool results: asked
// to use a tool, the model uses it. -1 when none is named. Of several named, the
// one named first wins.
func namedTool(req *wire.MessageRequest) int {
	i := len(req.Messages) - 1
	for i >= 0 && req.Messages[i].Role == "system" { // mid-conversation system messages
		i--
	}
	if i < 0 || req.Messages[i].Role != "user" {
		return -1
	}
	last := req.Messages[i]
	best, at := -1, -1
	for _, b := range last.Content {
		if b.Type == "tool_result" {
			return -1
		}
		if b.Type != "text" {
			continue
		}
		for i, t := range req.Tools {
			if p := wordIndex(b.Text, t.Name); p >= 0 && (at < 0 || p < at) {
				best, at = i, p
			}
		}
		if best >= 0 {
			return best
		}
	}
	return best
}

// wordIndex is the first index of word in s where it stands as a whole word (no
// letter, digit or underscore on either side), or -1.
func wordIndex(s, word string) int {
	if word == "" {
		return -1
	}
	isWord := func(c byte) bool {
		return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for from := 0; from < len(s); {
		i := strings.Index(s[from:], word)
		if i < 0 {
			return -1
		}
		i += from
		end := i + len(word)
		if (i == 0 || !isWord(s[i-1])) && (end == len(s) || !isWord(s[end])) {
			return i
		}
		from = i + 1
	}
	return -1
}

// toolRounds counts the tool round trips so far: the tool_result blocks of the
// conversation. Under tool_choice auto the chance of another tool call halves with
// each, so that an agent loop against the emulator ends as a real one does.
func toolRounds(req *wire.MessageRequest) int {
	n := 0
	for _, m := range req.Messages {
		for _, b := range m.Content {
			if b.Type == "tool_result" {
				n++
			}
		}
	}
	return n
}
