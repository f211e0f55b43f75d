package intake

import (
	"bytes"
	"io"
	"reflect"
	"testing"
)

// TestApplyMatchesReparse: Apply, which looks up the prefix the plan found on the
// line, gives every line of a file exactly the params and prefix that parsing the
// line again gives (applyReparse), lines with and without a shared candidate,
// blank and bad lines among them.
func TestApplyMatchesReparse(t *testing.T) {
	t.Parallel()
	var in bytes.Buffer
	in.Write(autoInput(40))
	in.WriteString("\n   \nnot json\n")
	in.WriteString(`{"custom_id":"own","params":{"model":"claude-sonnet-5","max_tokens":1,"system":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"q"}]}}` + "\n")
	in.WriteString(`{"custom_id":"short","params":{"model":"claude-sonnet-5","max_tokens":1,"system":"tiny","messages":[{"role":"user","content":"q"}]}}` + "\n")
	in.WriteString(`{"custom_id":"unknown","params":{"model":"other","max_tokens":1,"system":"tiny","messages":[{"role":"user","content":"q"}]}}` + "\n")
	lone := bytes.Replace(autoInput(1), []byte("Document 0."), []byte("Document lone."), 1)
	in.Write(lone) // a document of its own: not shared
	minTokens := func(model string) (int64, bool) { return 256, model == "claude-sonnet-5" }
	lookup, err := PlanAutoCache(bytes.NewReader(in.Bytes()), minTokens)
	if err != nil {
		t.Fatal(err)
	}
	reparse, _ := PlanAutoCache(bytes.NewReader(in.Bytes()), minTokens)
	rd := NewReader(bytes.NewReader(in.Bytes()), Options{})
	added, kept := 0, 0
	for {
		req, _, err := rd.Next()
		if err == io.EOF {
			break
		}
		if req == nil {
			continue
		}
		a, b := *req, *req
		got, want := lookup.Apply(&a), reparse.applyReparse(&b)
		if got != want || !reflect.DeepEqual(a, b) {
			t.Errorf("line %d: Apply = %v, %s, %+v; want %v, %s, %+v (parsed again)", req.Line, got, a.Params, a.Cache, want, b.Params, b.Cache)
		}
		if got {
			added++
		} else {
			kept++
		}
	}
	if added != 40 || kept != 4 {
		t.Errorf("%d lines given a breakpoint, %d left as they were; want 40 and 4 (the cases this test is for)", added, kept)
	}
}
