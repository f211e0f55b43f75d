package emulator

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

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
	blocks       []any // TextBlock or ToolUseBlock
	outputTokens int64
	stopReason   string
	stopSequence *string
}

// requestRand returns the request's deterministic random source: the server seed and
// the request body together, so the same seed and body give the same response whatever
// the concurrency.
func (s *Server) requestRand(body []byte) *rand.Rand {
	h := fnv.New64a()
	h.Write(body)
	return rand.New(rand.NewPCG(uint64(s.cfg.Seed), h.Sum64()))
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

// generate plans the response to req: text whose length follows the output model and
// max_tokens, a tool_use block when tools call for one, and the right stop_reason.
func (s *Server) generate(req *wire.MessageRequest, body []byte) generation {
	rng := s.requestRand(body)
	want := s.drawLength(rng)
	maxTok := req.MaxTokens
	var g generation

	useTool := false
	if len(req.Tools) > 0 {
		switch req.ToolChoice.Type {
		case "any", "tool":
			useTool = true
		case "none":
		default:
			useTool = rng.IntN(2) == 0
		}
	}
	if useTool {
		tool := req.Tools[rng.IntN(len(req.Tools))]
		if req.ToolChoice.Type == "tool" {
			for _, t := range req.Tools {
				if t.Name == req.ToolChoice.Name {
					tool = t
				}
			}
		}
		input := fakeInput(tool.InputSchema, rng)
		toolTokens := textTokens(tool.Name) + textTokens(string(input))
		preface := int64(0)
		if req.ToolChoice.Type == "" || req.ToolChoice.Type == "auto" {
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

// fakeInput builds a tool input that fits a JSON schema's top-level properties.
func fakeInput(schema json.RawMessage, rng *rand.Rand) json.RawMessage {
	var sch struct {
		Properties map[string]struct {
			Type any   `json:"type"`
			Enum []any `json:"enum"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	_ = json.Unmarshal(schema, &sch)
	names := make([]string, 0, len(sch.Properties))
	for k := range sch.Properties {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make(map[string]any, len(names))
	for _, k := range names {
		p := sch.Properties[k]
		if len(p.Enum) > 0 {
			out[k] = p.Enum[rng.IntN(len(p.Enum))]
			continue
		}
		typ, _ := p.Type.(string)
		switch typ {
		case "integer":
			out[k] = rng.IntN(100)
		case "number":
			out[k] = math.Round(rng.Float64()*1000) / 10
		case "boolean":
			out[k] = rng.IntN(2) == 0
		case "array":
			out[k] = []any{}
		case "object":
			out[k] = map[string]any{}
		case "null":
			out[k] = nil
		default:
			out[k] = strings.TrimSpace(makeText(rng, 3))
		}
	}
	b, _ := json.Marshal(out)
	return b
}
