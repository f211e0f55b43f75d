package cli_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/testkit"
)

// ansi matches the escape sequences the live display writes.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// inTerminal runs cmd in a pseudo-terminal of 80 columns until it ends, and
// checks its display: one block redrawn in place (the cursor moved up over it,
// not a new line per period), no line of it wider than 80 columns, and its last
// frame at 100 % of total. It returns the frames, each a block as drawn.
func inTerminal(t *testing.T, cmd *exec.Cmd, total int) [][]string {
	t.Helper()
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 80, Rows: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out bytes.Buffer
	io.Copy(&out, f) // until the process ends (EIO on Linux)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("clade %s: %v\n%s", cmd.Args[1], err, tail(ansi.ReplaceAllString(out.String(), ""), 3000))
	}
	raw := out.String()
	// Each redraw moves the cursor up over the block drawn before and clears to
	// the end of the screen; the new block's lines each end in erase-line.
	redraw := regexp.MustCompile(`\x1b\[\d+A\r\x1b\[J`)
	chunks := redraw.Split(raw, -1)
	if len(chunks) < 3 {
		t.Fatalf("%d redraws: the display did not redraw in place\n%q", len(chunks)-1, raw)
	}
	var frames [][]string
	for _, c := range chunks {
		var frame []string
		for _, l := range strings.Split(c, "\n") {
			if !strings.Contains(l, "\x1b[K") {
				continue // not a line of the block (events, logs, the summary)
			}
			plain := strings.Trim(ansi.ReplaceAllString(l, ""), "\r")
			if n := utf8.RuneCountInString(plain); n > 80 {
				t.Errorf("a display line of %d columns: %q", n, plain)
			}
			frame = append(frame, plain)
		}
		if len(frame) > 0 {
			frames = append(frames, frame)
		}
	}
	want := fmt.Sprintf("%d/%d", total, total)
	if len(frames) == 0 || !strings.Contains(frames[len(frames)-1][0], "100.0%") || !strings.Contains(frames[len(frames)-1][0], want) {
		t.Fatalf("last frame = %q, want the run at 100 %% (%s)", frames[len(frames)-1:], want)
	}
	t.Logf("%d redraws, %d frames; last frame:\n%s", len(chunks)-1, len(frames), strings.Join(frames[len(frames)-1], "\n"))
	return frames
}

// framesWith counts the frames that have a line containing each of subs.
func framesWith(frames [][]string, subs ...string) int {
	n := 0
	for _, f := range frames {
		all := strings.Join(f, "\n")
		has := true
		for _, s := range subs {
			has = has && strings.Contains(all, s)
		}
		if has {
			n++
		}
	}
	return n
}

// TestRunProgressInTerminal runs `clade run` in a pseudo-terminal of 80 columns:
// the display is one block redrawn in place, none of its lines is wider than 80
// columns, and its last frame shows the run at 100 %.
func TestRunProgressInTerminal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, 400)
	cmd := cladeCmd("", "run", input, "-o", filepath.Join(dir, "out.jsonl"), "--emulate", "tier-4", "--concurrency", "24")
	frames := inTerminal(t, cmd, 400)
	if framesWith(frames, "elapsed ", "haiku", " req ") == 0 {
		t.Errorf("no frame shows the totals and the haiku class's row:\n%q", frames)
	}
}

// TestBatchProgressInTerminal runs `clade batch` in a pseudo-terminal of 80
// columns against an emulator whose batches take a few seconds: one block
// redrawn in place, with the batches by state and the requests in them, no line
// over 80 columns, its last frame at 100 %.
func TestBatchProgressInTerminal(t *testing.T) {
	t.Parallel()
	const n = 200
	key := "sk-ant-batch-pty-" + strings.Repeat("b", 24)
	// 200 requests at 50 a second: about 4 s of batches, several redraws.
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1, BatchProcessingRate: 50})
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, n)
	cmd := cladeCmd(key, "batch", input, "-o", filepath.Join(dir, "out.jsonl"), "--base-url", em.URL, "--tier", "tier-4",
		"--max-requests", "50", "--poll", "50ms")
	frames := inTerminal(t, cmd, n)
	running := regexp.MustCompile(`(?m)^batches  [1-9]\d* running.*\nrequests [1-9][\d,]* in batches`)
	seen := false
	for _, f := range frames {
		seen = seen || running.MatchString(strings.Join(f, "\n"))
	}
	if !seen {
		t.Errorf("no frame shows batches running with requests in them:\n%q", frames)
	}
	if last := frames[len(frames)-1]; framesWith([][]string{last}, "elapsed ", "done", "batches  0 running  4 ended") != 1 {
		t.Errorf("last frame = %q, want the 4 batches ended and the run done", last)
	}
}

// TestHybridProgressInTerminal runs `clade run --deadline` in a pseudo-terminal
// of 80 columns, with batches too slow for the deadline: before the spill the
// batches' block (with the run's total), after it realtime's rows above the
// batches' in one block; no line over 80 columns, the one total at 100 % at
// the end.
func TestHybridProgressInTerminal(t *testing.T) {
	t.Parallel()
	const n = 60
	key := "sk-ant-hybrid-pty-" + strings.Repeat("h", 24)
	// Batches finish 1 request a second (a minute for all); the deadline is 12 s
	// away and realtime needs about 6 s at 600 requests a minute: the run spills.
	overlay := []byte("tiers:\n  paced:\n    batch: {rpm: 1000, queue: 100000, max_requests: 100000}\n    limits:\n      default: {rpm: 600, itpm: 10000000, otpm: 10000000}\n")
	cat, err := catalog.Overlay(catalog.Default(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "paced", APIKeys: []string{key}, ClockSpeed: 1, BatchProcessingRate: 1})
	dir := t.TempDir()
	input, catPath := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "catalog.yaml")
	writeWorkload(t, input, n)
	if err := os.WriteFile(catPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := cladeCmd(key, "run", input, "-o", filepath.Join(dir, "out.jsonl"), "--base-url", em.URL, "--catalog", catPath,
		"--tier", "paced", "--deadline", "12s", "--max-batch-requests", "20", "--poll", "50ms")
	frames := inTerminal(t, cmd, n)
	if framesWith(frames, "elapsed ", "batches  3 running") == 0 {
		t.Errorf("no frame shows the batches before the spill:\n%q", frames)
	}
	both := 0
	for _, f := range frames {
		if bars := framesWith([][]string{f}, "["); strings.Count(strings.Join(f, "\n"), "] ") != 1 || bars != 1 {
			t.Errorf("a frame with %d bars, want one (the run's total):\n%s", strings.Count(strings.Join(f, "\n"), "] "), strings.Join(f, "\n"))
		}
		// After the spill: realtime's block (the total, a class row) first, the
		// batches' rows below it.
		if len(f) >= 5 && strings.HasPrefix(f[1], "elapsed ") && strings.Contains(f[2], " req ") && strings.HasPrefix(f[len(f)-2], "batches ") {
			both++
		}
	}
	if both == 0 {
		t.Errorf("no frame shows realtime's rows above the batches' under one total:\n%q", frames)
	}
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
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, f) // until the pty closes with the process
		close(copied)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "elapsed 2s") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	// The last bytes through the pty: a fixed 100 ms lost the final line on a
	// loaded CI machine.
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
	}
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
