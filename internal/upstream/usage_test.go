package upstream

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
)

// referenceUsage is what encoding/json reads as a Message's usage: the answer
// MessageUsage must give for every body.
func referenceUsage(body []byte) (Usage, bool) {
	var m struct {
		Usage *Usage `json:"usage"`
	}
	if json.Unmarshal(body, &m) != nil || m.Usage == nil {
		return Usage{}, false
	}
	return *m.Usage, true
}

// emulatorAnswers returns Messages answers of the emulator: a plain one, one
// that writes the prompt cache (1 h TTL: cache_creation split) and one that reads it.
func emulatorAnswers(tb testing.TB) [][]byte {
	const key = "sk-ant-api03-usage-test-key-0123456789abcdef"
	em := emulator.StartTB(tb, emulator.Config{Tier: "unlimited", APIKeys: []string{key}})
	c, err := New(Config{BaseURL: em.URL, APIKey: NewSecret(key)})
	if err != nil {
		tb.Fatal(err)
	}
	doc := strings.Repeat("The gateway settles every call from its usage. ", 400)
	cached := `{"model":"claude-sonnet-4-6","max_tokens":32,"system":[{"type":"text","text":"` + doc +
		`","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":"Say \"hi\" and {\"usage\": 1}"}]}`
	var out [][]byte
	for _, p := range []string{benchParams, cached, cached} {
		r, err := c.Messages(context.Background(), []byte(p))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, r.Body)
	}
	return out
}

// TestMessageUsage: the usage of real answers (a cache write split by TTL, a
// cache read) and of bodies the fast scan hands to encoding/json is what
// encoding/json reads, and a usage nested in the content is never taken for the
// message's.
func TestMessageUsage(t *testing.T) {
	t.Parallel()
	answers := emulatorAnswers(t)
	if u, _ := MessageUsage(answers[1]); u.CacheCreation.Ephemeral1h == 0 || u.CacheCreationInputTokens == 0 {
		t.Fatalf("the emulator's cache-writing answer has usage %+v: no 1 h write to read", u)
	}
	if u, _ := MessageUsage(answers[2]); u.CacheReadInputTokens == 0 {
		t.Fatalf("the emulator's cache-reading answer has usage %+v: no read", u)
	}
	bodies := append(answers, [][]byte{
		[]byte(`{"content":[{"type":"tool_use","input":{"usage":{"input_tokens":999}}}],"usage":{"input_tokens":7,"output_tokens":3}}`),
		[]byte(`{"usage":{"input_tokens":7,"output_tokens":3},"usage":{"input_tokens":8,"output_tokens":4}}`), // the last wins
		[]byte(`{"us\u0061ge":{"input_tokens":5,"output_tokens":1}}`),                                         // an escaped key
		[]byte(`{"Usage":{"input_tokens":5,"output_tokens":1}}`),                                              // encoding/json folds case
		[]byte(`{"usage":{"input_tokens":-5,"output_tokens":1e0}}`),                                           // not plain counts
		[]byte(`{"usage":{"input_tokens":null,"output_tokens":2,"service_tier":"standard","cache_creation":null}}`),
		[]byte(`{"usage":{"Input_Tokens":3,"CAChe_CreAtion":{"ephemerAl_5m_input_tokens":1}}}`), // folded inside usage too
		[]byte(`{"usage":null}`),
		[]byte(`{"id":"msg_1"}`),
		[]byte(`{"usage":{"input_tokens":1}`), // not JSON
		[]byte(`[1,2]`),
		[]byte(``),
	}...)
	for _, b := range bodies {
		got, gotOK := MessageUsage(b)
		want, wantOK := referenceUsage(b)
		if got != want || gotOK != wantOK {
			t.Errorf("MessageUsage(%.120s) = %+v, %v; encoding/json reads %+v, %v", b, got, gotOK, want, wantOK)
		}
	}
}

// FuzzMessageUsage: whatever the body, MessageUsage reads what encoding/json reads.
func FuzzMessageUsage(f *testing.F) {
	f.Add([]byte(`{"usage":{"input_tokens":7,"output_tokens":3,"cache_creation":{"ephemeral_5m_input_tokens":2}}}`))
	f.Add([]byte(`{"content":[{"text":"usage"}],"usage":{"cache_read_input_tokens":12}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gotOK := MessageUsage(b)
		want, wantOK := referenceUsage(b)
		if got != want || gotOK != wantOK {
			t.Errorf("MessageUsage(%q) = %+v, %v; encoding/json reads %+v, %v", b, got, gotOK, want, wantOK)
		}
	})
}

// BenchmarkMessageUsage reads the usage of an emulator answer, against
// encoding/json's reading of the same body.
func BenchmarkMessageUsage(b *testing.B) {
	body := emulatorAnswers(b)[0]
	for _, tc := range []struct {
		name string
		read func([]byte) (Usage, bool)
	}{{"scan", MessageUsage}, {"encoding-json", referenceUsage}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := tc.read(body); !ok {
					b.Fatal("no usage")
				}
			}
		})
	}
}
