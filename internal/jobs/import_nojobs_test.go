package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// TestImportNoJobs imports with NoJobs on every backend: the requests, problems and
// duplicates are recorded as with jobs, the run is resumable, and no River job
// exists for batch mode to delete.
func TestImportNoJobs(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			path := jobstest.WriteFile(t,
				jobstest.Line("a"), jobstest.Line("b"), `{"custom_id":"bad id","params":{}}`, jobstest.Line("a"), jobstest.Line("c"))
			// BatchLines 2 makes three transactions: the run's counters add up across them.
			opt := jobs.ImportOptions{Path: path, NoJobs: true, BatchLines: 2}
			run, st := jobstest.Import(t, ctx, s, opt)
			if st.Requests != 3 || st.Problems != 2 || st.Duplicates != 1 {
				t.Errorf("Import(NoJobs) stats = %d requests, %d problems, %d duplicates; want 3, 2, 1", st.Requests, st.Problems, st.Duplicates)
			}
			if !run.Imported || run.Requests != 3 || run.Problems != 2 {
				t.Errorf("Import(NoJobs) run = imported %v, %d requests, %d problems; want true, 3, 2", run.Imported, run.Requests, run.Problems)
			}
			status, err := s.Status(ctx, run.ID)
			if err != nil {
				t.Fatalf("Status() error = %v", err)
			}
			jc, err := s.JobCounts(ctx, run.ID)
			if err != nil {
				t.Fatalf("JobCounts() error = %v", err)
			}
			if status.Pending != 3 || len(jc) != 0 {
				t.Errorf("Status() = %d pending, jobs %v; want 3 pending and no jobs", status.Pending, jc)
			}
			if n, err := s.DropRequestJobs(ctx, run.ID); err != nil || n != 0 {
				t.Errorf("DropRequestJobs() = %d, %v; want 0, nil", n, err)
			}
			if err := s.PrepareBatches(ctx); err != nil {
				t.Fatalf("PrepareBatches() error = %v", err)
			}
			refs, err := s.BatchPending(ctx, run.ID, jobs.BatchCursor{}, 10)
			if err != nil {
				t.Fatalf("BatchPending() error = %v", err)
			}
			reqs, err := s.BatchRequests(ctx, refs)
			if err != nil {
				t.Fatalf("BatchPending() error = %v", err)
			}
			var ids []string
			for _, r := range reqs {
				ids = append(ids, r.CustomID)
			}
			if len(ids) != 3 || ids[0] != "a" || ids[1] != "b" || ids[2] != "c" {
				t.Errorf("BatchPending() = %v, want [a b c]", ids)
			}
			if _, st := jobstest.Import(t, ctx, s, opt); !st.NoOp {
				t.Errorf("Import(NoJobs) again: NoOp = false, want true")
			}

			// The same input imported with jobs (the default) into another store has
			// one job per request: what NoJobs saves.
			s2 := jobstest.Open(t, ctx, b.NewDSN(t))
			run2, _ := jobstest.Import(t, ctx, s2, jobs.ImportOptions{Path: path})
			if n, err := s2.DropRequestJobs(ctx, run2.ID); err != nil || n != 3 {
				t.Errorf("DropRequestJobs() after an import with jobs = %d, %v; want 3, nil", n, err)
			}
		})
	}
}
