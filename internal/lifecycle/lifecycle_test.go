package lifecycle_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

func spec(t *testing.T, n int, extra ...string) lifecycle.Spec {
	t.Helper()
	dir := t.TempDir()
	st, err := jobs.Open(context.Background(), filepath.Join(dir, "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	client, err := upstream.New(upstream.Config{BaseURL: "http://127.0.0.1:1", APIKey: upstream.NewSecret("sk-ant-test")})
	if err != nil {
		t.Fatal(err)
	}
	in := testkit.Input{}.Write(t, filepath.Join(dir, "in.jsonl"), n, extra...)
	s := lifecycle.Spec{Store: st, Client: client, Input: in, Output: filepath.Join(dir, "out.jsonl")}
	if err := s.Check("test"); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheck(t *testing.T) {
	if err := (&lifecycle.Spec{}).Check("runner"); err == nil || !strings.Contains(err.Error(), "runner: Store, Client and Input are required") {
		t.Errorf("Check() of an empty Spec = %v, want it to name the mode and the required fields", err)
	}
	s := spec(t, 1)
	if s.Catalog == nil || s.Logger == nil {
		t.Errorf("Check left Catalog %v, Logger %v: want the defaults", s.Catalog, s.Logger)
	}
	s.Budget = -1
	if err := s.Check("batch"); err == nil || !strings.Contains(err.Error(), "Budget") {
		t.Errorf("Check() with Budget -1 = %v, want an error naming Budget", err)
	}
}

// Strict stops after the import with the run, so the mode can sum it up, and an
// error matching ErrStrict; nothing else was done (no results file).
func TestStartStrict(t *testing.T) {
	s := spec(t, 5, `{"custom_id":"bad"}`)
	s.Strict = true
	r, err := lifecycle.Start(context.Background(), s, lifecycle.Import{})
	if !errors.Is(err, lifecycle.ErrStrict) || r == nil {
		t.Fatalf("Start(Strict) with a bad line = %v, %v; want the run and ErrStrict", r, err)
	}
	if r.Record.Requests != 5 || r.Record.Problems != 1 {
		t.Errorf("run has %d requests, %d problems; want 5, 1", r.Record.Requests, r.Record.Problems)
	}
	if _, err := os.Stat(s.Output); !os.IsNotExist(err) {
		t.Errorf("a Strict stop created the results file (stat: %v)", err)
	}
	tot := r.Totals(context.Background())
	if tot.Requests != 5 || tot.Problems != 1 || tot.Pending != 5 {
		t.Errorf("Totals = %+v; want 5 requests, 1 problem, 5 pending", tot)
	}
}

// A background import returns as soon as the run exists, goes on reading, and
// ImportEnded says when it is over; a second Start of the same input is a no-op.
func TestStartBackground(t *testing.T) {
	const n = 30_000
	s := spec(t, n)
	ctx := context.Background()
	r, err := lifecycle.Start(ctx, s, lifecycle.Import{NoJobs: true, Background: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Importing() {
		t.Fatalf("a background import of %d lines had ended when Start returned: the property was not exercised", n)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ended, err := r.ImportEnded()
		if err != nil {
			t.Fatalf("background import: %v", err)
		}
		if ended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background import did not end within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tot := r.Totals(ctx); tot.Requests != n || tot.Pending != n {
		t.Errorf("after the import: %+v; want %d requests pending", tot, n)
	}
	if err := r.Finish(ctx, nil); err != nil {
		t.Errorf("Finish: %v", err)
	}
	again, err := lifecycle.Start(ctx, s, lifecycle.Import{NoJobs: true, Background: true})
	if err != nil || again.ID != r.ID || again.Importing() {
		t.Errorf("second Start = run %v importing %v, %v; want run %d, no import", again.ID, again.Importing(), err, r.ID)
	}
}

// Finish stops a background import still reading and returns the error it was
// given; the store resumes the import on the next Start.
func TestFinishStopsBackgroundImport(t *testing.T) {
	const n = 30_000
	s := spec(t, n)
	ctx := context.Background()
	r, err := lifecycle.Start(ctx, s, lifecycle.Import{NoJobs: true, Background: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Importing() {
		t.Fatalf("a background import of %d lines had ended when Start returned: the property was not exercised", n)
	}
	given := errors.New("the mode failed")
	if err := r.Finish(ctx, given); err != given {
		t.Errorf("Finish(err) = %v, want the error it was given", err)
	}
	if r.Importing() {
		t.Error("Finish left the import running")
	}
	r2, err := lifecycle.Start(ctx, s, lifecycle.Import{NoJobs: true})
	if err != nil || r2.Record.Requests != n {
		t.Errorf("resumed import: %v requests, %v; want %d", r2.Record.Requests, err, n)
	}
}

// The results file is opened once, by OpenOutput, and closed by Finish; a Spec
// that shares its parent's (Out) neither opens nor closes one.
func TestOutputAndSharing(t *testing.T) {
	s := spec(t, 3)
	ctx := context.Background()
	r, err := lifecycle.Start(ctx, s, lifecycle.Import{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.OpenOutput(ctx); err != nil || r.Out == nil {
		t.Fatalf("OpenOutput = %v, out %v", err, r.Out)
	}
	if _, err := os.Stat(s.Output); err != nil {
		t.Errorf("no results file after OpenOutput: %v", err)
	}
	child := s.Sharing(lifecycle.Spec{Progress: os.Stderr}, r.Out)
	if child.Out != r.Out || child.Output != "" || child.Store != s.Store || child.Input != s.Input || child.Progress != os.Stderr ||
		child.Strict || child.Force || child.Ordered || child.Logger != s.Logger {
		t.Errorf("Sharing = %+v: want the parent's run and results file, the child's Progress, no import choices", child)
	}
	cr, err := lifecycle.Start(ctx, child, lifecycle.Import{})
	if err != nil || cr.ID != r.ID || cr.Out != r.Out {
		t.Fatalf("the child's Start = run %d out %p, %v; want run %d out %p", cr.ID, cr.Out, err, r.ID, r.Out)
	}
	if err := cr.OpenOutput(ctx); err != nil || cr.Out != r.Out {
		t.Errorf("the child's OpenOutput = %v and replaced the shared file: %v", err, cr.Out != r.Out)
	}
	if err := cr.Finish(ctx, nil); err != nil {
		t.Errorf("the child's Finish: %v", err)
	}
	if err := r.Finish(ctx, nil); err != nil {
		t.Errorf("Finish: %v", err)
	}
}

// One lease per run: a second holder is refused with jobs.ErrLeased until the
// first releases it.
func TestHoldLease(t *testing.T) {
	s := spec(t, 1)
	ctx := context.Background()
	r, err := lifecycle.Start(ctx, s, lifecycle.Import{})
	if err != nil {
		t.Fatal(err)
	}
	leased, release, err := r.HoldLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.HoldLease(ctx); !errors.Is(err, jobs.ErrLeased) {
		t.Errorf("a second HoldLease = %v, want ErrLeased", err)
	}
	release()
	if leased.Err() == nil || lifecycle.LeaseLost(leased) {
		t.Errorf("after release: ctx err %v, lost %v; want cancelled, not lost", leased.Err(), lifecycle.LeaseLost(leased))
	}
	_, release2, err := r.HoldLease(ctx)
	if err != nil {
		t.Fatalf("HoldLease after release: %v", err)
	}
	release2()
}

func TestTotalsLines(t *testing.T) {
	tot := lifecycle.Totals{Requests: 10, Succeeded: 7, Errored: 1, Pending: 2, Problems: 3, InputTokens: 100, OutputTokens: 50, CostUSD: 0.5}
	got := strings.Join(tot.Describe("at batch prices", "how it went"), "\n")
	want := "10 requests: 7 succeeded, 1 errored, 2 pending; 3 bad lines skipped\nhow it went\ntokens: 100 input, 50 output; cost $0.5000 at batch prices"
	if got != want {
		t.Errorf("Describe =\n%s\nwant\n%s", got, want)
	}
	tot.Expired, tot.Canceled, tot.Stopped = 1, 1, "budget"
	got = strings.Join(tot.Describe(""), "\n")
	if !strings.Contains(got, "1 errored, 1 expired, 1 canceled, 2 pending") || !strings.HasSuffix(got, "\nstopped: budget") {
		t.Errorf("Describe with batch outcomes and a stop =\n%s", got)
	}
	if tot.Failed() != 3 {
		t.Errorf("Failed() = %d, want 3 (errored + expired + canceled)", tot.Failed())
	}
}

// Several processes started at once on one store (several hosts) all join the
// one run: none fails because another is importing, and every line is imported
// once (a line imported twice would be a duplicate custom_id problem).
// Postgres only: several processes share a store through Postgres; a SQLite store
// is one process's (three importers of one file wait on its lock, SQLITE_BUSY).
func TestStartAtOnceJoins(t *testing.T) {
	for _, b := range []jobstest.Backend{jobstest.Postgres()} {
		t.Run(b.Name, func(t *testing.T) {
			const n, hosts = 20_000, 3
			ctx := context.Background()
			dsn := b.NewDSN(t)
			in := testkit.Input{}.Write(t, filepath.Join(t.TempDir(), "in.jsonl"), n)
			client, err := upstream.New(upstream.Config{BaseURL: "http://127.0.0.1:1", APIKey: upstream.NewSecret("sk-ant-test")})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			runs := make([]*lifecycle.Run, hosts)
			errs := make([]error, hosts)
			for i := range hosts {
				st := jobstest.Open(t, ctx, dsn)
				wg.Go(func() {
					runs[i], errs[i] = lifecycle.Start(ctx, lifecycle.Spec{Store: st, Client: client, Input: in, Logger: slog.New(slog.DiscardHandler)}, lifecycle.Import{})
				})
			}
			wg.Wait()
			imported := 0
			for i := range hosts {
				if errs[i] != nil {
					t.Fatalf("host %d: Start = %v; want it to join the run", i, errs[i])
				}
				if runs[i].ID != runs[0].ID {
					t.Errorf("host %d works run %d, host 0 run %d", i, runs[i].ID, runs[0].ID)
				}
				if runs[i].Stats.Requests > 0 {
					imported++
				}
			}
			st := jobstest.Open(t, ctx, dsn)
			s, err := st.Status(ctx, runs[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			if s.Requests != n || s.Problems != 0 || !s.Imported {
				t.Errorf("the run has %d requests, %d problems, imported %v; want %d, 0, true", s.Requests, s.Problems, s.Imported, n)
			}
			t.Logf("%d of %d hosts imported part of the input", imported, hosts)
		})
	}
}

// A host without the input joins the run another host imported from the same
// path; with no such run it is told so.
func TestStartJoinsWithoutInput(t *testing.T) {
	s := spec(t, 50)
	ctx := context.Background()
	first, err := lifecycle.Start(ctx, s, lifecycle.Import{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.Input, s.Input+".elsewhere"); err != nil { // the file is on the first host only
		t.Fatal(err)
	}
	joined, err := lifecycle.Start(ctx, s, lifecycle.Import{})
	if err != nil || joined.ID != first.ID || joined.Record.Requests != 50 {
		t.Fatalf("Start without the input = run %v, %v; want run %d with 50 requests", joined, err, first.ID)
	}
	other := s
	other.Input = filepath.Join(filepath.Dir(s.Input), "never-imported.jsonl")
	_, err = lifecycle.Start(ctx, other, lifecycle.Import{})
	var noInput *lifecycle.NoInputError
	if !errors.As(err, &noInput) || !strings.Contains(err.Error(), "never-imported.jsonl") {
		t.Errorf("Start of a missing input no run has = %v, want a NoInputError naming it", err)
	}
}
