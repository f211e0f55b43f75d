package cli_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/clade-dev/clade/internal/testkit"
)

// ansi matches the escape sequences the live display writes.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// TestRunProgressInTerminal runs `clade run` in a pseudo-terminal of 80 columns:
// the display is one block redrawn in place (cursor moved up over it, not a new
// line per second), none of its lines is wider than 80 columns, and its last
// frame shows the run at 100 %.
func TestRunProgressInTerminal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 400)
	cmd := cladeCmd("", "run", input, "-o", filepath.Join(dir, "out.jsonl"), "--emulate", "tier-4", "--concurrency", "24")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 80, Rows: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	io.Copy(&out, f) // until the process ends (EIO on Linux)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("clade run: %v\n%s", err, out.String())
	}
	raw := out.String()
	redraws := regexp.MustCompile(`\x1b\[\d+A`).FindAllString(raw, -1)
	if len(redraws) < 2 {
		t.Fatalf("%d redraws: the display did not redraw in place\n%q", len(redraws), raw)
	}
	var last []string
	for _, l := range strings.Split(raw, "\n") {
		if !strings.Contains(l, "\x1b[K") {
			continue // not a line of the block (logs, the summary)
		}
		plain := strings.Trim(ansi.ReplaceAllString(l, ""), "\r")
		if n := utf8.RuneCountInString(plain); n > 80 {
			t.Errorf("a display line of %d columns: %q", n, plain)
		}
		if strings.HasPrefix(plain, "[") {
			last = nil
		}
		last = append(last, plain)
	}
	if len(last) == 0 || !strings.Contains(last[0], "100.0%") || !strings.Contains(last[0], "400/400") {
		t.Errorf("last frame = %q, want the run at 100 %% (400/400)", last)
	}
	t.Logf("%d redraws; last frame:\n%s", len(redraws), strings.Join(last, "\n"))
}

// TestRunCtrlCInTerminal: the first Ctrl-C is acknowledged at once, above the
// display (what it does, how to abort), and the run ends with one line that says
// it was interrupted and how to resume.
func TestRunCtrlCInTerminal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 400)
	cmd := cladeCmd("", "run", input, "-o", filepath.Join(dir, "out.jsonl"), "--emulate", "tier-4", "--concurrency", "8")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 80, Rows: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out testkit.Buffer
	go io.Copy(&out, f)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "elapsed 2s") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	time.Sleep(100 * time.Millisecond) // the last bytes through the pty
	got := ansi.ReplaceAllString(out.String(), "")
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("exit %d (%v), want 1 (interrupted)\n%s", cmd.ProcessState.ExitCode(), err, got)
	}
	if !strings.Contains(got, "stopping: ") || !strings.Contains(got, "Ctrl-C again to abort") {
		t.Errorf("the first Ctrl-C was not acknowledged:\n%s", got)
	}
	if n := strings.Count(got, "interrupted"); n != 1 || !strings.Contains(got, "Try: run the same command again to resume") {
		t.Errorf("%d lines say interrupted, want one, with how to resume:\n%s", n, got)
	}
}
