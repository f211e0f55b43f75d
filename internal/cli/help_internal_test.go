package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/clade-dev/clade/internal/suggest"
)

// TestHelpFitsIn100Columns: every command's --help, the root's included, wraps
// at 100 columns.
func TestHelpFitsIn100Columns(t *testing.T) {
	paths := commandPaths(newRoot(nil, nil, nil))
	if len(paths) < 10 {
		t.Fatalf("found %d commands, want every one", len(paths))
	}
	for _, p := range paths {
		var out bytes.Buffer
		if code := Run(context.Background(), append(p, "--help"), strings.NewReader(""), &out, &out); code != 0 {
			t.Errorf("clade %s --help: exit %d\n%s", strings.Join(p, " "), code, out.String())
		}
		for _, l := range strings.Split(out.String(), "\n") {
			if n := utf8.RuneCountInString(l); n > helpWidth {
				t.Errorf("clade %s --help: a line of %d columns: %q", strings.Join(p, " "), n, l)
			}
		}
	}
}

// commandPaths lists every command's path below root, the root's (nil) first.
func commandPaths(root *cobra.Command) [][]string {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
	}
	walk(root, nil)
	return paths
}

// A mistyped flag gets the nearest one suggested (two edits at most); one far
// from every flag gets the help command; a mistyped command gets the nearest
// command, as one Try line.
func TestUnknownFlagSuggests(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "x.jsonl", "--conurrency", "5"}, "Try: did you mean --concurrency?"},
		{[]string{"batch", "x.jsonl", "--tire", "tier-1"}, "Try: did you mean --tier?"},
		{[]string{"run", "x.jsonl", "--zzzzzz"}, "Try: clade run --help"},
		{[]string{"bach", "x.jsonl"}, "Error: unknown command \"bach\" for \"clade\"\nTry: did you mean clade batch?"},
		{[]string{"bench", "gatewy"}, "Try: did you mean clade bench gateway?"},
	} {
		var out bytes.Buffer
		if code := Run(context.Background(), tt.args, strings.NewReader(""), &out, &out); code != ExitUsage || !strings.Contains(out.String(), tt.want) {
			t.Errorf("clade %s: exit %d\n%s\nwant exit %d and %q", strings.Join(tt.args, " "), code, out.String(), ExitUsage, tt.want)
		}
	}
	// Every command's own flags: the flag's name less its last letter.
	checked := 0
	for _, p := range commandPaths(newRoot(nil, nil, nil)) {
		c, _, err := newRoot(nil, nil, nil).Find(p)
		if err != nil {
			t.Fatal(err)
		}
		var name string
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if name == "" && !f.Hidden && len(f.Name) >= 5 {
				name = f.Name
			}
		})
		if name == "" {
			continue
		}
		args := append(append([]string{}, p...), "--"+name[:len(name)-1]+"x")
		var out bytes.Buffer
		want := "Try: did you mean --" + name + "?"
		if code := Run(context.Background(), args, strings.NewReader(""), &out, &out); code != ExitUsage || !strings.Contains(out.String(), want) {
			t.Errorf("clade %s: exit %d\n%s\nwant exit %d and %q", strings.Join(args, " "), code, out.String(), ExitUsage, want)
		}
		checked++
	}
	if checked < 10 {
		t.Errorf("checked a typo'd flag on %d commands, want every command with flags (10 or more)", checked)
	}
	if d := suggest.Distance("conurrency", "concurrency"); d != 1 {
		t.Errorf("suggest.Distance = %d, want 1", d)
	}
}

// -q leaves warnings, errors and the summary: no info log lines, unless
// --log-level asks for them.
func TestQuietHidesInfoLogs(t *testing.T) {
	dir := t.TempDir()
	input := dir + "/in.jsonl"
	line := `{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}}` + "\n"
	if err := os.WriteFile(input, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		extra    []string
		wantInfo bool
	}{{nil, false}, {[]string{"--log-level", "info"}, true}} {
		var out bytes.Buffer
		args := append([]string{"run", input, "-o", dir + "/out.jsonl", "--emulate", "tier-4", "-q", "--force"}, tt.extra...)
		if code := Run(context.Background(), args, strings.NewReader(""), &out, &out); code != 0 {
			t.Fatalf("clade %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
		}
		if got := strings.Contains(out.String(), "level=INFO"); got != tt.wantInfo || !strings.Contains(out.String(), "1 requests: 1 succeeded") {
			t.Errorf("clade %s: info lines %v, want %v; summary expected\n%s", strings.Join(args, " "), got, tt.wantInfo, out.String())
		}
	}
}

// TestDocsNamedExist: every docs/….md the CLI's messages name (Try: lines, help)
// exists, and each #anchor is one of its headings.
func TestDocsNamedExist(t *testing.T) {
	ref := regexp.MustCompile(`docs/([A-Za-z0-9_.-]+\.md)(#[a-z0-9-]+)?`)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(src), -1) {
			doc, err := os.ReadFile(filepath.Join("..", "..", "docs", m[1]))
			if err != nil {
				t.Errorf("%s names docs/%s: %v", f, m[1], err)
				continue
			}
			checked++
			if m[2] == "" {
				continue
			}
			found := false
			for _, l := range strings.Split(string(doc), "\n") {
				if h, ok := strings.CutPrefix(strings.TrimLeft(l, "#"), " "); ok && strings.HasPrefix(l, "#") &&
					"#"+strings.ReplaceAll(strings.ToLower(strings.TrimSpace(h)), " ", "-") == m[2] {
					found = true
				}
			}
			if !found {
				t.Errorf("%s names docs/%s%s: no such heading", f, m[1], m[2])
			}
		}
	}
	if checked < 5 {
		t.Errorf("found %d references to docs/*.md in the CLI's sources, want the Try: lines' (5 or more)", checked)
	}
}
