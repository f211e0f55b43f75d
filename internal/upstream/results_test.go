package upstream_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/clade-dev/clade/internal/upstream"
)

const (
	lineSucceeded = `{"custom_id":"a","result":{"type":"succeeded","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"He said \"hi\" {not a brace} \\"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":3}}}}`
	lineErrored   = `{"custom_id":"b","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required","details":{"error_visibility":"user_facing"}},"request_id":null}}}`
	lineCanceled  = `{"custom_id":"c","result":{"type":"canceled"}}`
	lineExpired   = `{"custom_id":"d-1_x","result":{"type":"expired"}}`
)

type decoded struct {
	id, typ, errType, line string
}

func decodeAll(t *testing.T, r io.Reader) ([]decoded, error) {
	t.Helper()
	rr := upstream.NewResultsReader(r)
	var out []decoded
	for rr.Next() {
		res := rr.Result()
		out = append(out, decoded{res.CustomID, res.Type, res.ErrorType, string(res.Line)})
	}
	return out, rr.Err()
}

func TestResultsReader(t *testing.T) {
	t.Parallel()
	all := []decoded{
		{"a", "succeeded", "", lineSucceeded},
		{"b", "errored", "invalid_request_error", lineErrored},
		{"c", "canceled", "", lineCanceled},
		{"d-1_x", "expired", "", lineExpired},
	}
	tests := []struct {
		name  string
		input string
		want  []decoded
	}{
		{name: "four kinds", input: lineSucceeded + "\n" + lineErrored + "\n" + lineCanceled + "\n" + lineExpired + "\n", want: all},
		{name: "no final newline", input: lineSucceeded + "\n" + lineErrored + "\n" + lineCanceled + "\n" + lineExpired, want: all},
		{name: "crlf and blank lines", input: "\r\n" + lineSucceeded + "\r\n\r\n" + lineErrored + "\n  \n" + lineCanceled + "\r\n" + lineExpired + "\r\n\n", want: all},
		{name: "empty", input: "", want: nil},
		{name: "only blank", input: "\n\n \r\n", want: nil},
		{name: "keys in another order", input: `{"result":{"error":{"error":{"message":"x","type":"api_error"},"type":"error"},"type":"errored"},"custom_id":"z"}`,
			want: []decoded{{"z", "errored", "api_error", `{"result":{"error":{"error":{"message":"x","type":"api_error"},"type":"error"},"type":"errored"},"custom_id":"z"}`}}},
		{name: "spaces", input: ` { "custom_id" : "s" , "result" : { "type" : "canceled" } } `,
			want: []decoded{{"s", "canceled", "", `{ "custom_id" : "s" , "result" : { "type" : "canceled" } }`}}},
		{name: "escaped key (fallback)", input: `{"custom\u005fid":"e","result":{"type":"canceled"}}`,
			want: []decoded{{"e", "canceled", "", `{"custom\u005fid":"e","result":{"type":"canceled"}}`}}},
		{name: "escaped value (fallback)", input: `{"custom_id":"\u0065","result":{"type":"succ\u0065eded"}}`,
			want: []decoded{{"e", "succeeded", "", `{"custom_id":"\u0065","result":{"type":"succ\u0065eded"}}`}}},
		{name: "unknown type passes", input: `{"custom_id":"u","result":{"type":"deferred","extra":[1,2,{"a":null}]},"new_field":true}`,
			want: []decoded{{"u", "deferred", "", `{"custom_id":"u","result":{"type":"deferred","extra":[1,2,{"a":null}]},"new_field":true}`}}},
		{name: "errored without inner type", input: `{"custom_id":"n","result":{"type":"errored","error":{"type":"error","error":null}}}`,
			want: []decoded{{"n", "errored", "", `{"custom_id":"n","result":{"type":"errored","error":{"type":"error","error":null}}}`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range []struct {
				kind string
				r    io.Reader
			}{{"whole", strings.NewReader(tt.input)}, {"byte at a time", iotest.OneByteReader(strings.NewReader(tt.input))}} {
				got, err := decodeAll(t, r.r)
				if err != nil {
					t.Fatalf("%s: Err() = %v", r.kind, err)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("%s: decoded\n%v\nwant\n%v", r.kind, got, tt.want)
				}
			}
		})
	}
}

// TestResultsReaderUsage: a succeeded line's model and usage are read with it (the
// fast scan and the encoding/json fallback alike), for pricing without decoding the
// line again.
func TestResultsReaderUsage(t *testing.T) {
	t.Parallel()
	full := upstream.Usage{InputTokens: 10, OutputTokens: 48, CacheCreationInputTokens: 7, CacheReadInputTokens: 900, ServiceTier: "batch"}
	full.CacheCreation.Ephemeral5m, full.CacheCreation.Ephemeral1h = 3, 4
	for _, tt := range []struct {
		name, line, model string
		usage             *upstream.Usage
	}{
		{name: "emulator line", line: emulatorLine(1), model: "claude-haiku-4-5",
			usage: &upstream.Usage{InputTokens: 10, OutputTokens: 48, ServiceTier: "batch"}},
		{name: "every field", model: "claude-sonnet-4-5", usage: &full,
			line: `{"custom_id":"f","result":{"type":"succeeded","message":{"model":"claude-sonnet-4-5","content":[{"type":"text","text":"{\"usage\": 1}"}],"usage":{"input_tokens":10,"cache_creation_input_tokens":7,"cache_read_input_tokens":900,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4,"later":{"x":[1]}},"output_tokens":48,"server_tool_use":{"web_search_requests":2},"service_tier":"batch"}}}}`},
		{name: "nulls", model: "m", usage: &upstream.Usage{OutputTokens: 2},
			line: `{"custom_id":"n","result":{"type":"succeeded","message":{"model":"m","usage":{"input_tokens":null,"output_tokens":2,"cache_creation":null}}}}`},
		{name: "float count (fallback, left out)", model: "m",
			line: `{"custom_id":"x","result":{"type":"succeeded","message":{"model":"m","usage":{"input_tokens":1,"output_tokens":2e1}}}}`},
		{name: "escaped model (fallback)", model: "m", usage: &upstream.Usage{OutputTokens: 5},
			line: `{"custom_id":"y","result":{"type":"succeeded","message":{"model":"\u006d","usage":{"output_tokens":5}}}}`},
		{name: "no usage", model: "m", line: `{"custom_id":"z","result":{"type":"succeeded","message":{"model":"m"}}}`},
		{name: "errored", line: lineErrored},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rr := upstream.NewResultsReader(strings.NewReader(tt.line + "\n"))
			if !rr.Next() {
				t.Fatalf("Next() = false, Err() = %v", rr.Err())
			}
			res := rr.Result()
			if res.Model != tt.model || (res.Usage == nil) != (tt.usage == nil) || res.Usage != nil && *res.Usage != *tt.usage {
				t.Errorf("model %q, usage %+v; want %q, %+v", res.Model, res.Usage, tt.model, tt.usage)
			}
		})
	}
}

func TestResultsReaderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		input    string
		wantLine int // of the LineError; 0 for none
		wantOK   int // results before the error
	}{
		{name: "not json", input: lineCanceled + "\n{not json}\n" + lineExpired + "\n", wantLine: 2, wantOK: 1},
		{name: "truncated json", input: lineCanceled + "\n\n" + lineSucceeded[:100], wantLine: 3, wantOK: 1},
		{name: "no custom_id", input: `{"result":{"type":"canceled"}}`, wantLine: 1},
		{name: "empty custom_id", input: `{"custom_id":"","result":{"type":"canceled"}}`, wantLine: 1},
		{name: "numeric custom_id", input: `{"custom_id":7,"result":{"type":"canceled"}}`, wantLine: 1},
		{name: "no result", input: `{"custom_id":"a"}`, wantLine: 1},
		{name: "result not object", input: `{"custom_id":"a","result":"succeeded"}`, wantLine: 1},
		{name: "no type", input: `{"custom_id":"a","result":{}}`, wantLine: 1},
		{name: "array line", input: `[1,2]`, wantLine: 1},
		{name: "custom_id not ours", input: `{"custom_id":"has space","result":{"type":"canceled"}}`, wantLine: 1},
		{name: "two objects", input: lineCanceled + lineExpired, wantLine: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeAll(t, strings.NewReader(tt.input))
			var le *upstream.LineError
			if !errors.As(err, &le) || le.Line != tt.wantLine {
				t.Fatalf("Err() = %v, want a LineError on line %d", err, tt.wantLine)
			}
			if len(got) != tt.wantOK {
				t.Errorf("%d results before the error, want %d", len(got), tt.wantOK)
			}
		})
	}

	// A read that fails mid-line: the partial line is not returned.
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader(lineCanceled+"\n"+lineSucceeded[:50]), iotest.ErrReader(boom))
	got, err := decodeAll(t, r)
	if !errors.Is(err, boom) || len(got) != 1 {
		t.Errorf("read error mid-line: %d results, Err() = %v, want 1 and the read error", len(got), err)
	}
}

// bigLine is a succeeded result whose text is n bytes.
func bigLine(id string, n int) string {
	text := strings.Repeat("lorem ipsum \\\"dolor\\\" sit amet, ", n/32+1)[:n]
	text = strings.TrimRight(text, "\\") // do not end on a lone backslash
	return `{"custom_id":"` + id + `","result":{"type":"succeeded","message":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"` +
		text + `"}],"stop_reason":"max_tokens","usage":{"input_tokens":1,"output_tokens":300000}}}}`
}

func TestResultsReaderLongLines(t *testing.T) {
	t.Parallel()
	for _, size := range []int{64<<10 + 1, 256<<10 - 200, 256 << 10, 1 << 20, 9 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			long := bigLine("long", size)
			if !json.Valid([]byte(long)) {
				t.Fatal("test line is not valid JSON")
			}
			input := lineCanceled + "\n" + long + "\n" + lineExpired + "\n" + long
			got, err := decodeAll(t, strings.NewReader(input))
			if err != nil {
				t.Fatalf("Err() = %v", err)
			}
			if len(got) != 4 || got[1].id != "long" || got[1].line != long || got[3].line != long || got[2].id != "d-1_x" {
				t.Fatalf("decoded %d results (line 2 %d bytes), want 4 with the long lines intact", len(got), len(got[1].line))
			}
		})
	}
}

func TestResultsReaderClose(t *testing.T) {
	t.Parallel()
	rr := upstream.NewResultsReader(strings.NewReader(lineCanceled + "\n" + lineExpired + "\n"))
	if !rr.Next() {
		t.Fatal("Next() = false")
	}
	if err := rr.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if rr.Next() {
		t.Error("Next() after Close = true")
	}
	if rr.Line() != 1 {
		t.Errorf("Line() = %d, want 1", rr.Line())
	}
}

func FuzzResultsDecoder(f *testing.F) {
	for _, s := range []string{
		lineSucceeded, lineErrored, lineCanceled, lineExpired,
		lineSucceeded + "\n" + lineErrored + "\r\n\n" + lineCanceled,
		`{"custom\u005fid":"e","result":{"type":"canceled"}}`,
		`{"custom_id":"a","result":{"type":"x","error":{"error":{"type":"\\\""}}}}`,
		`{"custom_id":"a\\","result":{"type":"x"}}`, `{"custom_id":"a","result":[]}`, "{", "\"", "[", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rr := upstream.NewResultsReader(bytes.NewReader(data))
		n := 0
		for rr.Next() {
			n++
			res := rr.Result()
			if res.CustomID == "" || res.Type == "" {
				t.Fatalf("result with empty custom_id or type: %+v", res)
			}
			if !json.Valid(res.Line) || !bytes.Contains(data, res.Line) {
				t.Fatalf("Line %q is not valid JSON from the input", res.Line)
			}
			// The fast scan must agree with encoding/json on what it reports.
			var v struct {
				CustomID string `json:"custom_id"`
				Result   struct {
					Type string `json:"type"`
				} `json:"result"`
			}
			if err := json.Unmarshal(res.Line, &v); err == nil && utf8.Valid(res.Line) && !hasFoldedDuplicates(res.Line) &&
				(v.CustomID != res.CustomID || v.Result.Type != res.Type) {
				t.Fatalf("decoded (%q, %q), encoding/json says (%q, %q) for %s", res.CustomID, res.Type, v.CustomID, v.Result.Type, res.Line)
			}
			// And on the model and usage that price it.
			var m struct {
				Result struct {
					Message *struct {
						Model string          `json:"model"`
						Usage *upstream.Usage `json:"usage"`
					} `json:"message"`
				} `json:"result"`
			}
			if err := json.Unmarshal(res.Line, &m); err == nil && m.Result.Message != nil && utf8.Valid(res.Line) && !hasFoldedDuplicates(res.Line) {
				want := m.Result.Message
				if res.Model != want.Model || (res.Usage == nil) != (want.Usage == nil) || res.Usage != nil && *res.Usage != *want.Usage {
					t.Fatalf("model %q usage %+v, encoding/json says %q %+v for %s", res.Model, res.Usage, want.Model, want.Usage, res.Line)
				}
			}
		}
		if n > len(data) {
			t.Fatalf("%d results from %d bytes", n, len(data))
		}
	})
}

// hasFoldedDuplicates reports whether a line has keys that encoding/json matches
// case-insensitively (e.g. "Custom_ID" next to "custom_id"), or escaped keys, where the
// fast scan and encoding/json may legitimately pick different members.
func hasFoldedDuplicates(line []byte) bool {
	l := bytes.ToLower(line)
	return bytes.Count(l, []byte(`"custom_id"`)) > 1 || bytes.Count(l, []byte(`"type"`)) > 1 ||
		bytes.Count(l, []byte(`"result"`)) > 1 || !bytes.Equal(l, line) && bytes.Contains(l, []byte(`custom_id`)) ||
		bytes.Contains(line, []byte(`\u`))
}

// emulatorLine is a succeeded line as the emulator writes it (654 bytes: the
// average of its lines for 48-token answers), with custom_id job-<i>.
func emulatorLine(i int) string {
	return fmt.Sprintf(`{"custom_id":"job-%07d","result":{"type":"succeeded","message":{"id":"msg_01f6dBH74W9AL0I0qRUmUbl4","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"run all too but top can can run net row the put but you her who end set see cat net row too job old key two had set who top log out are are now man let for say his you way net day his run now "}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":48,"service_tier":"batch"}}}}`, i)
}

// BenchmarkResultsReader measures the decoder in MB/s and lines/s of JSONL, with
// three baselines in the same run: "scanner" (bufio.Scanner and encoding/json per
// line, the obvious decoder, reading the same three fields), "valid-only" (split
// lines and json.Valid each: the floor of any validating decoder) and "unmarshal"
// (encoding/json of two fields, without a scanner).
//
//	go test -run '^$' -bench 'ResultsReader/654B' -count 5 ./internal/upstream
func BenchmarkResultsReader(b *testing.B) {
	for _, bc := range []struct {
		name string
		line func(i int) string
	}{
		{"654B", emulatorLine},
		{"2KiB", func(int) string { return bigLine("x", 2<<10) }},
		{"64KiB", func(int) string { return bigLine("x", 64<<10) }},
		{"1MiB", func(int) string { return bigLine("x", 1<<20) }},
	} {
		var buf bytes.Buffer
		lines := 0
		for buf.Len() < 16<<20 {
			buf.WriteString(bc.line(lines))
			buf.WriteByte('\n')
			lines++
		}
		data := buf.Bytes()
		run := func(name string, f func(b *testing.B)) {
			b.Run(bc.name+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					f(b)
				}
				b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
			})
		}
		run("decoder", func(b *testing.B) {
			rr := upstream.NewResultsReader(bytes.NewReader(data))
			for rr.Next() {
			}
			if rr.Err() != nil {
				b.Fatal(rr.Err())
			}
		})
		run("scanner", func(b *testing.B) {
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(make([]byte, 64<<10), 32<<20) // the Go SDK's line limit
			for sc.Scan() {
				var v struct {
					CustomID string `json:"custom_id"`
					Result   struct {
						Type  string `json:"type"`
						Error struct {
							Error struct {
								Type string `json:"type"`
							} `json:"error"`
						} `json:"error"`
					} `json:"result"`
				}
				if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
					b.Fatal(err)
				}
			}
			if sc.Err() != nil {
				b.Fatal(sc.Err())
			}
		})
		run("valid-only", func(b *testing.B) {
			for line := range bytes.Lines(data) {
				if !json.Valid(line) {
					b.Fatal("invalid")
				}
			}
		})
		run("unmarshal", func(b *testing.B) {
			for line := range bytes.Lines(data) {
				var v struct {
					CustomID string `json:"custom_id"`
					Result   struct {
						Type string `json:"type"`
					} `json:"result"`
				}
				if err := json.Unmarshal(line, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
