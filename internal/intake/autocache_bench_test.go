package intake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

// applyReparse is Apply as it was before the plan kept each line's prefix: the
// line's params parsed and its prefix hashed again (candidate). The baseline of
// BenchmarkAutoCacheImport.
func (a *AutoCache) applyReparse(req *Request) bool {
	params, p, ok := a.candidate(req)
	if !ok || a.prefixes[a.index[p.Key]-1].lines < 2 {
		return false
	}
	req.Params, req.Cache = params, p
	a.added++
	return true
}

// autoInput is n lines without cache_control: documents of a few hundred tokens
// in a string system prompt, each asked 10 questions.
func autoInput(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		doc := fmt.Sprintf("Document %d. ", i/10) + strings.Repeat("The quick brown fox jumps over the lazy dog. ", 30)
		l, _ := json.Marshal(map[string]any{"custom_id": fmt.Sprintf("r%d", i), "params": map[string]any{
			"model": "claude-sonnet-5", "max_tokens": 64, "system": doc,
			"messages": []any{map[string]any{"role": "user", "content": fmt.Sprintf("Question %d: what is it about?", i%10)}},
		}})
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// BenchmarkAutoCacheImport is what --cache-breakpoints auto adds to the import of
// a 100,000-line file: the plan's pass over it, and the import's pass with Apply on
// each line (the import's own reading of the lines included, its store writes not),
// with Apply looking up the plan's prefix ("lookup") and parsing the line again
// ("reparse"), in the same run.
func BenchmarkAutoCacheImport(b *testing.B) {
	const lines = 100_000
	input := autoInput(lines)
	minTokens := func(string) (int64, bool) { return 256, true }
	for _, impl := range []struct {
		name  string
		apply func(*AutoCache, *Request) bool
	}{{"reparse", (*AutoCache).applyReparse}, {"lookup", (*AutoCache).Apply}} {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(input)))
			for b.Loop() {
				a, err := PlanAutoCache(bytes.NewReader(input), minTokens)
				if err != nil {
					b.Fatal(err)
				}
				rd := NewReader(bytes.NewReader(input), Options{})
				added := 0
				for {
					req, _, err := rd.Next()
					if err == io.EOF {
						break
					}
					if req != nil && impl.apply(a, req) {
						added++
					}
				}
				if added != lines {
					b.Fatalf("%d lines given a breakpoint, want %d", added, lines)
				}
			}
		})
	}
}
