package emulator

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"strconv"

	"github.com/clade-dev/clade/internal/wire"
)

// Thinking, as the API does it (docs/emulator.md, "Thinking"):
//
//   - thinking {type: enabled, budget_tokens: N} thinks at the start of each
//     assistant turn, at most N tokens (N ≥ 1024 and below max_tokens); with the
//     interleaved-thinking beta it thinks again after each tool result.
//   - thinking {type: adaptive} lets the model decide: the emulator thinks with a
//     chance that grows with output_config.effort (low 1/4, medium 1/2, high — the
//     default — 3/4, xhigh and max always), interleaved with tool use.
//   - {type: disabled} and no thinking: no thinking blocks.
//   - display "summarized" (the default) returns the thinking text; "omitted"
//     returns an empty thinking with its signature; "updates" (with
//     ThinkingDisplayUpdatesBeta) returns the text as "summarized" does. Either way every thinking token
//     counts in output_tokens (and OTPM), and in usage.output_tokens_details.
//   - A share of thinking blocks (Config.RedactedThinkingRate) comes back as
//     redacted_thinking with opaque data.
//   - Signatures and redacted data are MACs under a key derived from Config.Seed:
//     a thinking or redacted_thinking block passed back in an assistant message
//     must be unchanged, or the request gets the API's 400.

// thinkingConfig is a request's thinking and effort settings.
type thinkingConfig struct {
	Type         string `json:"type"`
	BudgetTokens *int64 `json:"budget_tokens"`
	Display      string `json:"display"`
	effort       string
}

// ThinkingBlock is a thinking content block of a response.
type ThinkingBlock struct {
	Type      string `json:"type"`
	Thinking  string `json:"thinking"`
	Signature string `json:"signature"`
	// tokens is what the thinking cost, shown or not.
	tokens int64
}

// RedactedThinkingBlock is a redacted_thinking content block of a response.
type RedactedThinkingBlock struct {
	Type   string `json:"type"`
	Data   string `json:"data"`
	tokens int64
}

// OutputTokensDetails splits output_tokens; sent when the request asked for thinking.
type OutputTokensDetails struct {
	ThinkingTokens int64 `json:"thinking_tokens"`
}

// InterleavedThinkingBeta lets thinking {type: enabled} think between tool calls.
const InterleavedThinkingBeta = "interleaved-thinking-2025-05-14"

// ThinkingDisplayUpdatesBeta lets thinking take display "updates" (Claude Code
// 2.1.332 sends it with adaptive thinking on its first request of a session).
const ThinkingDisplayUpdatesBeta = "thinking-display-updates-2026-08-18"

// parseThinking reads and checks a request's thinking settings; nil when the body
// has none (or disables thinking). updates: the request carries
// ThinkingDisplayUpdatesBeta.
func parseThinking(body []byte, req *wire.MessageRequest, interleaved, updates bool) (*thinkingConfig, *wire.Error) {
	if !bytes.Contains(body, []byte(`"thinking"`)) {
		return nil, nil
	}
	var r struct {
		Thinking     *thinkingConfig `json:"thinking"`
		OutputConfig struct {
			Effort string `json:"effort"`
		} `json:"output_config"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Thinking == nil {
		return nil, nil // the request parser has judged the body's shape
	}
	t := r.Thinking
	t.effort = r.OutputConfig.Effort
	switch t.Type {
	case "disabled":
		return nil, nil
	case "enabled":
		if t.BudgetTokens == nil {
			return nil, wire.Errorf(wire.InvalidRequest, "thinking.enabled.budget_tokens: Field required")
		}
		if *t.BudgetTokens < 1024 {
			return nil, wire.Errorf(wire.InvalidRequest, "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
		}
		if !interleaved && *t.BudgetTokens >= req.MaxTokens {
			return nil, wire.Errorf(wire.InvalidRequest, "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size")
		}
	case "adaptive", "between_tools":
	default:
		return nil, wire.Errorf(wire.InvalidRequest, "thinking.type: Input tag '%s' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'", t.Type)
	}
	switch t.Display {
	case "", "summarized", "omitted":
	case "updates":
		if !updates {
			return nil, wire.Errorf(wire.InvalidRequest, "thinking.%s.display: Input should be 'summarized' or 'omitted'", t.Type)
		}
	default:
		return nil, wire.Errorf(wire.InvalidRequest, "thinking.%s.display: Input should be 'summarized' or 'omitted'", t.Type)
	}
	if req.ToolChoice.Type == "any" || req.ToolChoice.Type == "tool" {
		return nil, wire.Errorf(wire.InvalidRequest, "Thinking may not be enabled when tool_choice forces tool use.")
	}
	return t, nil
}

// thinks decides whether this response starts with a thinking block, and how many
// tokens it thinks (before max_tokens cuts it).
func (t *thinkingConfig) thinks(rng *rand.Rand, req *wire.MessageRequest, interleaved bool, want int64) (bool, int64) {
	if t == nil {
		return false, 0
	}
	afterTool := afterToolResult(req)
	switch t.Type {
	case "enabled":
		if afterTool && !interleaved {
			return false, 0 // thinking opens a turn; a tool result continues it
		}
		return true, min(*t.BudgetTokens, 2*want+rng.Int64N(64)+16)
	case "between_tools":
		if !afterTool {
			return false, 0
		}
	}
	// adaptive (and between_tools after a tool result): by effort.
	chance, scale := 3, int64(2)
	switch t.effort {
	case "low":
		chance, scale = 1, 1
	case "medium":
		chance, scale = 2, 1
	case "xhigh", "max":
		chance, scale = 4, 3
	}
	if rng.IntN(4) >= chance {
		return false, 0
	}
	return true, scale*want + rng.Int64N(64) + 16
}

// afterToolResult reports whether the last user message (system-role messages
// aside) carries tool results: the response continues a turn.
func afterToolResult(req *wire.MessageRequest) bool {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		m := req.Messages[i]
		if m.Role == "system" {
			continue
		}
		if m.Role != "user" {
			return false
		}
		for _, b := range m.Content {
			if b.Type == "tool_result" {
				return true
			}
		}
		return false
	}
	return false
}

// thinkingBlock makes the thinking block of n tokens.
func (s *Server) thinkingBlock(rng *rand.Rand, t *thinkingConfig, n int64) any {
	nonce := rng.Uint64()
	if s.cfg.RedactedThinkingRate > 0 && rng.Float64() < s.cfg.RedactedThinkingRate {
		return RedactedThinkingBlock{Type: "redacted_thinking", Data: s.seal(nonce, "redacted", 96+int(n%64)), tokens: n}
	}
	text := makeText(rng, n)
	shown := text
	if t.Display == "omitted" {
		shown = ""
	}
	return ThinkingBlock{Type: "thinking", Thinking: shown, Signature: s.seal(nonce, shown, 48), tokens: n}
}

// seal returns base64(nonce ‖ MAC(nonce ‖ what) ‖ filler): opaque, as the API's
// signatures are, and checkable by this emulator (and any with the same seed).
func (s *Server) seal(nonce uint64, what string, filler int) string {
	b := binary.BigEndian.AppendUint64(nil, nonce)
	b = append(b, s.mac(b[:8], what)...)
	f := rand.New(rand.NewPCG(nonce, uint64(filler)))
	for range filler {
		b = append(b, byte(f.Uint32()))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Server) mac(nonce []byte, what string) []byte {
	key := sha256.Sum256([]byte("clade-emulator thinking " + strconv.FormatInt(s.cfg.Seed, 10)))
	m := hmac.New(sha256.New, key[:])
	m.Write(nonce)
	m.Write([]byte(what))
	return m.Sum(nil)
}

// opened reports whether sealed was made by seal for what.
func (s *Server) opened(sealed, what string) bool {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(b) < 8+sha256.Size {
		return false
	}
	return hmac.Equal(b[8:8+sha256.Size], s.mac(b[:8], what))
}

// checkThinkingBlocks answers the API's 400 when an assistant message passes back
// a thinking block whose text or signature was changed, or redacted data that was.
func (s *Server) checkThinkingBlocks(body []byte) *wire.Error {
	if !bytes.Contains(body, []byte(`"signature"`)) && !bytes.Contains(body, []byte(`"redacted_thinking"`)) {
		return nil
	}
	var r struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if json.Unmarshal(body, &r) != nil {
		return nil
	}
	for i, m := range r.Messages {
		if m.Role != "assistant" {
			continue
		}
		var blocks []struct {
			Type      string `json:"type"`
			Thinking  string `json:"thinking"`
			Signature string `json:"signature"`
			Data      string `json:"data"`
		}
		if json.Unmarshal(m.Content, &blocks) != nil {
			continue
		}
		for j, b := range blocks {
			switch {
			case b.Type == "thinking" && !s.opened(b.Signature, b.Thinking):
				return wire.Errorf(wire.InvalidRequest, "messages.%d.content.%d: Invalid `signature` in `thinking` block", i, j)
			case b.Type == "redacted_thinking" && !s.opened(b.Data, "redacted"):
				return wire.Errorf(wire.InvalidRequest, "messages.%d.content.%d: Invalid `data` in `redacted_thinking` block", i, j)
			}
		}
	}
	return nil
}

func hasBeta(betas []string, beta string) bool {
	for _, b := range betas {
		if b == beta {
			return true
		}
	}
	return false
}
