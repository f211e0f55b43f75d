package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/testkit"
)

// The test binary doubles as the clade binary: with CLADE_TEST_AS_CLADE=1 it runs the
// command line and exits, so crash tests can kill a real child process.
func TestMain(m *testing.M) {
	if os.Getenv("CLADE_TEST_AS_CLADE") == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cladeCmd returns a child clade process with the given args and API key.
func cladeCmd(key string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CLADE_TEST_AS_CLADE=1", "ANTHROPIC_API_KEY="+key, "ANTHROPIC_BASE_URL=")
	return cmd
}

// workload is the input of the CLI tests: custom_ids job-00000…, the "haiku"
// alias (the CLI resolves it), max_tokens 48.
var workload = testkit.Input{IDFormat: "job-%05d", Model: "haiku", MaxTokens: 48, Content: "item %d"}

// writeWorkload writes n workload lines, then the bad lines, to path.
func writeWorkload(t *testing.T, path string, n int, bad ...string) {
	t.Helper()
	workload.Write(t, path, n, bad...)
}

// countResults maps custom_id to how many lines it has in the results file,
// reporting (not stopping at) each line that did not succeed.
func countResults(t *testing.T, path string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, l := range testkit.ResultLines(t, path) {
		if l.Type != "succeeded" {
			t.Errorf("%s: %s, want succeeded", l.CustomID, l.Type)
		}
		seen[l.CustomID]++
	}
	return seen
}

// wantEachOnce checks that the results file at out has exactly one line for each
// of the n workload custom_ids and no other, and returns what countResults does.
func wantEachOnce(t *testing.T, out string, n int) map[string]int {
	t.Helper()
	seen := countResults(t, out)
	for i := 0; i < n; i++ {
		if id := workload.ID(i); seen[id] != 1 {
			t.Errorf("%s appears %d times in the output, want exactly once", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("output has %d custom_ids, want %d", len(seen), n)
	}
	return seen
}

// TestRunSurvivesSIGKILL kills `clade run` ten times mid-run, with requests in
// flight, then resumes it: every custom_id ends with exactly one result, and the
// API key is in no log line or file. Each kill lands once the output holds a
// step more results than the store had after the previous one, so every process
// makes progress and none finishes first. It fails if a kill found no new result
// or the run complete, or if fewer than half the kills found jobs running.
func TestRunSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	t.Parallel()
	const n, kills = 900, 10
	const step = n / (kills + 2) // at most a sixth of the run is left for the resume
	key := "sk-ant-crash-" + strings.Repeat("k", 24)
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", LatencyScale: 0.1, APIKeys: []string{key}})
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, n, `{"custom_id":"bad id","params":{}}`)
	out := filepath.Join(dir, "out.jsonl")
	args := []string{"run", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4", "--concurrency", "64", "--log-level", "debug"}
	var logs strings.Builder

	prev := int64(0) // results in the store after the previous kill
	inFlight := 0    // kills that found jobs running
	var at []string  // results/running in the store after each kill
	for k := range kills {
		c := startChild(t, key, args...)
		c.waitFor(t, fmt.Sprintf("%d results before kill %d", prev+step, k+1), func() bool {
			return outputLines(out) >= prev+step
		})
		c.kill()
		logs.WriteString(c.stderr())
		st, running := runStatus(t, out+".clade.db")
		var done int64
		for _, c := range st.Results {
			done += c
		}
		if done <= prev || done >= n {
			t.Fatalf("after kill %d the store has %d results, want more than %d and fewer than %d (a kill mid-run)", k+1, done, prev, n)
		}
		if running > 0 {
			inFlight++
		}
		at = append(at, fmt.Sprintf("%d/%d", done, running))
		prev = done
	}
	if inFlight < kills/2 {
		t.Fatalf("%d of %d kills found jobs running (results/running at each kill: %v); want at least %d (kills with requests in flight)",
			inFlight, kills, at, kills/2)
	}
	// Resume to the end.
	c := startChild(t, key, args...)
	if code := c.exitCode(t); code != cli.ExitOK {
		t.Fatalf("final run: exit %d, want 0\n%s", code, tail(c.stderr(), 3000))
	}
	logs.WriteString(c.stderr())
	seen := wantEachOnce(t, out, n)
	t.Logf("%d SIGKILLs (results/running at each: %v), then a resume: %d results", kills, at, len(seen))

	// The key is in no log line, store file or output file.
	if strings.Contains(logs.String(), key) {
		t.Errorf("the API key appears in the logs")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(key)) {
			t.Errorf("the API key appears in %s", filepath.Base(f))
		}
	}
}

// outputLines counts the lines of the results file at path (0 if there is none yet).
func outputLines(path string) int64 {
	b, _ := os.ReadFile(path)
	return int64(bytes.Count(b, []byte("\n")))
}

// runStatus reads the status of the one run in the store at db, and how many of
// its jobs are running (the child must be dead or done).
func runStatus(t *testing.T, db string) (*jobs.Status, int64) {
	t.Helper()
	ctx := context.Background()
	st, err := jobs.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, err := st.Runs(ctx)
	if err != nil || len(runs) != 1 {
		t.Fatalf("store has %d runs (%v), want 1", len(runs), err)
	}
	s, err := st.Status(ctx, runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	jc, err := st.JobCounts(ctx, runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	return s, jc["running"]
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestRunInterruptDrainsAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("child-process test: skipped with -short")
	}
	t.Parallel()
	const n = 600
	key := "sk-ant-drain-" + strings.Repeat("d", 24)
	// Latency on, so a SIGINT lands while requests are in flight.
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", LatencyScale: 0.3, APIKeys: []string{key}})
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, input, n)
	out := filepath.Join(dir, "out.jsonl")
	args := []string{"run", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4", "--concurrency", "16", "-q"}

	var logs bytes.Buffer
	cmd := cladeCmd(key, args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once some results are in and many are not.
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	for time.Now().Before(deadline) {
		<-tick.C
		if b, err := os.ReadFile(out); err == nil && bytes.Count(b, []byte("\n")) >= 50 {
			break
		}
	}
	tick.Stop()
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	exit := cmd.ProcessState.ExitCode()
	if err == nil || exit != 1 {
		t.Fatalf("after SIGINT: exit %d (%v), want 1 (interrupted)\n%s", exit, err, tail(logs.String(), 2000))
	}
	if !strings.Contains(logs.String(), "run the same command again to resume") {
		t.Errorf("interrupted run does not say how to resume:\n%s", tail(logs.String(), 2000))
	}
	partial := countResults(t, out)
	if len(partial) >= n {
		t.Errorf("the interrupt landed after all %d were done: nothing was drained", n)
	}
	// Drained, not cut: every line in the file is whole and unique (countResults
	// fails on a torn line or a duplicate).
	cmd = cladeCmd(key, args...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Run(); err != nil {
		t.Fatalf("resume: %v\n%s", err, tail(logs.String(), 2000))
	}
	if got := countResults(t, out); len(got) != n {
		t.Errorf("after resume %d results, want %d", len(got), n)
	}
}
