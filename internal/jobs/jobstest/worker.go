package jobstest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
)

// The worker child's mode (childEnv) and settings.
const (
	workerChildMode = "worker"
	childHoldEnv    = "CLADE_JOBSTEST_HOLD"
	childBeatEnv    = "CLADE_JOBSTEST_HEARTBEAT" // interval,deadAfter
)

// workerChild registers a Worker, works the store with a Client of that worker
// and CLADE_JOBSTEST_HOLD workers whose jobs never end, prints "worker ID" and
// then "holding CUSTOM_ID" for each job it holds, and waits to be killed.
func workerChild() error {
	ctx := context.Background()
	s, err := jobs.Open(ctx, os.Getenv(childDSNEnv))
	if err != nil {
		return err
	}
	hold, err := strconv.Atoi(os.Getenv(childHoldEnv))
	if err != nil {
		return err
	}
	interval, deadAfter, ok := strings.Cut(os.Getenv(childBeatEnv), ",")
	if !ok {
		return fmt.Errorf("%s = %q, want interval,deadAfter", childBeatEnv, os.Getenv(childBeatEnv))
	}
	iv, err := time.ParseDuration(interval)
	if err != nil {
		return err
	}
	da, err := time.ParseDuration(deadAfter)
	if err != nil {
		return err
	}
	w, err := s.Register(ctx, jobs.WithHeartbeat(iv, da))
	if err != nil {
		return err
	}
	fmt.Println("worker", w.ID())
	held := make(chan string)
	go func() {
		for id := range held {
			fmt.Println("holding", id)
		}
	}()
	c, err := jobs.NewClient(s, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
		held <- job.Request.CustomID
		<-ctx.Done()
		return jobs.Result{}, ctx.Err()
	}, jobs.ClientConfig{MaxWorkers: hold, TestOnly: true, Worker: w})
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	select {}
}

// WorkerChild is a child process (the test binary re-executed) that registered
// a Worker on a store and holds some of its jobs running, as a host would that
// is then killed.
type WorkerChild struct {
	cmd *exec.Cmd
	// WorkerID is the child's Worker ID, the attempted_by of the jobs it holds.
	WorkerID string
	// Holding are the custom_ids of the requests whose jobs it holds.
	Holding []string
}

// StartWorkerChild starts a worker child on the store at dsn, with the heartbeat
// interval and dead-after window given, and returns once it holds hold jobs
// running (it fails t if it exits first). TestMain must call MaybeChild. The
// child is killed when t ends, if not before.
func StartWorkerChild(t testing.TB, ctx context.Context, dsn string, hold int, interval, deadAfter time.Duration) *WorkerChild {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+workerChildMode, childDSNEnv+"="+dsn,
		childHoldEnv+"="+strconv.Itoa(hold), childBeatEnv+"="+interval.String()+","+deadAfter.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &WorkerChild{cmd: cmd}
	t.Cleanup(c.kill)
	sc := bufio.NewScanner(out)
	for len(c.Holding) < hold && sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "worker "); ok {
			c.WorkerID = id
		}
		if id, ok := strings.CutPrefix(sc.Text(), "holding "); ok {
			c.Holding = append(c.Holding, id)
		}
	}
	if len(c.Holding) < hold || c.WorkerID == "" {
		c.kill()
		t.Fatalf("worker child exited holding %d of %d jobs (does TestMain call jobstest.MaybeChild?); stderr:\n%s",
			len(c.Holding), hold, stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }() // never block the child on its stdout
	return c
}

// Kill kills the child with SIGKILL and waits for it to exit; it fails t if the
// child had already exited (nothing would have been killed).
func (c *WorkerChild) Kill(t testing.TB) {
	t.Helper()
	if c.cmd.ProcessState != nil {
		t.Fatal("worker child already exited: nothing to kill")
	}
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill worker child: %v", err)
	}
	if err := c.cmd.Wait(); err == nil {
		t.Fatal("worker child exited cleanly: it was not killed")
	}
}

func (c *WorkerChild) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}
