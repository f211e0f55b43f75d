package testkit_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/clade-dev/clade/internal/testkit"
)

// TestInputLine pins the bytes of the lines that tests rely on: the emulator draws
// its answers from the request body, so a changed line changes results.
func TestInputLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   testkit.Input
		i    int
		want string
	}{
		{
			name: "defaults",
			in:   testkit.Input{},
			i:    7,
			want: `{"custom_id":"req-00007","params":{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"question 7"}]}}`,
		},
		{
			name: "every field",
			in:   testkit.Input{IDFormat: "job-%05d", Model: "haiku", MaxTokens: 48, Content: "item %d"},
			i:    12,
			want: `{"custom_id":"job-00012","params":{"model":"haiku","max_tokens":48,"messages":[{"role":"user","content":"item 12"}]}}`,
		},
		{
			name: "fixed content",
			in:   testkit.Input{IDFormat: "r%d", MaxTokens: 8, Content: "x"},
			i:    4,
			want: `{"custom_id":"r4","params":{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"x"}]}}`,
		},
		{
			name: "max_tokens by line",
			in:   testkit.Input{IDFormat: "req-%03d", MaxTokens: 5, MaxTokensOf: func(i int) int { return 100 + i }},
			i:    3,
			want: `{"custom_id":"req-003","params":{"model":"claude-haiku-4-5","max_tokens":103,"messages":[{"role":"user","content":"question 3"}]}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.in.Line(tt.i); got != tt.want {
				t.Errorf("Line(%d) = %s, want %s", tt.i, got, tt.want)
			}
		})
	}
}

func TestInputWrite(t *testing.T) {
	t.Parallel()
	in := testkit.Input{IDFormat: "r%d"}
	path := in.Write(t, filepath.Join(t.TempDir(), "input.jsonl"), 2, "not json")
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := in.Line(0) + "\n" + in.Line(1) + "\nnot json\n"
	if string(got) != want {
		t.Errorf("Write(2, extra) wrote %q, want %q", got, want)
	}
}

func TestReadResults(t *testing.T) {
	t.Parallel()
	lines := []string{
		`{"custom_id":"a","result":{"type":"succeeded","message":{"model":"claude-haiku-4-5"}}}`,
		`{"custom_id":"b","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"x"}}}}`,
	}
	path := testkit.Input{}.Write(t, filepath.Join(t.TempDir(), "results.jsonl"), 0, lines...)
	got := testkit.ReadResults(t, path)
	want := map[string]testkit.Result{
		"a": {CustomID: "a", Type: "succeeded", Model: "claude-haiku-4-5", Line: lines[0]},
		"b": {CustomID: "b", Type: "errored", ErrorType: "invalid_request_error", Line: lines[1]},
	}
	if len(got) != len(want) {
		t.Fatalf("ReadResults = %d results, want %d", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("ReadResults[%s] = %+v, want %+v", id, got[id], w)
		}
	}
	if types := testkit.ResultTypes(t, path); types["a"] != "succeeded" || types["b"] != "errored" || len(types) != 2 {
		t.Errorf("ResultTypes = %v, want a succeeded, b errored", types)
	}
}

func TestBuffer(t *testing.T) {
	t.Parallel()
	var b testkit.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Write([]byte("hello"))
	}()
	<-b.Changed()
	<-done
	if b.String() != "hello" || b.Len() != 5 {
		t.Errorf("Buffer after Write(hello) = %q (%d bytes), want hello", b.String(), b.Len())
	}
}
