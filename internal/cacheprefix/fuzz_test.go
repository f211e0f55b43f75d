package cacheprefix_test

import (
	"testing"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/wire"
)

// FuzzOf: for any body the wire parser accepts, Of does not panic, its points are
// one per block with tokens that never fall and end at or below the total, each
// breakpoint marks a block with cache_control, and Last is the last breakpoint.
func FuzzOf(f *testing.F) {
	for _, s := range []string{
		docLine("doc", "q", `,"cache_control":{"type":"ephemeral"}`),
		`{"model":"m","max_tokens":1,"system":"s","messages":[{"role":"user","content":"q"}],"cache_control":{"type":"ephemeral","ttl":"1h"}}`,
		`{"model":"m","max_tokens":1,"tools":[{"name":"t","input_schema":{},"cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA"}},{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}`,
		`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}],"cache_control":{"type":"ephemeral"}}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := wire.ParseMessageRequest(body, wire.ParseOptions{AllowSystemRole: true})
		if err != nil {
			return
		}
		s := cacheprefix.Of("m", req, body)
		if !cacheprefix.HasCacheControl(req) {
			if s.Points != nil {
				t.Fatalf("points without cache_control")
			}
			return
		}
		blocks := len(req.Tools) + len(req.System)
		for _, m := range req.Messages {
			blocks += len(m.Content)
		}
		if len(s.Points) != blocks {
			t.Fatalf("%d points for %d blocks", len(s.Points), blocks)
		}
		var prev int64
		for _, p := range s.Points {
			if p.Tokens < prev || p.Tokens > s.Total {
				t.Fatalf("point tokens %d after %d, total %d", p.Tokens, prev, s.Total)
			}
			prev = p.Tokens
		}
		for _, i := range s.Breakpoints {
			if s.Points[i].CC == nil {
				t.Fatalf("breakpoint %d has no cache_control", i)
			}
		}
		if last, ok := s.Last(0); ok != (len(s.Breakpoints) > 0) || ok && last.Key != s.Points[s.Breakpoints[len(s.Breakpoints)-1]].Key {
			t.Fatalf("Last(0) = %+v, %v with breakpoints %v", last, ok, s.Breakpoints)
		}
	})
}
