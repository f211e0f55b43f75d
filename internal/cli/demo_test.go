package cli_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the README's first command, `clade demo`, without a key (on the
// built-in emulator): it exits 0 and writes one succeeded result per request.
func TestDemo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := cladeCmd("", "demo", "--requests", "40", "--dir", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("clade demo: %v\n%s", err, tail(out.String(), 3000))
	}
	if !strings.Contains(out.String(), "built-in emulator") {
		t.Errorf("demo did not say it runs on the emulator:\n%s", tail(out.String(), 2000))
	}
	if !strings.Contains(out.String(), "next:\n") || !strings.Contains(out.String(), "clade status "+filepath.Join(dir, "demo.results.jsonl")) {
		t.Errorf("demo did not end with what to try next:\n%s", tail(out.String(), 2000))
	}
	seen := countResults(t, filepath.Join(dir, "demo.results.jsonl"))
	for i := 0; i < 40; i++ {
		if id := fmt.Sprintf("demo-%06d", i); seen[id] != 1 {
			t.Errorf("%s appears %d times, want once", id, seen[id])
		}
	}
}
