package jobstest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/jobs"
)

// Environment of the crash test's child process.
const (
	childEnv      = "CLADE_JOBSTEST_CHILD"
	childDSNEnv   = "CLADE_JOBSTEST_DSN"
	childBlockEnv = "CLADE_JOBSTEST_BLOCK"
)

func absPath(p string) (string, error) { return filepath.Abs(p) }

// MaybeChild runs the crash test's child process and exits when the test binary
// was started as one; otherwise it returns at once. Call it first in TestMain of
// any package that runs the suite.
func MaybeChild() {
	var err error
	switch os.Getenv(childEnv) {
	case "":
		return
	case workerChildMode:
		err = workerChild()
	default:
		err = child()
	}
	// A child returns only when it could not do its work: it is killed, never done.
	fmt.Fprintln(os.Stderr, "child:", err)
	os.Exit(1)
}

// child works the store with one worker, so jobs complete in id order, and
// blocks forever inside the completing transaction of the request named by
// CLADE_JOBSTEST_BLOCK, after printing "blocked". The parent then kills it.
// It returns only an error (opening the store, starting the client).
func child() error {
	ctx := context.Background()
	s, err := jobs.Open(ctx, os.Getenv(childDSNEnv))
	if err != nil {
		return err
	}
	block := os.Getenv(childBlockEnv)
	c, err := jobs.NewClient(s, Echo, jobs.ClientConfig{
		MaxWorkers: 1,
		TestOnly:   true,
		BeforeCommit: func(ctx context.Context, job *jobs.Job) error {
			if job.Request.CustomID == block {
				fmt.Println("blocked")
				select {}
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	select {}
}

// testCrash kills a real child process (SIGKILL) while it holds a completing
// transaction open: the jobs before it committed (a result each, job completed),
// the blocked one has no result and its job is left running. After
// ReleaseRunning, a new client finishes the run with exactly one result each.
func testCrash(t *testing.T, b Backend) {
	ctx := testContext(t)
	dsn := b.NewDSN(t)
	const n, blocked = 12, 5
	s, err := jobs.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: WriteInput(t, n)})
	s.Close()

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childDSNEnv+"="+dsn, childBlockEnv+"="+CustomID(blocked))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if sc.Text() == "blocked" {
			ready = true
			break
		}
	}
	if !ready {
		cmd.Wait()
		t.Fatalf("child exited without blocking (does TestMain call jobstest.MaybeChild?); stderr:\n%s", stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()

	s = Open(t, ctx, dsn)
	st := status(t, ctx, s, run.ID)
	if st.Results[jobs.Succeeded] != blocked || st.Jobs["completed"] != blocked || st.Jobs["running"] != 1 {
		t.Fatalf("after kill: results %v, jobs %v; want %d results and %d completed jobs (committed before the crash), 1 running",
			st.Results, st.Jobs, blocked, blocked)
	}
	lines, _ := Export(t, ctx, s, run.ID, true)
	for i, rl := range lines {
		if rl.CustomID != CustomID(i) {
			t.Fatalf("after kill: result %d is %s, want %s", i, rl.CustomID, CustomID(i))
		}
	}
	released, err := s.ReleaseRunning(ctx)
	if err != nil || released != 1 {
		t.Fatalf("ReleaseRunning() = %d, %v; want 1", released, err)
	}
	StartClient(t, ctx, s, Echo, jobs.ClientConfig{MaxWorkers: 4})
	Wait(t, ctx, s, run.ID)
	lines, _ = Export(t, ctx, s, run.ID, true)
	if len(lines) != n {
		t.Fatalf("after resume: %d results, want %d", len(lines), n)
	}
	for i, rl := range lines {
		if rl.CustomID != CustomID(i) {
			t.Fatalf("after resume: result %d is %s, want %s (each once)", i, rl.CustomID, CustomID(i))
		}
	}
}
