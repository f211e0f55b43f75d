package cacheprefix

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/wire"
)

// oracleSeeds are bodies that reach the corners of the canonical bytes: escapes,
// HTML characters, U+2028, invalid UTF-8, surrogates, duplicate and escaped keys,
// keys matched case-insensitively, nested cache_control, white space.
var oracleSeeds = []string{
	`{"model":"m","max_tokens":1,"system":[{"type":"text","text":"a <b> & c \u2028 \/ \" \\ \n é \u00e9 \ud83d\ude00 \ud800 x","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"q"}]}`,
	"{\"model\":\"m\",\"max_tokens\":1,\"system\":\"raw \xe2\x80\xa8 \xff \xed\xa0\x80 <&>\",\"messages\":[{\"role\":\"user\",\"content\":\"q \\u2029\"}],\"cache_control\":{\"type\":\"ephemeral\"}}",
	` { "max_tokens" : 1 , "messages" : [ { "Content" : [ { "text" : "x" , "type" : "text" , "cache\u005fcontrol" : { "type" : "ephemeral" } } , { "type":"text","text":"y","text":"z" } ] , "role" : "user" } ] , "model" : "m" } `,
	`{"model":"m","max_tokens":1,"tools":[{"name":"t","description":"<d>","input_schema":{"type":"object","properties":{"cache_control":{"type":"string"}}},"cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
	`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA"}}],"cache_control":{"type":"ephemeral"}}]},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"n","input":{"a":[1,2.5e3,true,null]}}]}]}`,
	`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"x","\u0074ype":"text","cache_control":{"type":"ephemeral"}}],"content":[{"type":"text","text":"later"}]}]}`,
}

// FuzzOfMatchesOracle: for any body the wire parser accepts, Of's one scan gives
// exactly the scan of the former two-decode implementation: the same total, points
// (tokens, keys, breakpoints) and breakpoint indexes.
func FuzzOfMatchesOracle(f *testing.F) {
	for _, s := range oracleSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := wire.ParseMessageRequest(body, wire.ParseOptions{AllowSystemRole: true})
		if err != nil {
			return
		}
		checkOracle(t, req, body)
	})
}

func checkOracle(t *testing.T, req *wire.MessageRequest, body []byte) {
	t.Helper()
	got, want := Of("m", req, body), ofOracle("m", req, body)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Of(%q) = %+v, want %+v (ofOracle)", body, got, want)
	}
}

// TestOfMatchesOracleOnRandomBodies: Of equals ofOracle on the seeds and on
// random bodies built from the same corners, and the bodies exercised hashing (most
// parse and have points).
func TestOfMatchesOracleOnRandomBodies(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	hashed := 0
	const n = 3000
	bodies := append([]string(nil), oracleSeeds...)
	for range n {
		bodies = append(bodies, randomBody(rng))
	}
	for _, b := range bodies {
		req, err := wire.ParseMessageRequest([]byte(b), wire.ParseOptions{AllowSystemRole: true})
		if err != nil {
			continue
		}
		checkOracle(t, req, []byte(b))
		if ofOracle("m", req, []byte(b)).Points != nil {
			hashed++
		}
	}
	if hashed < len(bodies)/2 {
		t.Fatalf("%d of %d bodies parsed with points, want at least half (the generator no longer makes valid requests)", hashed, len(bodies))
	}
}

// randomBody writes a Messages request with cache_control somewhere, in random
// member order and spacing, from strings with the characters canonical bytes treat
// specially.
func randomBody(rng *rand.Rand) string {
	ws := func() string { return []string{"", "", " ", "\n  ", "\t"}[rng.IntN(5)] }
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	str := func() string {
		var b strings.Builder
		b.WriteByte('"')
		for range rng.IntN(12) {
			b.WriteString(pick("a", "bc", " ", "<", ">", "&", "\u2028", "\u2029", `\u2028`, `\n`, `\"`, `\\`, `\/`,
				`\u00e9`, "é", `\ud83d\ude00`, `\ud800`, `\udc00x`, "\xff", "\xed\xa0\x80", "😀", `\b`, `\f`, `\u0000`, `\u003c`,
				"cache_control", `\t`, "\u007f"))
		}
		b.WriteByte('"')
		return b.String()
	}
	obj := func(members []string) string {
		rng.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		return "{" + ws() + strings.Join(members, ws()+","+ws()) + ws() + "}"
	}
	kv := func(k, v string) string { return `"` + k + `"` + ws() + ":" + ws() + v }
	cc := func() string {
		return obj([]string{kv("type", `"ephemeral"`)})
	}
	block := func() string {
		ms := []string{kv("type", `"text"`), kv("text", str())}
		if rng.IntN(3) == 0 {
			ms = append(ms, kv(pick("cache_control", `cache\u005fcontrol`), cc()))
		}
		if rng.IntN(4) == 0 {
			ms = append(ms, kv(pick("citations", "a", "Z", `\u00e9`, "<k>", "\u2028", "é"), pick("null", "[]", "[ 1 , 2 ]", str(), `{"cache_control" : {"type":"ephemeral"}}`)))
		}
		return obj(ms)
	}
	list := func(n int) string {
		var bs []string
		for range n {
			bs = append(bs, block())
		}
		return "[" + ws() + strings.Join(bs, ws()+","+ws()) + ws() + "]"
	}
	content := func() string {
		if rng.IntN(4) == 0 {
			return str()
		}
		return list(1 + rng.IntN(3))
	}
	var msgs []string
	for i := range 1 + rng.IntN(3) {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, obj([]string{kv("role", `"`+role+`"`), kv(pick("content", "content", "Content", "CONTENT"), content())}))
	}
	top := []string{kv("model", `"m"`), kv("max_tokens", "1"), kv("messages", "["+strings.Join(msgs, ",")+"]")}
	if rng.IntN(2) == 0 {
		top = append(top, kv("system", pick(str(), list(1+rng.IntN(2)))))
	}
	if rng.IntN(3) == 0 {
		tool := obj([]string{kv("name", `"t"`), kv("description", str()), kv("input_schema", `{"type" : "object"}`), kv("cache_control", cc())})
		top = append(top, kv("tools", "["+tool+"]"))
	}
	if rng.IntN(2) == 0 {
		top = append(top, kv("cache_control", cc()))
	}
	return obj(top)
}
