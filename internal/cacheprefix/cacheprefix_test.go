package cacheprefix_test

import (
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/wire"
)

func scan(t *testing.T, model, body string) cacheprefix.Scan {
	t.Helper()
	req, err := wire.ParseMessageRequest([]byte(body), wire.ParseOptions{})
	if err != nil {
		t.Fatalf("ParseMessageRequest(%s): %v", body, err)
	}
	return cacheprefix.Of(model, req, []byte(body))
}

var doc = strings.Repeat("wxyz", 2000) // 2,000 tokens

func docLine(docText, question, cc string) string {
	return `{"model":"claude-sonnet-5","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":"` + docText + `"` + cc + `},{"type":"text","text":"` + question + `"}]}]}`
}

func TestLastKeyIsTheSharedPrefix(t *testing.T) {
	t.Parallel()
	const cc = `,"cache_control":{"type":"ephemeral"}`
	a, aok := scan(t, "claude-sonnet-5", docLine(doc, "first question?", cc)).Last(1024)
	b, bok := scan(t, "claude-sonnet-5", docLine(doc, "second, longer question?", cc)).Last(1024)
	other, _ := scan(t, "claude-sonnet-5", docLine(doc+"x", "first question?", cc)).Last(1024)
	if !aok || !bok {
		t.Fatalf("Last(1024) ok = %v, %v, want a prefix for both lines", aok, bok)
	}
	if a.Key != b.Key {
		t.Errorf("two questions on one document: keys %s, %s, want equal", a.Key, b.Key)
	}
	if a.Key == other.Key {
		t.Errorf("different documents share key %s", a.Key)
	}
	// request 3 + message 4 + the document's 2,000
	if a.Tokens != 2007 || a.TTL != 5*time.Minute {
		t.Errorf("prefix = %d tokens, TTL %v, want 2007, 5m", a.Tokens, a.TTL)
	}
	if _, ok := scan(t, "claude-sonnet-5", docLine(doc, "q", cc)).Last(4096); ok {
		t.Errorf("Last(4096) of a 2,007-token prefix: ok, want none (below the minimum)")
	}
	oneHour, _ := scan(t, "claude-sonnet-5", docLine(doc, "q", `,"cache_control":{"type":"ephemeral","ttl":"1h"}`)).Last(1024)
	if oneHour.TTL != time.Hour || oneHour.Key != a.Key {
		t.Errorf("ttl 1h: %v key %s, want 1h and the same key %s (cache_control is not part of the prefix)", oneHour.TTL, oneHour.Key, a.Key)
	}
	haiku, _ := scan(t, "claude-haiku-4-5", docLine(doc, "first question?", cc)).Last(1024)
	if haiku.Key == a.Key {
		t.Errorf("two models share key %s: caches are per model", a.Key)
	}
}

func TestCanonicalBytes(t *testing.T) {
	t.Parallel()
	spaced := `{"model":"claude-sonnet-5","max_tokens":10,"messages":[{"role":"user","content":[ {"text": "` + doc + `", "type":"text", "cache_control":{"type":"ephemeral"}}, {"type":"text","text":"q"}]}]}`
	plain := docLine(doc, "q", `,"cache_control":{"type":"ephemeral"}`)
	a, _ := scan(t, "claude-sonnet-5", spaced).Last(1)
	b, _ := scan(t, "claude-sonnet-5", plain).Last(1)
	if a.Key != b.Key {
		t.Errorf("same blocks, other whitespace and key order: keys %s, %s, want equal", a.Key, b.Key)
	}
	str := `{"model":"claude-sonnet-5","max_tokens":10,"system":"` + doc + `","messages":[{"role":"user","content":"q"}],"cache_control":{"type":"ephemeral"}}`
	blk := `{"model":"claude-sonnet-5","max_tokens":10,"system":[{"type":"text","text":"` + doc + `"}],"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}],"cache_control":{"type":"ephemeral"}}`
	s1, s2 := scan(t, "claude-sonnet-5", str), scan(t, "claude-sonnet-5", blk)
	k1, ok1 := s1.Last(1)
	k2, ok2 := s2.Last(1)
	if !ok1 || !ok2 || k1 != k2 {
		t.Errorf("string content vs one text block, top-level cache_control: %v %s, %v %s, want equal keys", ok1, k1.Key, ok2, k2.Key)
	}
	if k1.Tokens != s1.Total {
		t.Errorf("top-level cache_control prefix = %d tokens, want the whole input %d", k1.Tokens, s1.Total)
	}
}

func TestNoCacheControlNoPoints(t *testing.T) {
	t.Parallel()
	s := scan(t, "claude-sonnet-5", docLine(doc, "q", ""))
	if s.Points != nil || s.Breakpoints != nil {
		t.Errorf("Of(no cache_control) = %d points, %d breakpoints, want none", len(s.Points), len(s.Breakpoints))
	}
	if _, ok := s.Last(0); ok {
		t.Errorf("Last(0) of a line without cache_control: ok, want none")
	}
	if s.Total != 2000+1+7 {
		t.Errorf("Total = %d, want %d", s.Total, 2008)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	p, _ := scan(t, "claude-sonnet-5", docLine(doc, "q", `,"cache_control":{"type":"ephemeral"}`)).Last(1)
	k, ok := cacheprefix.ParseKey(p.Key.String())
	if !ok || k != p.Key {
		t.Errorf("ParseKey(%s) = %s, %v, want the key back", p.Key, k, ok)
	}
	if _, ok := cacheprefix.ParseKey("zz"); ok {
		t.Errorf("ParseKey(zz) ok, want false")
	}
}
