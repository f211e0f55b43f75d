package intake

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

const goodParams = `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`

func line(id, params string) string {
	return fmt.Sprintf(`{"custom_id":%q,"params":%s}`, id, params)
}

// readAll reads every item of input.
func readAll(t *testing.T, r io.Reader, opt Options) ([]*Request, []*Problem) {
	t.Helper()
	rd := NewReader(r, opt)
	var reqs []*Request
	var probs []*Problem
	for {
		req, prob, err := rd.Next()
		if err == io.EOF {
			return reqs, probs
		}
		if err != nil {
			t.Fatalf("Next() error = %v", err)
		}
		if (req == nil) == (prob == nil) {
			t.Fatalf("Next() = %v, %v: want exactly one of request and problem", req, prob)
		}
		if req != nil {
			reqs = append(reqs, req)
		} else {
			probs = append(probs, prob)
		}
	}
}

func TestParseLineProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		line   string
		id     string
		field  string
		reason string // substring
	}{
		{name: "not json", line: `{"custom_id":`, reason: "invalid JSON"},
		{name: "array", line: `[1,2]`, reason: "must be a JSON object, not an array"},
		{name: "null", line: `null`, reason: "must be a JSON object, not null"},
		{name: "no custom_id", line: `{"params":` + goodParams + `}`, field: "custom_id", reason: "required"},
		{name: "custom_id number", line: `{"custom_id":7,"params":` + goodParams + `}`, field: "custom_id", reason: "must be a string, not a number"},
		{name: "custom_id bad chars", line: line("a b", goodParams), field: "custom_id", reason: `must match ^[a-zA-Z0-9_-]{1,64}$, got "a b"`},
		{name: "custom_id too long", line: line(strings.Repeat("x", 65), goodParams), field: "custom_id", reason: "must match"},
		{name: "custom_id empty", line: line("", goodParams), field: "custom_id", reason: "must match"},
		{name: "extra field", line: `{"custom_id":"a","params":` + goodParams + `,"x":1}`, id: "a", field: "x", reason: "unknown field"},
		{name: "no params", line: `{"custom_id":"a"}`, id: "a", field: "params", reason: "required"},
		{name: "params string", line: line("a", `"x"`), id: "a", field: "params", reason: "must be a JSON object, not a string"},
		{name: "no model", line: line("a", `{"max_tokens":1,"messages":[{}]}`), id: "a", field: "params.model", reason: "required"},
		{name: "model null", line: line("a", `{"model":null,"max_tokens":1,"messages":[{}]}`), id: "a", field: "params.model", reason: "must be a string, not null"},
		{name: "model empty", line: line("a", `{"model":"","max_tokens":1,"messages":[{}]}`), id: "a", field: "params.model", reason: "must not be empty"},
		{name: "no max_tokens", line: line("a", `{"model":"m","messages":[{}]}`), id: "a", field: "params.max_tokens", reason: "required"},
		{name: "max_tokens zero", line: line("a", `{"model":"m","max_tokens":0,"messages":[{}]}`), id: "a", field: "params.max_tokens", reason: "must be a positive integer"},
		{name: "max_tokens negative", line: line("a", `{"model":"m","max_tokens":-5,"messages":[{}]}`), id: "a", field: "params.max_tokens", reason: "must be a positive integer"},
		{name: "max_tokens fraction", line: line("a", `{"model":"m","max_tokens":1.5,"messages":[{}]}`), id: "a", field: "params.max_tokens", reason: "must be a positive integer"},
		{name: "max_tokens string", line: line("a", `{"model":"m","max_tokens":"5","messages":[{}]}`), id: "a", field: "params.max_tokens", reason: "must be a positive integer"},
		{name: "no messages", line: line("a", `{"model":"m","max_tokens":5}`), id: "a", field: "params.messages", reason: "required"},
		{name: "messages object", line: line("a", `{"model":"m","max_tokens":5,"messages":{}}`), id: "a", field: "params.messages", reason: "must be an array, not an object"},
		{name: "messages empty", line: line("a", `{"model":"m","max_tokens":5,"messages":[]}`), id: "a", field: "params.messages", reason: "must not be empty"},
		{name: "stream true", line: line("a", `{"model":"m","max_tokens":5,"messages":[{}],"stream":true}`), id: "a", field: "params.stream", reason: "not supported"},
		{name: "stream string", line: line("a", `{"model":"m","max_tokens":5,"messages":[{}],"stream":"yes"}`), id: "a", field: "params.stream", reason: "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, prob := ParseLine(17, []byte(tt.line))
			if req != nil || prob == nil {
				t.Fatalf("ParseLine(17, %s) = %+v, %+v, want a problem", tt.line, req, prob)
			}
			if prob.Line != 17 || prob.CustomID != tt.id || prob.Field != tt.field || !strings.Contains(prob.Reason, tt.reason) {
				t.Errorf("ParseLine(17, %s) problem = %+v, want line 17, id %q, field %q, reason containing %q",
					tt.line, *prob, tt.id, tt.field, tt.reason)
			}
		})
	}
}

func TestProblemFormat(t *testing.T) {
	t.Parallel()
	_, prob := ParseLine(17, []byte(line("a", `{"model":"m","max_tokens":0,"messages":[{}]}`)))
	if got, want := prob.Format("input.jsonl"), "input.jsonl:17: params.max_tokens: must be a positive integer"; got != want {
		t.Errorf("Format() = %q, want %q", got, want)
	}
	if got, want := prob.Error(), "line 17: params.max_tokens: must be a positive integer"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	p := Problem{Line: 3, Reason: "invalid JSON"}
	if got, want := p.Format("in.jsonl"), "in.jsonl:3: invalid JSON"; got != want {
		t.Errorf("Format() = %q, want %q", got, want)
	}
}

func TestParseLineKeepsParamsBytes(t *testing.T) {
	t.Parallel()
	// Odd spacing, key order, unicode escapes and unknown fields must survive as-is.
	params := `{ "messages" : [{"role":"user","content":"caf\u00e9 \ud83d\ude00"}], "max_tokens":10,"model":"m", "future_field": {"x": [1,2.50]} ,"stream":false}`
	b := []byte(line("id-1", params))
	req, prob := ParseLine(1, b)
	if prob != nil {
		t.Fatalf("ParseLine() problem = %v", prob)
	}
	if string(req.Params) != params {
		t.Errorf("Params = %s, want %s", req.Params, params)
	}
	if req.Model != "m" || req.MaxTokens != 10 || req.CustomID != "id-1" || req.Line != 1 {
		t.Errorf("ParseLine() = %+v", req)
	}
	copy(b, bytes.Repeat([]byte{'x'}, len(b))) // Params must not alias the line
	if string(req.Params) != params {
		t.Errorf("Params changed with the line buffer: %s", req.Params)
	}
}

func TestReaderLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 200<<10)                       // far over bufio.Scanner's 64 KiB
	input := "\xef\xbb\xbf" + line("a", goodParams) + "\r\n" + // BOM and CRLF
		"\n" + // blank line: skipped, but counted
		"   \t\n" +
		`{"custom_id":"bad"` + "\n" +
		line("b", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"`+long+`"}]}`) + "\n" +
		line("c", goodParams) // no final newline
	reqs, probs := readAll(t, strings.NewReader(input), Options{})
	var got []string
	for _, r := range reqs {
		got = append(got, fmt.Sprintf("%d:%s", r.Line, r.CustomID))
	}
	if want := []string{"1:a", "5:b", "6:c"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests = %v, want %v", got, want)
	}
	if len(probs) != 1 || probs[0].Line != 4 {
		t.Errorf("problems = %+v, want one at line 4", probs)
	}
	if reqs[1].EstInputTokens < int64(len(long)/4) {
		t.Errorf("EstInputTokens of a %d-byte prompt = %d, want at least %d", len(long), reqs[1].EstInputTokens, len(long)/4)
	}
}

func TestReaderSmallReads(t *testing.T) {
	t.Parallel()
	input := line("a", goodParams) + "\n" + line("b", goodParams) + "\n"
	reqs, probs := readAll(t, iotest.OneByteReader(strings.NewReader(input)), Options{})
	if len(reqs) != 2 || len(probs) != 0 {
		t.Errorf("got %d requests, %d problems, want 2, 0", len(reqs), len(probs))
	}
}

func TestReaderTooLong(t *testing.T) {
	t.Parallel()
	input := line("a", goodParams) + "\n" + strings.Repeat("x", 300) + "\n" + line("b", goodParams) + "\n"
	reqs, probs := readAll(t, strings.NewReader(input), Options{MaxLineBytes: 200})
	if len(reqs) != 2 || len(probs) != 1 || probs[0].Line != 2 || !strings.Contains(probs[0].Reason, "longer than 200 bytes") {
		t.Errorf("got %d requests, problems %+v; want 2 requests and line 2 too long", len(reqs), probs)
	}
}

func TestReaderResumeAtOffset(t *testing.T) {
	t.Parallel()
	var sb strings.Builder
	for i := range 10 {
		sb.WriteString(line(fmt.Sprintf("r%d", i), goodParams) + "\n")
	}
	input := sb.String()
	rd := NewReader(strings.NewReader(input), Options{})
	for range 4 {
		if _, _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
	}
	off, ln := rd.Offset(), rd.Line()
	reqs, _ := readAll(t, strings.NewReader(input[off:]), Options{FirstLine: ln + 1})
	if len(reqs) != 6 || reqs[0].Line != 5 || reqs[0].CustomID != "r4" {
		t.Errorf("resumed at offset %d line %d: first = %+v, count %d; want r4 at line 5, 6 requests", off, ln, reqs[0], len(reqs))
	}
	if off != int64(4*(len(input)/10)) {
		t.Errorf("Offset() = %d, want %d", off, 4*(len(input)/10))
	}
}

func TestReaderReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	rd := NewReader(io.MultiReader(strings.NewReader(line("a", goodParams)+"\n"), iotest.ErrReader(boom)), Options{})
	if _, _, err := rd.Next(); err != nil {
		t.Fatalf("first Next() error = %v", err)
	}
	if _, _, err := rd.Next(); !errors.Is(err, boom) {
		t.Errorf("Next() error = %v, want %v", err, boom)
	}
}

func TestEstimateInputTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params string
		want   int64
	}{
		{name: "string content", params: `{"messages":[{"role":"user","content":"12345678"}]}`, want: 3 + 4 + 2},
		{name: "blocks", params: `{"messages":[{"role":"user","content":[{"type":"text","text":"1234"},{"type":"image","source":{}}]}]}`, want: 3 + 4 + 1 + 1500},
		{name: "system", params: `{"system":"abcd","messages":[{"role":"user","content":"a"}]}`, want: 3 + 2 + 1 + 4 + 1},
		{name: "tools", params: `{"tools":[{"name":"x"}],"messages":[{"role":"user","content":"a"}]}`, want: 3 + 300 + 3 + 4 + 1},
		{name: "not an object", params: `[]`, want: 0},
	}
	for _, tt := range tests {
		if got := EstimateInputTokens(json.RawMessage(tt.params)); got != tt.want {
			t.Errorf("%s: EstimateInputTokens(%s) = %d, want %d", tt.name, tt.params, got, tt.want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "in.jsonl")
	data := []byte(strings.Repeat(line("a", goodParams)+"\n", 1000))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fp, err := FileFingerprint(path)
	if err != nil {
		t.Fatal(err)
	}
	if fp.Size != int64(len(data)) || fp.SHA256 != sha256.Sum256(data) {
		t.Errorf("FileFingerprint() = %v, want size %d and the file's SHA-256", fp, len(data))
	}
	if !strings.HasPrefix(fp.String(), "sha256:"+fp.Hex()+"/") {
		t.Errorf("String() = %q", fp.String())
	}
	if _, err := FileFingerprint(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("FileFingerprint(missing) error = nil")
	}
}

// FuzzReadLines checks that the reader never panics and that every non-blank line
// becomes exactly one Request or Problem carrying its line number.
func FuzzReadLines(f *testing.F) {
	f.Add([]byte(line("a", goodParams) + "\n" + line("b", goodParams)))
	f.Add([]byte("\n\n{}\r\n[]\nnull\n" + `{"custom_id":"x","params":{"model":"m","max_tokens":1e3,"messages":[1]}}`))
	f.Add([]byte(line("a", `{"model":"m","max_tokens":1,"messages":[{"content":[{"type":"tool_result","content":[{"type":"text","text":"x"}]}]}],"tools":[{}],"system":[{"type":"text","text":"s"}]}`)))
	f.Add([]byte("\xef\xbb\xbf{\"custom_id\":\"\xff\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var want []int
		for i, l := range bytes.Split(data, []byte{'\n'}) {
			l = bytes.TrimSuffix(l, []byte{'\r'})
			long := len(l) > 64
			if i == 0 {
				l = bytes.TrimPrefix(l, []byte("\xef\xbb\xbf"))
			}
			if long || len(bytes.TrimSpace(l)) > 0 {
				want = append(want, i+1)
			}
		}
		rd := NewReader(bytes.NewReader(data), Options{MaxLineBytes: 64})
		var got []int
		for {
			req, prob, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Next() error = %v", err)
			}
			switch {
			case req != nil && prob == nil:
				if !json.Valid(req.Params) || req.MaxTokens < 1 || req.Model == "" || req.EstInputTokens < 3 {
					t.Fatalf("bad request %+v", req)
				}
				got = append(got, req.Line)
			case prob != nil && req == nil:
				if prob.Reason == "" {
					t.Fatalf("problem without a reason: %+v", prob)
				}
				got = append(got, prob.Line)
			default:
				t.Fatalf("Next() = %v, %v: want exactly one", req, prob)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("lines = %v, want %v", got, want)
		}
		if rd.Offset() != int64(len(data)) {
			t.Fatalf("Offset() = %d at EOF, want %d", rd.Offset(), len(data))
		}
	})
}

func BenchmarkReader(b *testing.B) {
	var sb strings.Builder
	for i := range 10000 {
		sb.WriteString(line(fmt.Sprintf("req-%d", i), goodParams) + "\n")
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rd := NewReader(bytes.NewReader(data), Options{})
		for {
			if _, _, err := rd.Next(); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "lines/s")
}
