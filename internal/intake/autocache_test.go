package intake_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/intake"
)

// sonnetMin is the test catalog: claude-sonnet-5 caches prefixes of 1,024 tokens.
func sonnetMin(model string) (int64, bool) {
	if model == "claude-sonnet-5" {
		return 1024, true
	}
	return 0, false
}

// longText is about n tokens of text (4 bytes a token).
func longText(seed string, n int) string {
	return strings.Repeat(seed+" ", 4*n/(len(seed)+1)+1)
}

func line(id string, params map[string]any) string {
	b, err := json.Marshal(map[string]any{"custom_id": id, "params": params})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func ask(system any, q string) map[string]any {
	p := map[string]any{"model": "claude-sonnet-5", "max_tokens": 16,
		"messages": []any{map[string]any{"role": "user", "content": q}}}
	if system != nil {
		p["system"] = system
	}
	return p
}

// autoResult is what Apply did to one line.
type autoResult struct {
	params []byte
	cache  cacheprefix.Prefix
	added  bool
}

// applyAll plans over input and applies to every valid line, checking that the
// input bytes are not changed.
func applyAll(t *testing.T, input string) ([]autoResult, *intake.AutoCache) {
	t.Helper()
	a, err := intake.PlanAutoCache(strings.NewReader(input), sonnetMin)
	if err != nil {
		t.Fatalf("PlanAutoCache: %v", err)
	}
	orig := []byte(input)
	rd := intake.NewReader(bytes.NewReader(orig), intake.Options{})
	var out []autoResult
	for {
		req, prob, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil || prob != nil {
			t.Fatalf("Next() = %v, %v", prob, err)
		}
		added := a.Apply(req)
		out = append(out, autoResult{params: req.Params, cache: req.Cache, added: added})
	}
	if string(orig) != input {
		t.Fatalf("the input bytes changed")
	}
	return out, a
}

// breakpoints counts cache_control members in params.
func breakpoints(p []byte) int { return bytes.Count(p, []byte(`"cache_control"`)) }

func TestAutoCacheSharedSystem(t *testing.T) {
	t.Parallel()
	system := longText("You are a careful assistant.", 2000)
	const n = 6
	var lines []string
	for i := range n {
		lines = append(lines, line(fmt.Sprintf("q%d", i), ask(system, fmt.Sprintf("question %d?", i))))
	}
	res, a := applyAll(t, strings.Join(lines, "\n")+"\n")
	if len(res) != n {
		t.Fatalf("%d lines read, want %d", len(res), n)
	}
	for i, r := range res {
		if !r.added || breakpoints(r.params) != 1 {
			t.Fatalf("line %d: added %v with %d breakpoints, want one:\n%.200s", i+1, r.added, breakpoints(r.params), r.params)
		}
		var p struct {
			System []struct {
				Type, Text   string
				CacheControl map[string]string `json:"cache_control"`
			}
			Messages json.RawMessage
		}
		if err := json.Unmarshal(r.params, &p); err != nil {
			t.Fatalf("line %d: params do not parse: %v", i+1, err)
		}
		if len(p.System) != 1 || p.System[0].Text != system || p.System[0].CacheControl["type"] != "ephemeral" {
			t.Fatalf("line %d: system = %.200v, want the prompt as one text block with an ephemeral breakpoint", i+1, p.System)
		}
		if want := fmt.Sprintf(`[{"content":"question %d?","role":"user"}]`, i); string(p.Messages) != want {
			t.Errorf("line %d: messages = %s, want %s (untouched)", i+1, p.Messages, want)
		}
		if r.cache.Key != res[0].cache.Key || r.cache.Tokens < 1024 {
			t.Errorf("line %d: Cache = %+v, want line 1's %+v of ≥ 1024 tokens", i+1, r.cache, res[0].cache)
		}
		if got := intake.CachePrefix("claude-sonnet-5", r.params); got != r.cache {
			t.Errorf("line %d: Cache = %+v, want the prefix of the params stored, %+v", i+1, r.cache, got)
		}
	}
	if lines, prefixes := a.Added(); lines != n || prefixes != 1 {
		t.Errorf("Added() = %d, %d, want %d, 1", lines, prefixes, n)
	}
}

func TestAutoCacheLeavesLines(t *testing.T) {
	t.Parallel()
	long := longText("Shared context for every question.", 2000)
	other := longText("A long prompt only one line uses.", 2000)
	short := longText("Short shared prompt.", 200)
	block := func(text string, cc bool) map[string]any {
		b := map[string]any{"type": "text", "text": text}
		if cc {
			b["cache_control"] = map[string]string{"type": "ephemeral"}
		}
		return b
	}
	lines := []string{
		line("shared-1", ask([]any{block(long, false)}, "a?")),
		line("shared-2", ask([]any{block(long, false)}, "b?")),
		line("own-cc", ask([]any{block(long, true)}, "c?")),
		line("alone", ask(other, "d?")),
		line("short-1", ask(short, "e?")),
		line("short-2", ask(short, "f?")),
		line("nosystem-1", ask(nil, "g?")),
		line("nosystem-2", ask(nil, "g?")),
	}
	input := strings.Join(lines, "\n") + "\n"
	res, a := applyAll(t, input)
	want := []bool{true, true, false, false, false, false, false, false}
	rd := intake.NewReader(strings.NewReader(input), intake.Options{})
	for i, r := range res {
		orig, _, _ := rd.Next()
		if r.added != want[i] {
			t.Errorf("line %d (%s): added = %v, want %v", i+1, orig.CustomID, r.added, want[i])
		}
		if !r.added && !bytes.Equal(r.params, orig.Params) {
			t.Errorf("line %d (%s): params changed without a breakpoint added:\n%.300s", i+1, orig.CustomID, r.params)
		}
		if r.added && breakpoints(r.params) != 1 {
			t.Errorf("line %d: %d breakpoints, want 1", i+1, breakpoints(r.params))
		}
	}
	// The line with its own breakpoint shares the prefix of the shared lines: the
	// same block, so it counts and is counted as shared, but stays as written.
	if res[2].cache.Key != res[0].cache.Key {
		t.Errorf("own-cc's prefix %v differs from shared-1's %v: the added breakpoint is not where the API would put it", res[2].cache.Key, res[0].cache.Key)
	}
	if lines, prefixes := a.Added(); lines != 2 || prefixes != 1 {
		t.Errorf("Added() = %d, %d, want 2, 1", lines, prefixes)
	}
}

func TestAutoCacheFirstUserMessage(t *testing.T) {
	t.Parallel()
	doc := longText("A long document both questions are about.", 2000)
	msg := func(q string) map[string]any {
		return map[string]any{"model": "claude-sonnet-5", "max_tokens": 16, "messages": []any{
			map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "text", "text": doc},
				map[string]any{"type": "text", "text": q},
			}},
		}}
	}
	res, _ := applyAll(t, line("a", msg("first?"))+"\n"+line("b", msg("second?"))+"\n")
	for i, r := range res {
		var p struct {
			Messages []struct {
				Content []map[string]any
			}
		}
		if err := json.Unmarshal(r.params, &p); err != nil {
			t.Fatal(err)
		}
		c := p.Messages[0].Content
		if !r.added || c[0]["cache_control"] == nil || c[1]["cache_control"] != nil {
			t.Errorf("line %d: added %v, content %.200v: want the breakpoint on the document block only", i+1, r.added, c)
		}
	}
	if res[0].cache.Key != res[1].cache.Key {
		t.Errorf("prefixes differ: %v, %v", res[0].cache.Key, res[1].cache.Key)
	}
}

// FuzzAutoCache checks that the params Apply writes are valid JSON with exactly
// one breakpoint, for any line that parses, and that the line is not changed.
func FuzzAutoCache(f *testing.F) {
	system := longText("Shared.", 1100)
	f.Add(line("a", ask(system, "q?")))
	f.Add(line("a", ask([]any{map[string]any{"type": "text", "text": system}}, "q?")))
	f.Add(`{"custom_id":"a","params":{"model":"claude-sonnet-5","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"` +
		strings.Repeat("x ", 2100) + `"},{ }]}]}}`)
	f.Fuzz(func(t *testing.T, l string) {
		input := l + "\n" + l + "\n"
		a, err := intake.PlanAutoCache(strings.NewReader(input), sonnetMin)
		if err != nil {
			t.Fatal(err)
		}
		req, prob := intake.ParseLine(1, []byte(l))
		if prob != nil {
			return
		}
		before := bytes.Clone(req.Params)
		orig := req.Params
		if !a.Apply(req) {
			if !bytes.Equal(req.Params, before) {
				t.Fatalf("params changed without a breakpoint")
			}
			return
		}
		if !bytes.Equal(orig, before) {
			t.Fatalf("the line's params were overwritten")
		}
		if !json.Valid(req.Params) || breakpoints(req.Params) != 1 {
			t.Fatalf("Apply wrote %d breakpoints, valid JSON %v:\n%s", breakpoints(req.Params), json.Valid(req.Params), req.Params)
		}
	})
}
