package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/cli"
)

// TestPlanGolden runs `clade plan` on testdata/plan/input.jsonl and compares its
// output with the golden files (go test -run Plan -update rewrites them).
func TestPlanGolden(t *testing.T) {
	t.Parallel()
	input := filepath.Join("testdata", "plan", "input.jsonl")
	tests := []struct {
		name   string
		args   []string
		golden string
	}{
		{name: "text", args: []string{"plan", input}, golden: "plan-text.golden"},
		{name: "deadline", args: []string{"plan", input, "--tier", "tier-1,tier-2", "--deadline", "20m", "--output-tokens", "200"}, golden: "plan-deadline.golden"},
		{name: "json", args: []string{"plan", input, "--tier", "tier-1,start", "--json"}, golden: "plan-json.golden"},
		{name: "sample", args: []string{"plan", input, "--tier", "tier-1", "--sample", "40"}, golden: "plan-sample.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := cli.Run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
				t.Fatalf("clade %s exit code = %d, want 0\nstderr:\n%s", strings.Join(tt.args, " "), code, stderr.String())
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			if got := stdout.String(); got != string(want) {
				t.Errorf("clade %s output differs from %s:\n--- got\n%s\n--- want\n%s", strings.Join(tt.args, " "), path, got, want)
			}
		})
	}
}

// TestPlanReportsBadLines checks that bad lines come out as file:line: field: reason.
func TestPlanReportsBadLines(t *testing.T) {
	t.Parallel()
	input := filepath.Join("testdata", "plan", "input.jsonl")
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"plan", input}, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("exit code = %d, want 0\n%s", code, stderr.String())
	}
	for _, want := range []string{
		input + ":121: params.max_tokens: required",
		input + ":123: custom_id: must match",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("clade plan output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// TestPlanJSONFields checks the documented JSON field names.
func TestPlanJSONFields(t *testing.T) {
	t.Parallel()
	input := filepath.Join("testdata", "plan", "input.jsonl")
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"plan", input, "--json", "--tier", "tier-1"}, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("exit code = %d, want 0\n%s", code, stderr.String())
	}
	var p map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &p); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	for _, k := range []string{"input", "lines", "requests", "bad_lines", "problems", "models", "cost_usd", "batch_cost_usd", "batch_ratio", "tiers", "recommendation", "output_assumption"} {
		if _, ok := p[k]; !ok {
			t.Errorf("JSON plan lacks %q", k)
		}
	}
	if p["batch_ratio"] != 0.5 {
		t.Errorf("batch_ratio = %v, want 0.5", p["batch_ratio"])
	}
}

// TestPlanUsageErrors checks that bad flags exit 2 with an Error line and a Try line.
func TestPlanUsageErrors(t *testing.T) {
	t.Parallel()
	input := filepath.Join("testdata", "plan", "input.jsonl")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantTry string
	}{
		{name: "no input", args: []string{"plan", "nope.jsonl"}, wantErr: "input nope.jsonl", wantTry: "clade plan PATH/TO/input.jsonl"},
		{name: "unknown tier", args: []string{"plan", input, "--tier", "platinum"}, wantErr: `unknown tier "platinum"`, wantTry: "--tier tier-1,"},
		{name: "both outputs", args: []string{"plan", input, "--output-ratio", "0.3", "--output-tokens", "10"}, wantErr: "give one, not both", wantTry: "--output-tokens 300"},
		{name: "bad ratio", args: []string{"plan", input, "--output-ratio", "2"}, wantErr: "--output-ratio 2", wantTry: "--output-ratio 0.5"},
		{name: "bad deadline", args: []string{"plan", input, "--deadline", "soon"}, wantErr: `invalid argument "soon"`, wantTry: "clade plan --help"},
		{name: "no args", args: []string{"plan"}, wantErr: "accepts 1 arg", wantTry: "clade plan --help"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := cli.Run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != cli.ExitUsage {
				t.Errorf("exit code = %d, want %d\nstderr:\n%s", code, cli.ExitUsage, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "Error: ") || !strings.Contains(lines[0], tt.wantErr) ||
				!strings.HasPrefix(lines[1], "Try: ") || !strings.Contains(lines[1], tt.wantTry) {
				t.Errorf("stderr = %q, want Error: …%s… then Try: …%s…", stderr.String(), tt.wantErr, tt.wantTry)
			}
		})
	}
}

// TestPlanCacheOrdering runs `clade plan` on a JSONL file of 4 documents × 3
// questions, the document in a cache_control block, and checks that the text has a
// row with and one without cache-aware ordering and that the JSON estimate with it
// costs less; on the golden input (no cache_control) both are equal.
func TestPlanCacheOrdering(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for d := range 4 {
		doc := strings.Repeat(fmt.Sprintf("document %d. ", d), 500) // ~1,500 tokens: over sonnet-5's minimum
		for q := range 3 {
			fmt.Fprintf(&b, `{"custom_id":"d%dq%d","params":{"model":"claude-sonnet-5","max_tokens":50,"messages":[{"role":"user","content":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}},{"type":"text","text":"Question %d?"}]}]}}`+"\n", d, q, doc, q)
		}
	}
	cached := filepath.Join(t.TempDir(), "cached.jsonl")
	if err := os.WriteFile(cached, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
			t.Fatalf("clade %s exit code = %d, want 0\n%s", strings.Join(args, " "), code, stderr.String())
		}
		return stdout.String()
	}
	text := run("plan", cached, "--tier", "tier-1")
	for _, want := range []string{"12 requests share 4 cacheable prefixes", "\nwith cache-aware ordering ", "\nwithout (every request writes) "} {
		if !strings.Contains(text, want) {
			t.Errorf("clade plan output lacks %q:\n%s", want, text)
		}
	}
	type mode struct {
		InputCostUSD float64 `json:"input_cost_usd"`
		Tiers        []struct {
			Minutes float64 `json:"minutes"`
		} `json:"tiers"`
	}
	var p struct {
		Cache struct {
			Prefixes int64 `json:"prefixes"`
			With     mode  `json:"with_scheduling"`
			Without  mode  `json:"without_scheduling"`
		} `json:"cache"`
	}
	decode := func(s string) {
		t.Helper()
		p.Cache.Prefixes = -1
		if err := json.Unmarshal([]byte(s), &p); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, s)
		}
	}
	decode(run("plan", cached, "--tier", "tier-1", "--json"))
	if c := p.Cache; c.Prefixes != 4 || !(c.With.InputCostUSD < c.Without.InputCostUSD) || len(c.With.Tiers) != 1 || len(c.Without.Tiers) != 1 {
		t.Errorf("cached: cache = %+v, want 4 prefixes, input cost with < without, one tier each", c)
	}
	golden := filepath.Join("testdata", "plan", "input.jsonl")
	decode(run("plan", golden, "--tier", "tier-1", "--json"))
	if c := p.Cache; c.Prefixes != 0 || c.With.InputCostUSD <= 0 || c.With.InputCostUSD != c.Without.InputCostUSD ||
		len(c.With.Tiers) != 1 || c.With.Tiers[0].Minutes != c.Without.Tiers[0].Minutes {
		t.Errorf("no cache_control: cache = %+v, want 0 prefixes and with = without", c)
	}
	if strings.Contains(run("plan", golden, "--tier", "tier-1"), "prompt cache:") {
		t.Error("clade plan without cache_control prints a prompt cache section")
	}
}
