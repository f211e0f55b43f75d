package cacheprefix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/wire"
)

// agentBody is a request of about size bytes shaped like a coding agent's: tool
// definitions, a long system prompt and a conversation of text and tool blocks
// (code with quotes, newlines and <, >, &), with breakpoints on the last tool, the
// system prompt and the last message when cc is set.
func agentBody(size int, cc bool) []byte {
	code := "func f(a, b int) bool {\n\tif a < b && b > 0 {\n\t\treturn fmt.Sprintf(\"%d\", a) == \"x\"\n\t}\n\treturn false\n}\n"
	ephemeral := map[string]any{"type": "ephemeral"}
	var tools []any
	for i := range 8 {
		tools = append(tools, map[string]any{"name": fmt.Sprintf("tool_%d", i), "description": strings.Repeat("Runs a command & returns <output>. ", 10),
			"input_schema": map[string]any{"type": "object", "properties": map[string]any{"command": map[string]any{"type": "string"}}}})
	}
	sys := map[string]any{"type": "text", "text": strings.Repeat("You are a coding agent. Follow the user's \"instructions\".\n", size/4/60)}
	if cc {
		tools[len(tools)-1].(map[string]any)["cache_control"] = ephemeral
		sys["cache_control"] = ephemeral
	}
	var content []any
	for {
		content = append(content, map[string]any{"type": "text", "text": code},
			map[string]any{"type": "tool_result", "tool_use_id": "toolu_1", "content": code})
		last := content[len(content)-1].(map[string]any)
		if cc {
			last["cache_control"] = ephemeral
		}
		b, _ := json.Marshal(map[string]any{"model": "claude-sonnet-5", "max_tokens": 4096, "tools": tools, "system": []any{sys},
			"messages": []any{map[string]any{"role": "user", "content": content}}})
		if len(b) >= size {
			return b
		}
		delete(last, "cache_control")
		// Grow by about a tenth of what is missing at a time.
		for range (size - len(b)) / 10 / (2 * len(code)) {
			content = append(content, map[string]any{"type": "text", "text": code},
				map[string]any{"type": "tool_result", "tool_use_id": "toolu_1", "content": code})
		}
	}
}

// BenchmarkCachePrefix is a body's prefix as admit and clade serve find it (intake.CachePrefix:
// the "cache_control" check, wire.ParseMessageRequest, Of, Last) with Of's one scan
// ("scan") and with the former second decode ("decode", ofOracle), on bodies with
// and without cache_control; "parse_only" stops after the parse, the floor of both.
func BenchmarkCachePrefix(b *testing.B) {
	for _, size := range []int{24_000, 150_000} {
		for _, cc := range []bool{true, false} {
			body := agentBody(size, cc)
			for _, impl := range []struct {
				name string
				of   func(string, *wire.MessageRequest, []byte) Scan
			}{{"decode", ofOracle}, {"scan", Of}, {"parse_only", nil}} {
				name := fmt.Sprintf("%dKB/cache_control=%v/%s", size/1000, cc, impl.name)
				b.Run(name, func(b *testing.B) {
					b.ReportAllocs()
					b.SetBytes(int64(len(body)))
					var p Prefix
					for b.Loop() {
						p = Prefix{}
						if !bytes.Contains(body, []byte(`"cache_control"`)) {
							continue
						}
						req, err := wire.ParseMessageRequest(body, wire.ParseOptions{AllowSystemRole: true})
						if err != nil {
							b.Fatal(err)
						}
						if impl.of == nil {
							p.Tokens = req.MaxTokens
							continue
						}
						p, _ = impl.of("claude-sonnet-5", req, body).Last(0)
					}
					if cc && p.Tokens == 0 {
						b.Fatal("no prefix")
					}
				})
			}
		}
	}
}
