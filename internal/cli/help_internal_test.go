package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spf13/cobra"
)

// TestHelpFitsIn100Columns: every command's --help, the root's included, wraps
// at 100 columns.
func TestHelpFitsIn100Columns(t *testing.T) {
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
	walk(newRoot(nil, nil, nil), nil)
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
