package emulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clade-dev/clade/internal/wire"
)

// TestSchemaStreamCarriesGenerated: a stream's text_delta and input_json_delta events
// carry exactly the value generate planned for the same body, split on rune
// boundaries (the schema's enum values are multi-byte).
func TestSchemaStreamCarriesGenerated(t *testing.T) {
	t.Parallel()
	const schema = `{"type":"object","properties":{"w":{"type":"array","items":{"enum":["café","日本語","🙂🙂🙂"]},"minItems":12,"maxItems":12}},"required":["w"],"additionalProperties":false}`
	bodies := map[string]string{
		"text": `{"model":"claude-haiku-4-5","max_tokens":4000,"stream":true,"messages":[{"role":"user","content":"x"}],"output_config":{"format":{"type":"json_schema","schema":` + schema + `}}}`,
		"tool": `{"model":"claude-haiku-4-5","max_tokens":4000,"stream":true,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"t","input_schema":` + schema + `}],"tool_choice":{"type":"any"}}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := New(Config{Tier: "unlimited", Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			req, err := wire.ParseMessageRequest([]byte(body), wire.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g := s.generate(req, []byte(body))
			var want string
			switch b := g.blocks[len(g.blocks)-1].(type) {
			case TextBlock:
				want = b.Text
			case ToolUseBlock:
				want = string(b.Input)
			}
			if utf8.RuneCountInString(want) == len(want) || len(want) <= streamChunkTokens*4 {
				t.Fatalf("planned %q: want multi-byte runes over several chunks, or the test splits nothing", want)
			}

			hr := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(body))
			hr.Header.Set("Content-Type", "application/json")
			hr.Header.Set("X-Api-Key", "sk-ant-test")
			hr.Header.Set("Anthropic-Version", Version2023)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, hr)
			var got strings.Builder
			deltas := 0
			sc := bufio.NewScanner(bytes.NewReader(rec.Body.Bytes()))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				var ev struct {
					Type  string `json:"type"`
					Index int    `json:"index"`
					Delta struct {
						Type        string `json:"type"`
						Text        string `json:"text"`
						PartialJSON string `json:"partial_json"`
					} `json:"delta"`
				}
				if err := json.Unmarshal([]byte(data), &ev); err != nil {
					t.Fatalf("event %s: %v", data, err)
				}
				if ev.Type == "content_block_delta" && ev.Index == len(g.blocks)-1 {
					got.WriteString(ev.Delta.Text + ev.Delta.PartialJSON)
					deltas++
				}
			}
			if deltas < 2 {
				t.Fatalf("stream %s: %d deltas, want several", rec.Body.Bytes(), deltas)
			}
			if got.String() != want {
				t.Errorf("streamed %q, want the planned %q", got.String(), want)
			}
		})
	}
}
