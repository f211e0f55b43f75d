package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// TestBatchStore runs the batch tables through one batch's life on every backend:
// intent, created, results (written once), done, and the requests left pending.
func TestBatchStore(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			run, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteInput(t, 10)})
			for range 2 { // idempotent
				if err := s.PrepareBatches(ctx); err != nil {
					t.Fatalf("PrepareBatches() error = %v", err)
				}
			}
			if n, err := s.DropRequestJobs(ctx, run.ID); err != nil || n != 10 {
				t.Errorf("DropRequestJobs() = %d, %v; want 10, nil", n, err)
			}
			pending := func() int {
				t.Helper()
				reqs, err := s.BatchPending(ctx, run.ID, jobs.BatchCursor{}, 100)
				if err != nil {
					t.Fatalf("BatchPending() error = %v", err)
				}
				return len(reqs)
			}
			reqs, err := s.BatchPending(ctx, run.ID, jobs.BatchCursor{}, 6)
			if err != nil || len(reqs) != 6 {
				t.Fatalf("BatchPending(limit 6) = %d requests, %v; want 6", len(reqs), err)
			}
			ids := make([]int64, len(reqs))
			for i, r := range reqs {
				ids[i] = r.ID
			}
			rec, err := s.RecordBatchIntent(ctx, run.ID, ids, 1234, "fp")
			if err != nil {
				t.Fatalf("RecordBatchIntent() error = %v", err)
			}
			if got := pending(); got != 4 {
				t.Errorf("pending with an intent of 6 = %d, want 4", got)
			}
			if n, err := s.OpenBatchRequests(ctx, run.ID); err != nil || n != 6 {
				t.Errorf("OpenBatchRequests() = %d, %v; want 6", n, err)
			}
			created := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
			if err := s.RecordBatchCreated(ctx, rec.Row, "msgbatch_1", created); err != nil {
				t.Fatalf("RecordBatchCreated() error = %v", err)
			}
			if err := s.RecordBatchCreated(ctx, rec.Row, "msgbatch_2", created); err == nil {
				t.Errorf("RecordBatchCreated() twice: error = nil, want one")
			}
			if known, err := s.BatchIDKnown(ctx, "msgbatch_1"); err != nil || !known {
				t.Errorf("BatchIDKnown(msgbatch_1) = %v, %v; want true", known, err)
			}
			bs, err := s.Batches(ctx, run.ID, jobs.BatchCreated)
			if err != nil || len(bs) != 1 || bs[0].BatchID != "msgbatch_1" || !bs[0].CreatedAt.Equal(created) || bs[0].Requests != 6 || bs[0].Fingerprint != "fp" {
				t.Fatalf("Batches(created) = %+v, %v; want msgbatch_1 of 6", bs, err)
			}
			if all, err := s.Batches(ctx, 0); err != nil || len(all) != 1 {
				t.Errorf("Batches(every run) = %d, %v; want 1", len(all), err)
			}
			items, err := s.BatchItems(ctx, rec.Row)
			if err != nil || len(items) != 6 {
				t.Fatalf("BatchItems() = %d, %v; want 6", len(items), err)
			}
			// Two of six get a final result; writing them again changes nothing.
			var res []jobs.BatchResult
			for _, it := range items[:2] {
				if it.Attempt != 1 {
					t.Errorf("item %s attempt = %d, want 1", it.CustomID, it.Attempt)
				}
				res = append(res, jobs.BatchResult{Item: it, Type: jobs.Succeeded, CostUSD: 0.5,
					Line: []byte(`{"custom_id":"` + it.CustomID + `","result":{"type":"succeeded","message":{}}}`)})
			}
			for i, want := range []int{2, 0} {
				wrote, err := s.WriteBatchResults(ctx, run.ID, res)
				if err != nil || len(wrote) != want {
					t.Errorf("WriteBatchResults() call %d wrote %d, %v; want %d", i+1, len(wrote), err, want)
				}
			}
			counts := jobs.BatchCounts{Succeeded: 2, Errored: 1, Expired: 3}
			if err := s.RecordBatchCounts(ctx, rec.Row, counts); err != nil {
				t.Fatalf("RecordBatchCounts() error = %v", err)
			}
			if got, err := s.BatchCountsOf(ctx, run.ID); err != nil || len(got) != 1 || got[rec.Row] != counts {
				t.Errorf("BatchCountsOf() = %+v, %v; want %+v for row %d", got, err, counts, rec.Row)
			}
			if err := s.FinishBatch(ctx, rec.Row, created.Add(time.Hour)); err != nil {
				t.Fatalf("FinishBatch() error = %v", err)
			}
			if got := pending(); got != 8 {
				t.Errorf("pending after the batch is done = %d, want 8 (4 never sent, 4 to resubmit)", got)
			}
			// --retry-via realtime: batches take only the 4 never sent; the 4 back
			// from the batch go to realtime jobs, once.
			if fresh, err := s.BatchFresh(ctx, run.ID, jobs.BatchCursor{}, 100); err != nil || len(fresh) != 4 {
				t.Errorf("BatchFresh() = %d requests, %v; want 4 (never in a batch)", len(fresh), err)
			}
			for i, want := range []int64{4, 0} {
				if n, err := s.EnqueueRetries(ctx, run.ID, 3); err != nil || n != want {
					t.Errorf("EnqueueRetries() call %d = %d, %v; want %d", i+1, n, err, want)
				}
			}
			if n, err := s.Unfinished(ctx, run.ID); err != nil || n != 4 {
				t.Errorf("Unfinished() after EnqueueRetries = %d, %v; want 4 jobs", n, err)
			}
			if _, err := s.DropRequestJobs(ctx, run.ID); err != nil {
				t.Fatal(err)
			}
			// A resubmitted request counts its second attempt.
			rec2, err := s.RecordBatchIntent(ctx, run.ID, []int64{items[5].RequestID}, 10, "fp2")
			if err != nil {
				t.Fatal(err)
			}
			items2, err := s.BatchItems(ctx, rec2.Row)
			if err != nil || len(items2) != 1 || items2[0].Attempt != 2 {
				t.Errorf("BatchItems(second batch) = %+v, %v; want one item at attempt 2", items2, err)
			}
			if err := s.DropBatchIntent(ctx, rec2.Row); err != nil {
				t.Fatalf("DropBatchIntent() error = %v", err)
			}
			if got := pending(); got != 8 {
				t.Errorf("pending after dropping the intent = %d, want 8", got)
			}
			st, err := s.Status(ctx, run.ID)
			if err != nil || st.Results[jobs.Succeeded] != 2 || st.CostUSD != 1 {
				t.Errorf("Status() = %+v, %v; want 2 succeeded costing $1", st, err)
			}
		})
	}
}

// TestRunDeadline records and reads a hybrid run's deadline on every backend.
func TestRunDeadline(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			run, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteInput(t, 1)})
			if err := s.PrepareHybrid(ctx); err != nil {
				t.Fatal(err)
			}
			if spec, at, err := s.RunDeadline(ctx, run.ID); err != nil || spec != "" || !at.IsZero() {
				t.Errorf("RunDeadline() before any = %q, %v, %v; want none", spec, at, err)
			}
			at := time.Date(2026, 11, 27, 9, 0, 0, 123000, time.UTC)
			for _, spec := range []string{"3h", "90m"} { // the second replaces the first
				if err := s.SetRunDeadline(ctx, run.ID, spec, at); err != nil {
					t.Fatalf("SetRunDeadline(%s) error = %v", spec, err)
				}
				at = at.Add(time.Hour)
			}
			at = at.Add(-time.Hour)
			if spec, got, err := s.RunDeadline(ctx, run.ID); err != nil || spec != "90m" || !got.Equal(at) {
				t.Errorf("RunDeadline() = %q, %v, %v; want 90m, %v", spec, got, err, at)
			}
		})
	}
}
