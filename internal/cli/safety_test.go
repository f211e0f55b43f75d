package cli_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/testkit"
)

// clade runs the command line in-process and returns its exit code and stderr.
func clade(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stderr.String()
}

// batchArgs are the flags that make `clade batch` quick on the emulator.
var batchArgs = []string{"--emulate", "tier-4", "--tier", "tier-4", "--poll", "10ms", "-q"}

func TestOutputNeverOverwritesInput(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"run", "batch"} {
		for _, tt := range []struct {
			name string
			// args returns the paths flags given the input, in dir.
			args func(dir, input string) []string
			// names are the paths the error must name (besides the input).
			names func(dir, input string) []string
		}{
			{name: "output is the input",
				args:  func(dir, in string) []string { return []string{"-o", in} },
				names: func(dir, in string) []string { return nil }},
			{name: "output is a symlink to the input",
				args: func(dir, in string) []string {
					link := filepath.Join(dir, "link.jsonl")
					if err := os.Symlink(in, link); err != nil {
						t.Fatal(err)
					}
					return []string{"-o", link}
				},
				names: func(dir, in string) []string { return []string{filepath.Join(dir, "link.jsonl")} }},
			{name: "output is a hard link to the input",
				args: func(dir, in string) []string {
					hard := filepath.Join(dir, "hard.jsonl")
					if err := os.Link(in, hard); err != nil {
						t.Fatal(err)
					}
					return []string{"-o", hard}
				},
				names: func(dir, in string) []string { return []string{filepath.Join(dir, "hard.jsonl")} }},
			{name: "output is the store",
				args: func(dir, in string) []string {
					p := filepath.Join(dir, "same")
					return []string{"-o", p, "--db", p}
				},
				names: func(dir, in string) []string { return []string{filepath.Join(dir, "same")} }},
			{name: "store is the input",
				args:  func(dir, in string) []string { return []string{"-o", filepath.Join(dir, "out.jsonl"), "--db", in} },
				names: func(dir, in string) []string { return nil }},
			{name: "output is the input, written another way",
				args:  func(dir, in string) []string { return []string{"-o", filepath.Join(dir, ".", "sub", "..", "in.jsonl")} },
				names: func(dir, in string) []string { return nil }},
		} {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
					t.Fatal(err)
				}
				in := filepath.Join(dir, "in.jsonl")
				writeWorkload(t, in, 5)
				before, err := os.ReadFile(in)
				if err != nil {
					t.Fatal(err)
				}
				args := append([]string{mode, in}, tt.args(dir, in)...)
				if mode == "batch" {
					args = append(args, batchArgs...)
				} else {
					args = append(args, "--emulate", "tier-4", "-q")
				}
				entries := dirEntries(t, dir)
				code, stderr := clade(t, args...)
				if code != cli.ExitUsage {
					t.Errorf("clade %s = exit %d, want %d (usage); stderr:\n%s", strings.Join(args, " "), code, cli.ExitUsage, stderr)
				}
				for _, name := range append(tt.names(dir, in), in) {
					if !strings.Contains(stderr, name) {
						t.Errorf("error does not name %s:\n%s", name, stderr)
					}
				}
				if !strings.Contains(stderr, "Try: ") {
					t.Errorf("error says nothing to try:\n%s", stderr)
				}
				after, err := os.ReadFile(in)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(before, after) {
					t.Errorf("the input changed: %d bytes before, %d after", len(before), len(after))
				}
				if got := dirEntries(t, dir); got != entries {
					t.Errorf("files were written before the refusal: %s, were %s", got, entries)
				}
			})
		}
	}
}

// dirEntries lists dir's names, to see that nothing was created.
func dirEntries(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

func TestOutputOfAnotherRunIsRefused(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"run", "batch"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
			writeWorkload(t, a, 4)
			testkit.Input{IDFormat: "other-%03d", Model: "haiku", MaxTokens: 16}.Write(t, b, 3)
			out := filepath.Join(dir, "out.jsonl")
			flags := []string{"--emulate", "tier-4", "-q"}
			if mode == "batch" {
				flags = batchArgs
			}
			cmd := func(input string, extra ...string) []string {
				return append(append([]string{mode, input, "-o", out}, flags...), extra...)
			}
			if code, stderr := clade(t, cmd(a)...); code != cli.ExitOK {
				t.Fatalf("first run: exit %d\n%s", code, stderr)
			}
			first, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}

			// Another input, the same -o: refused, naming the input the file is of.
			code, stderr := clade(t, cmd(b)...)
			if code != cli.ExitUsage {
				t.Errorf("second input, same -o: exit %d, want %d\n%s", code, cli.ExitUsage, stderr)
			}
			for _, want := range []string{out, a, "--force", "Try: "} {
				if !strings.Contains(stderr, want) {
					t.Errorf("refusal lacks %q:\n%s", want, stderr)
				}
			}
			if now, _ := os.ReadFile(out); !bytes.Equal(now, first) {
				t.Errorf("the first run's results were rewritten (%d bytes, were %d)", len(now), len(first))
			}

			// The same run again resumes on its own file.
			if code, stderr := clade(t, cmd(a)...); code != cli.ExitOK {
				t.Errorf("first input again: exit %d\n%s", code, stderr)
			}
			if got := len(countResults(t, out)); got != 4 {
				t.Errorf("results after the resume: %d custom_ids, want 4", got)
			}

			// --force hands the file over.
			if code, stderr := clade(t, cmd(b, "--force")...); code != cli.ExitOK {
				t.Fatalf("second input with --force: exit %d\n%s", code, stderr)
			}
			seen := countResults(t, out)
			if len(seen) != 3 || seen[testkit.Input{IDFormat: "other-%03d"}.ID(0)] != 1 {
				t.Errorf("after --force the file holds %v, want the second run's 3 results", seen)
			}
		})
	}
}

func TestOutputNotWrittenByThisStoreIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "notes.txt")
	writeWorkload(t, in, 2)
	const notes = "my notes, not results\n"
	if err := os.WriteFile(out, []byte(notes), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stderr := clade(t, "run", in, "-o", out, "--emulate", "tier-4", "-q")
	if code != cli.ExitUsage || !strings.Contains(stderr, out) || !strings.Contains(stderr, "--force") {
		t.Errorf("run onto a file no run wrote: exit %d, want %d naming it and --force\n%s", code, cli.ExitUsage, stderr)
	}
	if b, _ := os.ReadFile(out); string(b) != notes {
		t.Errorf("the file was rewritten: %q", b)
	}
}

func TestInputChangedHintKeepsFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, out, db := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "res.jsonl"), filepath.Join(dir, "store.db")
	writeWorkload(t, in, 3)
	args := []string{"run", in, "-o", out, "--db", db, "--emulate", "tier-4", "-q"}
	if code, stderr := clade(t, args...); code != cli.ExitOK {
		t.Fatalf("first run: exit %d\n%s", code, stderr)
	}
	writeWorkload(t, in, 4) // changed
	code, stderr := clade(t, args...)
	if code != cli.ExitUsage {
		t.Fatalf("changed input: exit %d, want %d\n%s", code, cli.ExitUsage, stderr)
	}
	want := "Try: clade run " + in + " -o " + out + " --db " + db + " --emulate tier-4 -q --force"
	if !strings.Contains(stderr, want) {
		t.Errorf("hint lacks %q:\n%s", want, stderr)
	}
}

func TestNoValidLineIsAnError(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, content string
		want          []string
	}{
		{"csv", "id,prompt\n1,hello\n2,world\n", []string{"no valid request", "all 3 of its lines are bad", "in.txt:1: invalid JSON"}},
		{"readme", "# My project\n\nSome words.\n", []string{"no valid request", "in.txt:1:", "in.txt:3:"}},
		{"json array", `[{"custom_id":"a","params":{}}]` + "\n", []string{"its one line is bad", "in.txt:1: must be a JSON object"}},
		{"binary", "\x7fELF\x02\x01\x01\x00\x00\n\x00\x00\x03\x00>\x00", []string{"no valid request", "in.txt:1: invalid JSON"}},
		{"many bad lines", strings.Repeat("nope\n", 9), []string{"all 9 of its lines are bad", "in.txt:5:", "… and 4 more"}},
		{"empty", "", []string{"in.txt is empty"}},
	} {
		for _, mode := range []string{"run", "batch"} {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				in := filepath.Join(dir, "in.txt")
				if err := os.WriteFile(in, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
				args := []string{mode, in, "-o", filepath.Join(dir, "out.jsonl")}
				if mode == "batch" {
					args = append(args, batchArgs...)
				} else {
					args = append(args, "--emulate", "tier-4", "-q")
				}
				code, stderr := clade(t, args...)
				if code != cli.ExitUsage {
					t.Errorf("exit %d, want %d (usage)\n%s", code, cli.ExitUsage, stderr)
				}
				for _, w := range append(tt.want, "Try: ") {
					if !strings.Contains(stderr, w) {
						t.Errorf("stderr lacks %q:\n%s", w, stderr)
					}
				}
				if strings.Contains(stderr, "0 requests:") {
					t.Errorf("a summary of nothing was printed:\n%s", stderr)
				}
			})
		}
	}
}

func TestMissingOutputDirNamesIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, in, 1)
	missing := filepath.Join(dir, "no-such-dir")
	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"output", []string{"-o", filepath.Join(missing, "res.jsonl")}, []string{"directory " + missing + " does not exist", "Try: mkdir -p " + missing, "-o"}},
		{"store", []string{"-o", filepath.Join(dir, "res.jsonl"), "--db", filepath.Join(missing, "s.db")}, []string{"directory " + missing + " does not exist", "--db"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := clade(t, append([]string{"run", in, "--emulate", "tier-4", "-q"}, tt.args...)...)
			if code != cli.ExitUsage {
				t.Errorf("exit %d, want %d\n%s", code, cli.ExitUsage, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Count(stderr, "open store") > 1 || strings.Contains(stderr, "unable to open database file") {
				t.Errorf("the store's error leaks through instead:\n%s", stderr)
			}
		})
	}
}

func TestUnauthorizedSaysCheckTheKey(t *testing.T) {
	em, err := emulator.Start(emulator.Config{Tier: "tier-4", APIKeys: []string{"sk-ant-good"}})
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
	t.Setenv("ANTHROPIC_BASE_URL", em.URL)
	for _, mode := range []string{"run", "batch"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.jsonl")
			writeWorkload(t, in, 3)
			args := []string{mode, in, "-o", filepath.Join(dir, "out.jsonl"), "-q"}
			if mode == "batch" {
				args = append(args, "--tier", "tier-4", "--poll", "10ms")
			}
			code, stderr := clade(t, args...)
			if code == cli.ExitOK {
				t.Fatalf("a refused key: exit 0\n%s", stderr)
			}
			for _, w := range []string{"401", "Try: the API refused the key: check ANTHROPIC_API_KEY"} {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "budget") || strings.Contains(stderr, "sk-ant-wrong") {
				t.Errorf("misleading hint or the key in the output:\n%s", stderr)
			}
		})
	}
}

// fullDisk mounts a tmpfs of size bytes at a new directory and returns it.
func fullDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testkit.Unavailable(t, "a small tmpfs is needed to fill a disk (run as root): mount: %s", strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func TestFullDiskFailsTheRun(t *testing.T) {
	t.Parallel()
	const n = 200 // about 100 KB of results: the disk fills a third of the way in
	for name, mode := range map[string]string{
		"run": "run", "batch": "batch", "ordered": "run --ordered",
		"hybrid": "run --deadline 1h --tier tier-4 --poll 10ms --max-batch-requests 20",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			full := fullDisk(t, "32k")
			in, out, db := filepath.Join(dir, "in.jsonl"), filepath.Join(full, "out.jsonl"), filepath.Join(dir, "store.db")
			writeWorkload(t, in, n)
			words := strings.Fields(mode)
			args := append(words, in, "-o", out, "--db", db)
			if words[0] == "batch" {
				// Small batches: their bodies are spooled beside the output too.
				args = append(append(args, batchArgs...), "--max-requests", "20")
			} else {
				args = append(args, "--emulate", "tier-4", "-q")
			}
			code, stderr := clade(t, args...)
			if code != cli.ExitFailure {
				t.Errorf("results on a full disk: exit %d, want %d\n%s", code, cli.ExitFailure, stderr)
			}
			for _, w := range []string{"Error: write results " + out, "no space left on device", "Try: make room on the disk of " + out} {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			// Nothing is lost: every result is in the store.
			s, _ := runStatus(t, db)
			if got := s.Results[jobs.Succeeded]; got != n {
				t.Errorf("store has %d succeeded results, want %d", got, n)
			}
			if fi, err := os.Stat(out); err != nil || fi.Size() >= int64(n)*300 {
				t.Errorf("the results file is not short: %v, %v (the disk did not fill?)", fi.Size(), err)
			}
		})
	}
}
