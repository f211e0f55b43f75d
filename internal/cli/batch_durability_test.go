package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

// child is a clade process whose stderr is collected as it runs.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
	mu   sync.Mutex
	log  bytes.Buffer
}

func startChild(t *testing.T, key string, args ...string) *child {
	t.Helper()
	c := &child{cmd: cladeCmd(key, args...), done: make(chan struct{})}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout = nil
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			c.mu.Lock()
			c.log.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
		}
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *child) stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

// waitFor polls cond every few milliseconds until it holds; it fails the test at
// the deadline or if the child exits first.
func (c *child) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-c.done:
			if cond() {
				return
			}
			t.Fatalf("clade exited (%v) before %s:\n%s", c.err, what, tail(c.stderr(), 3000))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, tail(c.stderr(), 3000))
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// exitCode waits for the child and returns its exit code.
func (c *child) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("clade did not exit:\n%s", tail(c.stderr(), 3000))
	}
	var ee *exec.ExitError
	if c.err != nil && !errors.As(c.err, &ee) {
		t.Fatalf("clade: %v", c.err)
	}
	return c.cmd.ProcessState.ExitCode()
}

// apiBatches lists every batch the emulator holds.
func apiBatches(t *testing.T, url, key string) []upstream.Batch {
	t.Helper()
	client, err := upstream.New(upstream.Config{BaseURL: url, APIKey: upstream.NewSecret(key)})
	if err != nil {
		t.Fatal(err)
	}
	page, err := client.ListBatches(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return page.Data
}

func apiRequests(bs []upstream.Batch) int64 {
	var n int64
	for _, b := range bs {
		c := b.RequestCounts
		n += c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
	}
	return n
}

func endedIDs(bs []upstream.Batch) map[string]bool {
	out := map[string]bool{}
	for _, b := range bs {
		if b.ProcessingStatus == upstream.BatchEnded {
			out[b.ID] = true
		}
	}
	return out
}

// storeBatches reads the store's batch rows and its run's status (the child must
// be dead or done).
func storeBatches(t *testing.T, db string) ([]jobs.BatchRecord, *jobs.Status) {
	t.Helper()
	ctx := context.Background()
	st, err := jobs.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PrepareBatches(ctx); err != nil {
		t.Fatal(err)
	}
	bs, err := st.Batches(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	runs, err := st.Runs(ctx)
	if err != nil || len(runs) != 1 {
		t.Fatalf("store has %d runs (%v), want 1", len(runs), err)
	}
	s, err := st.Status(ctx, runs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	return bs, s
}

// TestBatchSurvivesSIGKILLWhilePolling kills `clade batch` three times while all its
// batches are created and in progress, moving the emulator's clock while it is dead
// so that batches end with no clade running, then resumes it. Each resumed process
// reads the batches that ended while it was dead; no batch is created twice (the
// emulator holds n requests in all), no request is resubmitted, and every custom_id
// ends with exactly one result line. Between kills `clade status` lists the
// batches in flight and what is pending.
func TestBatchSurvivesSIGKILLWhilePolling(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	t.Parallel()
	const n, per, batches = 300, 50, 6
	key := "sk-ant-poll-" + strings.Repeat("p", 24)
	// Real-time batch clock, one request a second: a batch ends only when the test
	// moves the clock (100 s: two batches), which it does while clade is dead.
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1, BatchProcessingRate: 1})
	dir := t.TempDir()
	input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeWorkload(t, input, n)
	args := []string{"batch", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4", "--max-requests", fmt.Sprint(per), "--poll", "10ms"}
	rng := rand.New(rand.NewPCG(5, 6))

	for k := 0; k < 3; k++ {
		// The batches that ended while no clade ran: the store has them in flight.
		var endedMeanwhile []string
		if k > 0 {
			ended := endedIDs(apiBatches(t, em.URL, key))
			bs, _ := storeBatches(t, out+".clade.db")
			for _, b := range bs {
				if b.State == jobs.BatchCreated && ended[b.BatchID] {
					endedMeanwhile = append(endedMeanwhile, b.BatchID)
				}
			}
			if len(endedMeanwhile) != 2 {
				t.Fatalf("before run %d, %d batches ended while clade was dead, want 2", k+1, len(endedMeanwhile))
			}
		}
		c := startChild(t, key, args...)
		if k == 0 {
			c.waitFor(t, "every batch created", func() bool { return strings.Count(c.stderr(), " created: ") == batches })
		} else {
			c.waitFor(t, "the batches that ended meanwhile read", func() bool {
				for _, id := range endedMeanwhile {
					if !strings.Contains(c.stderr(), fmt.Sprintf("%s ended: %d results, 0 to resubmit", id, per)) {
						return false
					}
				}
				return true
			})
		}
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond) // a random point among the polls
		c.kill()
		if strings.Contains(c.stderr(), " created: ") && k > 0 {
			t.Errorf("run %d created a batch; every batch was created by the first", k+1)
		}

		bs, s := storeBatches(t, out+".clade.db")
		open := 0
		for _, b := range bs {
			if b.State == jobs.BatchCreated {
				open++
			}
		}
		if len(bs) != batches || open != batches-2*k {
			t.Fatalf("after kill %d the store holds %d batches, %d in flight; want %d, %d", k+1, len(bs), open, batches, batches-2*k)
		}
		if k == 1 {
			var stdout, stderr bytes.Buffer
			if code := cli.Run(context.Background(), []string{"status", out}, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
				t.Fatalf("clade status = exit %d\n%s", code, stderr.String())
			}
			st := stdout.String()
			for _, want := range []string{
				"batches: 2 done, 4 in flight, 0 unconfirmed; pending 200: 200 in batches in flight, 0 in none",
				"succeeded 100,",
			} {
				if !strings.Contains(st, want) {
					t.Errorf("clade status lacks %q:\n%s", want, st)
				}
			}
			for _, b := range bs {
				state := "in flight"
				if b.State == jobs.BatchDone {
					state = "done"
				}
				if !strings.Contains(st, fmt.Sprintf("%-32s %-11s %7d requests  age ", b.BatchID, state, per)) {
					t.Errorf("clade status has no line for batch %s (%s, %d requests):\n%s", b.BatchID, state, per, st)
				}
				// An ended batch shows the API's request counts; one in flight has none yet.
				counts := fmt.Sprintf(": %d succeeded, 0 errored, 0 expired, 0 canceled", per)
				for _, l := range strings.Split(st, "\n") {
					if strings.Contains(l, b.BatchID) && strings.HasSuffix(l, counts) != (b.State == jobs.BatchDone) {
						t.Errorf("clade status line of batch %s (%s): %q; want the counts %q only once it is done", b.BatchID, b.State, l, counts)
					}
				}
			}
		}
		if s.Pending != int64(n-2*per*k) {
			t.Errorf("after kill %d: %d pending, want %d", k+1, s.Pending, n-2*per*k)
		}
		// Two more batches end while clade is dead.
		em.Server.Clock().Advance(100 * time.Second)
		if got := len(endedIDs(apiBatches(t, em.URL, key))); got < 2*(k+1) {
			t.Fatalf("after moving the clock %d batches ended, want %d", got, 2*(k+1))
		}
	}

	c := startChild(t, key, args...)
	if code := c.exitCode(t); code != cli.ExitOK {
		t.Fatalf("final run: exit %d, want 0\n%s", code, tail(c.stderr(), 3000))
	}
	if !strings.Contains(c.stderr(), "0 batches created, 0 requests resubmitted") {
		t.Errorf("final run summary: want no batch created and none resubmitted:\n%s", tail(c.stderr(), 1000))
	}
	wantEachOnce(t, out, n)
	bs := apiBatches(t, em.URL, key)
	if len(bs) != batches || apiRequests(bs) != n {
		t.Errorf("the emulator holds %d batches of %d requests in all, want %d of %d", len(bs), apiRequests(bs), batches, n)
	}
}

// TestBatchSurvivesSIGKILLMidDownload kills `clade batch` three times while it reads
// the results of an ended batch into the store: each kill lands after at least one
// more commit of 500 results (the output file partly appended, the batch not done),
// then resumes it. The results are read again from the start; every custom_id ends
// exactly once in the output file and the store has one result per request. The
// emulator's results_rate fault paces the download (3,000 lines a second) so the
// kills land inside it.
func TestBatchSurvivesSIGKILLMidDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	t.Parallel()
	const n = 3000
	key := "sk-ant-dl-" + strings.Repeat("d", 24)
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1000,
		Faults: emulator.Faults{ResultsRate: 3000}})
	dir := t.TempDir()
	input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeWorkload(t, input, n)
	args := []string{"batch", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4", "--poll", "10ms"}
	lines := func() int {
		b, _ := os.ReadFile(out)
		return bytes.Count(b, []byte("\n"))
	}
	rng := rand.New(rand.NewPCG(7, 8))
	prev := int64(0)
	for k := 0; k < 3; k++ {
		c := startChild(t, key, args...)
		c.waitFor(t, "the download started", func() bool { return strings.Contains(c.stderr(), fmt.Sprintf("ended: reading %d results", n)) })
		// The output starts with the prev results of the store: wait for one more
		// commit of 500, then a random point before the next.
		c.waitFor(t, "a commit of results", func() bool { return lines() >= int(prev)+500 })
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		c.kill()

		bs, s := storeBatches(t, out+".clade.db")
		got := s.Results[jobs.Succeeded]
		if len(bs) != 1 || bs[0].State != jobs.BatchCreated {
			t.Fatalf("after kill %d the store holds %+v, want one batch not done", k+1, bs)
		}
		if got <= prev || got >= n {
			t.Fatalf("after kill %d the store has %d results, want more than %d and fewer than %d (a kill inside the download)", k+1, got, prev, n)
		}
		if l := lines(); l == 0 || l >= n {
			t.Fatalf("after kill %d the output has %d lines, want some but not all", k+1, l)
		}
		prev = got
	}
	c := startChild(t, key, args...)
	if code := c.exitCode(t); code != cli.ExitOK {
		t.Fatalf("final run: exit %d, want 0\n%s", code, tail(c.stderr(), 3000))
	}
	wantEachOnce(t, out, n)
	bs, s := storeBatches(t, out+".clade.db")
	if s.Results[jobs.Succeeded] != n || s.Pending != 0 || len(bs) != 1 || bs[0].State != jobs.BatchDone {
		t.Errorf("store after resume: %d succeeded, %d pending, batches %+v; want %d, 0, one done", s.Results[jobs.Succeeded], s.Pending, bs, n)
	}
	if api := apiBatches(t, em.URL, key); len(api) != 1 || apiRequests(api) != n {
		t.Errorf("the emulator holds %d batches of %d requests, want 1 of %d", len(api), apiRequests(api), n)
	}
}

// TestBatchCancelEndToEnd runs `clade batch cancel` while `clade batch` has four
// batches in flight: the API shows them canceling or ended, the running clade batch
// reads their partial results, writes one line per custom_id (succeeded or
// canceled), creates no batch and exits 3. Run again, it sends nothing; with
// --resume-canceled it sends exactly the canceled requests, which then succeed.
func TestBatchCancelEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("child-process test: skipped with -short")
	}
	t.Parallel()
	const n, per = 200, 50
	key := "sk-ant-cancel-" + strings.Repeat("c", 24)
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1, BatchProcessingRate: 1})
	dir := t.TempDir()
	input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeWorkload(t, input, n)
	args := []string{"batch", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4", "--max-requests", fmt.Sprint(per), "--poll", "10ms"}

	c := startChild(t, key, args...)
	c.waitFor(t, "every batch created", func() bool { return strings.Count(c.stderr(), " created: ") == n/per })
	em.Server.Clock().Advance(30 * time.Second) // 30 requests of the first batch are processed

	cancel := cladeCmd(key, "batch", "cancel", out, "--base-url", em.URL)
	var cout, cerr bytes.Buffer
	cancel.Stdout, cancel.Stderr = &cout, &cerr
	if err := cancel.Run(); err != nil {
		t.Fatalf("clade batch cancel: %v\n%s%s", err, cout.String(), cerr.String())
	}
	if got := strings.Count(cout.String(), " canceling\n"); got != n/per {
		t.Errorf("clade batch cancel printed %d batches canceling, want %d:\n%s", got, n/per, cout.String())
	}
	if !strings.Contains(cerr.String(), "1 runs marked canceled, 4 batches asked to cancel") {
		t.Errorf("clade batch cancel stderr lacks its count:\n%s", cerr.String())
	}
	for _, b := range apiBatches(t, em.URL, key) {
		if (b.ProcessingStatus != "canceling" && b.ProcessingStatus != upstream.BatchEnded) || b.CancelInitiatedAt.IsZero() {
			t.Errorf("batch %s after cancel: %s, cancel_initiated_at %v; want canceling or ended, set", b.ID, b.ProcessingStatus, b.CancelInitiatedAt)
		}
	}

	if code := c.exitCode(t); code != cli.ExitFailedRequests {
		t.Fatalf("clade batch after the cancel: exit %d, want %d\n%s", code, cli.ExitFailedRequests, tail(c.stderr(), 3000))
	}
	types := testkit.ResultTypes(t, out)
	counts := map[string]int{}
	for _, typ := range types {
		counts[typ]++
	}
	if len(types) != n || counts["succeeded"] < 30 || counts["canceled"] < n-per || counts["succeeded"]+counts["canceled"] != n {
		t.Errorf("results after the cancel: %d custom_ids, by type %v; want %d, ≥ 30 succeeded, ≥ %d canceled, nothing else", len(types), counts, n, n-per)
	}
	if !strings.Contains(c.stderr(), "--resume-canceled") {
		t.Errorf("clade batch does not say how to send the canceled requests again:\n%s", tail(c.stderr(), 1000))
	}
	if bs := apiBatches(t, em.URL, key); len(bs) != n/per || apiRequests(bs) != n {
		t.Errorf("the emulator holds %d batches of %d requests, want %d of %d (nothing resubmitted)", len(bs), apiRequests(bs), n/per, n)
	}

	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"status", out}, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("clade status = exit %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"batches: 4 done, 0 in flight, 0 unconfirmed; pending 0:", "(clade batch cancel)", fmt.Sprintf("canceled %d,", counts["canceled"])} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("clade status lacks %q:\n%s", want, stdout.String())
		}
	}

	// Again without the flag: the run stays canceled, nothing is sent.
	again := startChild(t, key, args...)
	if code := again.exitCode(t); code != cli.ExitFailedRequests || !strings.Contains(again.stderr(), "was canceled") {
		t.Errorf("clade batch on a canceled run: exit %d, want %d and a note that it was canceled\n%s", code, cli.ExitFailedRequests, tail(again.stderr(), 2000))
	}
	if bs := apiBatches(t, em.URL, key); len(bs) != n/per {
		t.Errorf("clade batch on a canceled run created batches: the emulator holds %d, want %d", len(bs), n/per)
	}
	if got := testkit.ResultTypes(t, out); len(got) != n {
		t.Errorf("results after a second run: %d custom_ids, want %d", len(got), n)
	}

	// --resume-canceled: the canceled requests go into new batches and succeed. The
	// clock runs ahead so that they are processed at once.
	stop, ticked := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ticked)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				em.Server.Clock().Advance(time.Minute)
			}
		}
	}()
	resumed := startChild(t, key, append(args, "--resume-canceled")...)
	code := resumed.exitCode(t)
	close(stop)
	<-ticked
	if code != cli.ExitOK {
		t.Fatalf("clade batch --resume-canceled: exit %d, want 0\n%s", code, tail(resumed.stderr(), 3000))
	}
	wantEachOnce(t, out, n)
	if bs := apiBatches(t, em.URL, key); apiRequests(bs) != int64(n+counts["canceled"]) {
		t.Errorf("the emulator holds %d requests in all, want %d (the canceled ones sent once more)", apiRequests(bs), n+counts["canceled"])
	}
}
