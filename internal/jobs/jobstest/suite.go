package jobstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/intake"
	"github.com/clade-dev/clade/internal/jobs"
)

// testTimeout bounds each test of the suite.
const testTimeout = 2 * time.Minute

// Run runs the conformance suite against b. The test binary's TestMain must call
// MaybeChild first (the crash test re-executes it). A backend whose server is not
// configured skips t once (fails it under CI), as NewDSN does.
func Run(t *testing.T, b Backend) {
	b.require(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"ImportResumeIsIdempotent", testImportResume},
		{"ChangedInputRefused", testChangedInput},
		{"ProblemsRecorded", testProblems},
		{"DuplicatesReported", testDuplicates},
		{"ResultTypes", testResultTypes},
		{"ExportEachCustomIDOnce", testExport},
		{"CompletionRollsBackWithResult", testRollback},
		{"CrashBeforeAndAfterCommit", testCrash},
		{"ShutdownDoesNotCountAttempt", testShutdown},
		{"SnoozeDoesNotCountAttempt", testSnooze},
		{"LastAttemptBecomesErrored", testLastAttempt},
		{"CachePrefixReachesTheJob", testCachePrefix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, b)
		})
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// Open opens a store at dsn, closed when t ends.
func Open(t testing.TB, ctx context.Context, dsn string) *jobs.Store {
	t.Helper()
	s, err := jobs.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("Open(%s) error = %v", dsn, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Import imports opt and fails t on error.
func Import(t testing.TB, ctx context.Context, s *jobs.Store, opt jobs.ImportOptions) (*jobs.Run, jobs.ImportStats) {
	t.Helper()
	run, st, err := s.Import(ctx, opt)
	if err != nil {
		t.Fatalf("Import(%s) error = %v", opt.Path, err)
	}
	return run, st
}

// StartClient starts a client, stopped (cancelling running jobs) when t ends.
func StartClient(t testing.TB, ctx context.Context, s *jobs.Store, work jobs.WorkFunc, cfg jobs.ClientConfig) *jobs.Client {
	t.Helper()
	cfg.TestOnly = true
	if cfg.RetryDelay == nil {
		cfg.RetryDelay = func(int) time.Duration { return time.Millisecond }
	}
	c, err := jobs.NewClient(s, work, cfg)
	if err != nil {
		t.Fatalf("NewClient() error = %v", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.StopAndCancel(ctx)
	})
	return c
}

// Wait waits until every request of the run has a result.
func Wait(t testing.TB, ctx context.Context, s *jobs.Store, runID int64) {
	t.Helper()
	if err := s.Wait(ctx, runID, 10*time.Millisecond); err != nil {
		t.Fatalf("Wait(%d) error = %v", runID, err)
	}
}

// ResultLine is a parsed results.jsonl line.
type ResultLine struct {
	CustomID string `json:"custom_id"`
	Result   struct {
		Type    string          `json:"type"`
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
	} `json:"result"`
}

// Export exports the run and parses every line.
func Export(t testing.TB, ctx context.Context, s *jobs.Store, runID int64, ordered bool) ([]ResultLine, string) {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.Export(ctx, runID, &buf, ordered)
	if err != nil {
		t.Fatalf("Export() error = %v", err)
	}
	var out []ResultLine
	for i, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		if l == "" {
			continue
		}
		var rl ResultLine
		if err := json.Unmarshal([]byte(l), &rl); err != nil {
			t.Fatalf("Export() line %d = %s: not JSON: %v", i+1, l, err)
		}
		out = append(out, rl)
	}
	if int64(len(out)) != n {
		t.Fatalf("Export() = %d, wrote %d lines", n, len(out))
	}
	return out, buf.String()
}

// runStatus is a run's Status with its River jobs by state (Store.JobCounts).
type runStatus struct {
	*jobs.Status
	Jobs map[string]int64
}

func status(t *testing.T, ctx context.Context, s *jobs.Store, runID int64) runStatus {
	t.Helper()
	st, err := s.Status(ctx, runID)
	if err != nil {
		t.Fatalf("Status() error = %v", err)
	}
	jc, err := s.JobCounts(ctx, runID)
	if err != nil {
		t.Fatalf("JobCounts() error = %v", err)
	}
	return runStatus{st, jc}
}

func problems(t *testing.T, ctx context.Context, s *jobs.Store, runID int64) []string {
	t.Helper()
	var out []string
	if err := s.Problems(ctx, runID, func(p intake.Problem) error {
		out = append(out, p.Format("input.jsonl"))
		return nil
	}); err != nil {
		t.Fatalf("Problems() error = %v", err)
	}
	return out
}

func testImportResume(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	lines := make([]string, 250)
	for i := range lines {
		lines[i] = Line(CustomID(i))
	}
	lines[99] = `{"custom_id":"bad","params":{}}` // line 100
	path := WriteFile(t, lines...)

	// Interrupt the import right after the batch holding line 100 commits.
	ictx, cancel := context.WithCancel(ctx)
	_, _, err := s.Import(ictx, jobs.ImportOptions{Path: path, BatchLines: 40, OnProblem: func(intake.Problem) { cancel() }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Import() error = %v, want context.Canceled", err)
	}
	run, err := s.RunByName(ctx, mustAbs(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if run.Imported || run.Requests != 119 || run.Problems != 1 {
		t.Errorf("after interrupt: run = imported %v, %d requests, %d problems; want false, 119, 1", run.Imported, run.Requests, run.Problems)
	}

	run, st := Import(t, ctx, s, jobs.ImportOptions{Path: path, BatchLines: 40})
	if !st.Resumed || st.Requests != 130 || st.Problems != 0 || st.NoOp {
		t.Errorf("resumed Import() stats = %+v, want resumed, 130 requests, 0 problems", st)
	}
	if !run.Imported || run.Requests != 249 || run.Problems != 1 {
		t.Errorf("after resume: run = imported %v, %d requests, %d problems; want true, 249, 1", run.Imported, run.Requests, run.Problems)
	}

	run2, st := Import(t, ctx, s, jobs.ImportOptions{Path: path})
	if !st.NoOp || st.Requests != 0 || run2.ID != run.ID || run2.Requests != 249 {
		t.Errorf("third Import() = run %d with %d requests, stats %+v; want a no-op on run %d", run2.ID, run2.Requests, st, run.ID)
	}
	sts := status(t, ctx, s, run.ID)
	if sts.Jobs["available"] != 249 || sts.Pending != 249 || sts.Problems != 1 {
		t.Errorf("Status() = %+v, want 249 available jobs, 249 pending, 1 problem", sts)
	}
	if got := problems(t, ctx, s, run.ID); len(got) != 1 || !strings.HasPrefix(got[0], "input.jsonl:100: params.model: required") {
		t.Errorf("Problems() = %q, want one at line 100 (params.model)", got)
	}
	pend, err := s.Pending(ctx, run.ID, 0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 3 || pend[0].CustomID != "req-0" || pend[2].Line != 3 || !json.Valid(pend[0].Params) {
		t.Errorf("Pending(0, 3) = %+v, want req-0..req-2", pend)
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := absPath(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func testChangedInput(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	path := WriteInput(t, 50)
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: path, Options: json.RawMessage(`{"tier":"tier-1"}`)})
	if string(run.Options) != `{"tier":"tier-1"}` {
		t.Errorf("run.Options = %s", run.Options)
	}

	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, Line("extra"))
	f.Close()

	_, _, err = s.Import(ctx, jobs.ImportOptions{Path: path})
	if !errors.Is(err, jobs.ErrInputChanged) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Import(changed) error = %v, want ErrInputChanged mentioning --force", err)
	}
	run2, st := Import(t, ctx, s, jobs.ImportOptions{Path: path, Force: true})
	if !st.Reset || run2.ID != run.ID || run2.Requests != 51 || !run2.Imported || run2.Options != nil {
		t.Errorf("Import(Force) = run %+v, stats %+v; want run %d reset with 51 requests", run2, st, run.ID)
	}
	if sts := status(t, ctx, s, run.ID); sts.Jobs["available"] != 51 {
		t.Errorf("after Force: jobs = %v, want 51 available (old jobs deleted)", sts.Jobs)
	}
}

func testProblems(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	path := WriteFile(t,
		Line("a"),
		`{"custom_id":"b","params":{"model":"m","max_tokens":0,"messages":[{}]}}`,
		`not json`,
		Line("c"),
		"",
		`{"custom_id":"has space","params":{}}`,
		`{"custom_id":"d","params":{"model":"m","max_tokens":5,"messages":[{}],"stream":true}}`,
		Line("e"),
	)
	var live []string
	run, st := Import(t, ctx, s, jobs.ImportOptions{Path: path, OnProblem: func(p intake.Problem) { live = append(live, p.Format("input.jsonl")) }})
	want := []string{
		"input.jsonl:2: params.max_tokens: must be a positive integer",
		"input.jsonl:3: invalid JSON: invalid character 'o' in literal null (expecting 'u') (at byte 2)",
		`input.jsonl:6: custom_id: must match ^[a-zA-Z0-9_-]{1,64}$, got "has space"`,
		"input.jsonl:7: params.stream: not supported in input files (results are not streamed); remove it",
	}
	if got := problems(t, ctx, s, run.ID); !slices.Equal(got, want) {
		t.Errorf("Problems() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !slices.Equal(live, want) {
		t.Errorf("OnProblem got %q, want %q", live, want)
	}
	if run.Requests != 3 || run.Problems != 4 || st.Lines != 7 {
		t.Errorf("run = %d requests, %d problems, %d lines read; want 3, 4, 7", run.Requests, run.Problems, st.Lines)
	}
}

func testDuplicates(t *testing.T, b Backend) {
	for _, batch := range []int{2, 100} { // across batches, and within one
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			ctx := testContext(t)
			s := Open(t, ctx, b.NewDSN(t))
			path := WriteFile(t, Line("a"), Line("b"), Line("a"), Line("c"), Line("b"), Line("a"))
			run, st := Import(t, ctx, s, jobs.ImportOptions{Path: path, BatchLines: batch})
			want := []string{
				"input.jsonl:3: custom_id: duplicate of line 1",
				"input.jsonl:5: custom_id: duplicate of line 2",
				"input.jsonl:6: custom_id: duplicate of line 1",
			}
			if got := problems(t, ctx, s, run.ID); !slices.Equal(got, want) {
				t.Errorf("Problems() = %q, want %q", got, want)
			}
			if run.Requests != 3 || st.Duplicates != 3 {
				t.Errorf("Import() = %d requests, %d duplicates; want 3, 3", run.Requests, st.Duplicates)
			}
			pend, err := s.Pending(ctx, run.ID, 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range pend {
				got = append(got, fmt.Sprintf("%s@%d", r.CustomID, r.Line))
			}
			if w := []string{"a@1", "b@2", "c@4"}; !slices.Equal(got, w) {
				t.Errorf("Pending() = %v, want %v (first line wins)", got, w)
			}
		})
	}
}

func testResultTypes(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	path := WriteFile(t, Line("s"), Line("e"), Line("c"), Line("x"))
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: path})
	StartClient(t, ctx, s, func(_ context.Context, job *jobs.Job) (jobs.Result, error) {
		switch job.Request.CustomID {
		case "s":
			return jobs.Result{Type: jobs.Succeeded, Message: json.RawMessage(`{"id":"msg_1","type":"message"}`)}, nil
		case "e":
			return jobs.Result{Type: jobs.Errored, Error: jobs.ErrorEnvelope("invalid_request_error", "max_tokens: too large", "req_1")}, nil
		case "c":
			return jobs.Result{Type: jobs.Canceled}, nil
		default:
			return jobs.Result{Type: jobs.Expired}, nil
		}
	}, jobs.ClientConfig{MaxWorkers: 2})
	Wait(t, ctx, s, run.ID)
	_, text := Export(t, ctx, s, run.ID, true)
	want := `{"custom_id":"s","result":{"type":"succeeded","message":{"id":"msg_1","type":"message"}}}
{"custom_id":"e","result":{"type":"errored","error":{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too large"},"request_id":"req_1"}}}
{"custom_id":"c","result":{"type":"canceled"}}
{"custom_id":"x","result":{"type":"expired"}}
`
	if text != want {
		t.Errorf("Export(ordered) =\n%s\nwant\n%s", text, want)
	}
	st := status(t, ctx, s, run.ID)
	for typ, n := range map[jobs.ResultType]int64{jobs.Succeeded: 1, jobs.Errored: 1, jobs.Canceled: 1, jobs.Expired: 1} {
		if st.Results[typ] != n {
			t.Errorf("Status().Results[%s] = %d, want %d", typ, st.Results[typ], n)
		}
	}
}

func testExport(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	const n = 120
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: WriteInput(t, n), BatchLines: 64})
	StartClient(t, ctx, s, Echo, jobs.ClientConfig{MaxWorkers: 8})
	Wait(t, ctx, s, run.ID)

	ordered, _ := Export(t, ctx, s, run.ID, true)
	if len(ordered) != n {
		t.Fatalf("Export(ordered) wrote %d lines, want %d", len(ordered), n)
	}
	for i, rl := range ordered {
		if rl.CustomID != CustomID(i) || rl.Result.Type != "succeeded" || !json.Valid(rl.Result.Message) {
			t.Fatalf("Export(ordered) line %d = %+v, want %s succeeded", i+1, rl, CustomID(i))
		}
	}
	unordered, _ := Export(t, ctx, s, run.ID, false)
	seen := map[string]int{}
	for _, rl := range unordered {
		seen[rl.CustomID]++
	}
	for i := range n {
		if seen[CustomID(i)] != 1 {
			t.Errorf("Export(unordered) has %s %d times, want once", CustomID(i), seen[CustomID(i)])
		}
	}
	st := status(t, ctx, s, run.ID)
	if st.Results[jobs.Succeeded] != n || st.Pending != 0 || st.Jobs["completed"] != n || st.Usage.OutputTokens != n {
		t.Errorf("Status() = %+v, want %d succeeded, 0 pending, %d completed jobs, %d output tokens", st, n, n, n)
	}
}

func testRollback(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: WriteInput(t, 20)})
	var calls, failed atomic.Int32
	StartClient(t, ctx, s, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
		if job.Request.CustomID == CustomID(7) {
			calls.Add(1)
		}
		return Echo(ctx, job)
	}, jobs.ClientConfig{MaxWorkers: 4, BeforeCommit: func(ctx context.Context, job *jobs.Job) error {
		if job.Request.CustomID == CustomID(7) && job.Attempt == 1 {
			failed.Add(1)
			return errors.New("injected failure before commit")
		}
		return nil
	}})
	Wait(t, ctx, s, run.ID)
	lines, _ := Export(t, ctx, s, run.ID, true)
	if len(lines) != 20 || calls.Load() != 2 || failed.Load() != 1 {
		t.Errorf("after a rolled-back completion: %d results, %d calls of %s; want 20 results, 2 calls", len(lines), calls.Load(), CustomID(7))
	}
}

func testShutdown(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	// MaxAttempts 1: if the cancelled attempt counted, the job would be discarded.
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: WriteFile(t, Line("slow")), MaxAttempts: 1})
	started := make(chan struct{})
	c := StartClient(t, ctx, s, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
		close(started)
		<-ctx.Done()
		return jobs.Result{}, ctx.Err()
	}, jobs.ClientConfig{})
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("job never started")
	}
	if err := c.StopAndCancel(ctx); err != nil {
		t.Fatalf("StopAndCancel() error = %v", err)
	}
	st := status(t, ctx, s, run.ID)
	if st.Jobs["available"] != 1 || st.Pending != 1 {
		t.Fatalf("after StopAndCancel: jobs %v, pending %d; want 1 available, 1 pending", st.Jobs, st.Pending)
	}
	var attempt atomic.Int32
	StartClient(t, ctx, s, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
		attempt.Store(int32(job.Attempt))
		return Echo(ctx, job)
	}, jobs.ClientConfig{})
	Wait(t, ctx, s, run.ID)
	if lines, _ := Export(t, ctx, s, run.ID, true); len(lines) != 1 || lines[0].Result.Type != "succeeded" || attempt.Load() != 1 {
		t.Errorf("after restart: results %+v, attempt %d; want one succeeded on attempt 1", lines, attempt.Load())
	}
}

func testSnooze(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: WriteFile(t, Line("limited")), MaxAttempts: 1})
	var mu sync.Mutex
	var attempts []int
	StartClient(t, ctx, s, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
		mu.Lock()
		attempts = append(attempts, job.Attempt)
		n := len(attempts)
		mu.Unlock()
		if n < 3 {
			return jobs.Result{}, jobs.Snooze(0) // as for a 429
		}
		return Echo(ctx, job)
	}, jobs.ClientConfig{})
	Wait(t, ctx, s, run.ID)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(attempts, []int{1, 1, 1}) {
		t.Errorf("attempts seen = %v, want [1 1 1] (snoozes do not count)", attempts)
	}
}

func testLastAttempt(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: WriteFile(t, Line("ok"), Line("boom")), MaxAttempts: 3})
	var calls atomic.Int32
	StartClient(t, ctx, s, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
		if job.Request.CustomID == "boom" {
			calls.Add(1)
			if job.Attempt == 2 {
				panic("worker bug")
			}
			return jobs.Result{}, errors.New("upstream exploded")
		}
		return Echo(ctx, job)
	}, jobs.ClientConfig{})
	Wait(t, ctx, s, run.ID)
	_, text := Export(t, ctx, s, run.ID, true)
	want := `{"custom_id":"boom","result":{"type":"errored","error":{"type":"error","error":{"type":"api_error","message":"upstream exploded"},"request_id":null}}}`
	if !strings.Contains(text, want+"\n") || calls.Load() != 3 {
		t.Errorf("Export() =\n%s\nafter %d calls; want 3 calls and %s", text, calls.Load(), want)
	}
}

// testCachePrefix: the prompt-cache prefix the import finds in a line with
// cache_control is the one its job carries; a line without has none, in the same
// import batch and alone.
func testCachePrefix(t *testing.T, b Backend) {
	ctx := testContext(t)
	s := Open(t, ctx, b.NewDSN(t))
	doc := strings.Repeat("wxyz", 1500)
	cached := func(id, ttl string) string {
		return `{"custom_id":"` + id + `","params":{"model":"` + Model + `","max_tokens":16,"messages":[{"role":"user","content":[` +
			`{"type":"text","text":"` + doc + `","cache_control":{"type":"ephemeral"` + ttl + `}},{"type":"text","text":"question ` + id + `"}]}]}}`
	}
	lines := []string{cached("c1", ""), Line("plain1"), cached("c2", `,"ttl":"1h"`), Line("plain3")}
	want := map[string]cacheprefix.Prefix{
		"c1": intake.CachePrefix(Model, paramsOf(t, lines[0])),
		"c2": intake.CachePrefix(Model, paramsOf(t, lines[2])),
	}
	if want["c1"].Key == (cacheprefix.Key{}) || want["c1"].Key != want["c2"].Key || want["c2"].TTL != time.Hour {
		t.Fatalf("intake.CachePrefix = %+v, %+v: want one key for both, 1h for c2", want["c1"], want["c2"])
	}
	run, _ := Import(t, ctx, s, jobs.ImportOptions{Path: WriteFile(t, lines...)})
	plainRun, _ := Import(t, ctx, s, jobs.ImportOptions{Name: "plain", Path: WriteFile(t, Line("plain2"))})
	var mu sync.Mutex
	got := map[string]cacheprefix.Prefix{}
	var order []string
	StartClient(t, ctx, s, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
		mu.Lock()
		got[job.Request.CustomID] = job.Request.Cache
		order = append(order, job.Request.CustomID)
		mu.Unlock()
		return Echo(ctx, job)
	}, jobs.ClientConfig{MaxWorkers: 1})
	Wait(t, ctx, s, run.ID)
	Wait(t, ctx, s, plainRun.ID)
	mu.Lock()
	defer mu.Unlock()
	// One prefix's lines are stored, and worked, together, at its first line's place.
	if i := slices.Index(order, "c1"); i < 0 || i+1 >= len(order) || order[i+1] != "c2" || slices.Index(order, "plain1") < i {
		t.Errorf("jobs worked in order %v, want c2 right after c1 and plain1 after them", order)
	}
	for _, id := range []string{"c1", "c2", "plain1", "plain2"} {
		if got[id] != want[id] {
			t.Errorf("job %s Cache = %+v, want %+v", id, got[id], want[id])
		}
	}
}

func paramsOf(t *testing.T, line string) []byte {
	t.Helper()
	var l struct {
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal([]byte(line), &l); err != nil {
		t.Fatal(err)
	}
	return l.Params
}
