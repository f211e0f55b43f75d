package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// TestBatchRunCancel runs a run's cancel mark through its life on every backend: a
// canceled run has no batch-pending requests (BatchUnsent still lists them), the
// pending counts split by open batch, canceling twice keeps the first time, and
// reopening deletes the canceled results and clears the mark.
func TestBatchRunCancel(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
			dsn := b.NewDSN(t)
			s, err := jobs.Open(ctx, dsn, jobs.WithClock(func() time.Time { return now }))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			run, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteInput(t, 10)})
			if err := s.PrepareBatches(ctx); err != nil {
				t.Fatal(err)
			}
			count := func(f func(context.Context, int64, int, int) ([]jobs.Request, error)) int {
				t.Helper()
				reqs, err := f(ctx, run.ID, 0, 100)
				if err != nil {
					t.Fatal(err)
				}
				return len(reqs)
			}
			pending := func(ctx context.Context, runID int64, _, limit int) ([]jobs.Request, error) {
				refs, err := s.BatchPending(ctx, runID, jobs.BatchCursor{}, limit)
				if err != nil {
					return nil, err
				}
				return s.BatchRequests(ctx, refs)
			}
			reqs, err := s.BatchPending(ctx, run.ID, jobs.BatchCursor{}, 4)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]int64, len(reqs))
			for i, r := range reqs {
				ids[i] = r.ID
			}
			rec, err := s.RecordBatchIntent(ctx, run.ID, ids, 100, "fp")
			if err != nil {
				t.Fatal(err)
			}
			if err := s.RecordBatchCreated(ctx, rec.Row, "msgbatch_c", now); err != nil {
				t.Fatal(err)
			}
			if in, none, err := s.BatchPendingCounts(ctx, run.ID); err != nil || in != 4 || none != 6 {
				t.Errorf("BatchPendingCounts() = %d, %d, %v; want 4 in batches, 6 in none", in, none, err)
			}
			if at, err := s.BatchRunCanceled(ctx, run.ID); err != nil || !at.IsZero() {
				t.Errorf("BatchRunCanceled() before a cancel = %v, %v; want zero", at, err)
			}

			if err := s.CancelBatchRun(ctx, run.ID); err != nil {
				t.Fatalf("CancelBatchRun() error = %v", err)
			}
			first := now
			now = now.Add(time.Hour)
			if err := s.CancelBatchRun(ctx, run.ID); err != nil {
				t.Fatalf("CancelBatchRun() twice: error = %v", err)
			}
			if at, err := s.BatchRunCanceled(ctx, run.ID); err != nil || !at.Equal(first) {
				t.Errorf("BatchRunCanceled() = %v, %v; want the first cancel, %v", at, err, first)
			}
			if got := count(pending); got != 0 {
				t.Errorf("BatchPending() of a canceled run = %d requests, want 0", got)
			}
			if got := count(s.BatchUnsent); got != 6 {
				t.Errorf("BatchUnsent() of a canceled run = %d requests, want 6", got)
			}

			// Three requests end canceled, one succeeded.
			items, err := s.BatchItems(ctx, rec.Row)
			if err != nil {
				t.Fatal(err)
			}
			var res []jobs.BatchResult
			for i, it := range items {
				typ := jobs.Canceled
				if i == 0 {
					typ = jobs.Succeeded
				}
				res = append(res, jobs.BatchResult{Item: it, Type: typ, Line: []byte(`{"custom_id":"` + it.CustomID + `","result":{"type":"` + string(typ) + `"}}`)})
			}
			if _, err := s.WriteBatchResults(ctx, run.ID, res); err != nil {
				t.Fatal(err)
			}
			ended := now.Add(time.Minute)
			if err := s.FinishBatch(ctx, rec.Row, ended); err != nil {
				t.Fatal(err)
			}
			if bs, err := s.Batches(ctx, run.ID); err != nil || len(bs) != 1 || !bs[0].EndedAt.Equal(ended) {
				t.Errorf("Batches() = %+v, %v; want one batch ended at %v", bs, err, ended)
			}
			if in, none, err := s.BatchPendingCounts(ctx, run.ID); err != nil || in != 0 || none != 6 {
				t.Errorf("BatchPendingCounts() after the batch = %d, %d, %v; want 0, 6", in, none, err)
			}

			n, err := s.ReopenCanceledRun(ctx, run.ID)
			if err != nil || n != 3 {
				t.Fatalf("ReopenCanceledRun() = %d, %v; want 3 canceled results deleted", n, err)
			}
			if at, err := s.BatchRunCanceled(ctx, run.ID); err != nil || !at.IsZero() {
				t.Errorf("BatchRunCanceled() after reopening = %v, %v; want zero", at, err)
			}
			if got := count(pending); got != 9 {
				t.Errorf("BatchPending() after reopening = %d requests, want 9 (all but the succeeded one)", got)
			}
			if n, err := s.ReopenCanceledRun(ctx, run.ID); err != nil || n != 0 {
				t.Errorf("ReopenCanceledRun() of a run not canceled = %d, %v; want 0, nil", n, err)
			}
		})
	}
}
