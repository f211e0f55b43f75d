package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/testkit"
)

// writeModels writes n lines, the ones whose index is in bad naming model
// "claude-haiku-45" (a typo), the others claude-haiku-4-5.
func writeModels(t *testing.T, path string, n int, bad map[int]bool) {
	t.Helper()
	var b strings.Builder
	for i := range n {
		m := "claude-haiku-4-5"
		if bad[i] {
			m = "claude-haiku-45"
		}
		fmt.Fprintf(&b, `{"custom_id":"r%d","params":{"model":%q,"max_tokens":20,"messages":[{"role":"user","content":"hi"}]}}`+"\n", i, m)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunUnknownModelUpFront: a model the catalog does not know is reported before
// any request, with its lines, the first line and a did-you-mean: when no line
// could run, clade run stops there (nothing written); when some can, it warns
// first and runs the others; --strict stops.
func TestRunUnknownModelUpFront(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "all-bad.jsonl")
	writeModels(t, in, 4, map[int]bool{0: true, 1: true, 2: true, 3: true})
	out := filepath.Join(dir, "all-bad.out.jsonl")
	code, stderr := clade(t, "run", in, "-o", out, "--emulate", "tier-4", "-q")
	if code != cli.ExitUsage || !strings.Contains(stderr, `4 lines (first: line 1) name model "claude-haiku-45", which the catalog does not know (did you mean claude-haiku-4-5?)`) ||
		!strings.Contains(stderr, "nothing would run") || !strings.Contains(stderr, "Try: fix params.model in those lines, or give --model claude-haiku-4-5") {
		t.Errorf("every line unknown: exit %d, stderr:\n%s\nwant exit %d naming the lines, the model and the suggestion", code, stderr, cli.ExitUsage)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a results file was written for a run that could not start")
	}
	if _, err := os.Stat(out + ".clade.db"); err == nil {
		t.Errorf("a store was made for a run that could not start")
	}

	mixed := filepath.Join(dir, "mixed.jsonl")
	writeModels(t, mixed, 6, map[int]bool{4: true})
	code, stderr = clade(t, "run", mixed, "-o", filepath.Join(dir, "mixed.out.jsonl"), "--emulate", "tier-4", "-q")
	warn := strings.Index(stderr, `warning: `+mixed+`: 1 line (first: line 5) name model "claude-haiku-45"`)
	if code != cli.ExitFailedRequests || warn < 0 {
		t.Errorf("one line of six unknown: exit %d, stderr:\n%s\nwant the warning up front and exit %d (one line failed)", code, stderr, cli.ExitFailedRequests)
	}
	if summary := strings.Index(stderr, "succeeded"); summary >= 0 && warn > summary {
		t.Errorf("the warning came after the summary:\n%s", stderr)
	}
	types := testkit.ResultTypes(t, filepath.Join(dir, "mixed.out.jsonl"))
	if len(types) != 6 || types["r4"] != "errored" || types["r0"] != "succeeded" {
		t.Errorf("results %v, want r4 errored and the five others succeeded", types)
	}

	code, stderr = clade(t, "run", mixed, "-o", filepath.Join(dir, "strict.out.jsonl"), "--emulate", "tier-4", "-q", "--strict")
	if code != cli.ExitUsage || !strings.Contains(stderr, "--strict") {
		t.Errorf("--strict with an unknown model: exit %d, stderr:\n%s", code, stderr)
	}
	// --model decides the model: the lines' own are not checked.
	code, stderr = clade(t, "run", in, "-o", filepath.Join(dir, "override.out.jsonl"), "--emulate", "tier-4", "-q", "--model", "claude-haiku-4-5")
	if code != cli.ExitOK {
		t.Errorf("--model over unknown line models: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestRunProbesTheAPIFirst: an API that cannot be reached is reported before
// anything is imported, saying what to check.
func TestRunProbesTheAPIFirst(t *testing.T) {
	em, err := emulator.Start(emulator.Config{Tier: "tier-4"})
	if err != nil {
		t.Fatal(err)
	}
	url := em.URL
	em.Close() // nothing listens there now
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-some-key")
	t.Setenv("ANTHROPIC_BASE_URL", url)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeModels(t, in, 3, nil)
	out := filepath.Join(dir, "out.jsonl")
	code, stderr := clade(t, "run", in, "-o", out, "-q")
	if code == cli.ExitOK || !strings.Contains(stderr, "cannot be reached") || !strings.Contains(stderr, "Try: check the network and --base-url") {
		t.Errorf("unreachable API: exit %d, stderr:\n%s", code, stderr)
	}
	if _, err := os.Stat(out + ".clade.db"); err == nil {
		t.Errorf("a store was made before the API was reached")
	}
}
