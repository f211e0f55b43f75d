package jobs_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// cachedLine is a request line whose document (doc, a prompt-cache prefix) carries
// cache_control, followed by a question of its own.
func cachedLine(id, doc string) string {
	return `{"custom_id":"` + id + `","params":{"model":"` + jobstest.Model + `","max_tokens":16,"messages":[{"role":"user","content":[` +
		`{"type":"text","text":"` + strings.Repeat(doc, 1500) + `","cache_control":{"type":"ephemeral"}},{"type":"text","text":"question ` + id + `"}]}]}}`
}

// pendingOrder pages through BatchPending from the start, page requests at a
// time, and returns the custom_ids in the order it gave them.
func pendingOrder(t *testing.T, ctx context.Context, s *jobs.Store, runID int64, page int) []string {
	t.Helper()
	var got []string
	var after jobs.BatchCursor
	for {
		refs, err := s.BatchPending(ctx, runID, after, page)
		if err != nil {
			t.Fatalf("BatchPending(%+v) error = %v", after, err)
		}
		if len(refs) == 0 {
			return got
		}
		reqs, err := s.BatchRequests(ctx, refs)
		if err != nil || len(reqs) != len(refs) {
			t.Fatalf("BatchRequests(%d refs) = %d requests, %v", len(refs), len(reqs), err)
		}
		for _, r := range reqs {
			got = append(got, r.CustomID)
		}
		after = refs[len(refs)-1].At
	}
}

// TestBatchPendingGroupsByPrefix imports three prompt-cache prefixes' lines
// interleaved (a b c a b c ..., a plain line after each round) and pages through
// BatchPending two requests at a time, so pages end inside groups and between
// them: each prefix's lines come together, at its first line's place, and the
// plain lines at their own.
func TestBatchPendingGroupsByPrefix(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			var lines []string
			for round := range 3 {
				for _, p := range []string{"a", "b", "c"} {
					lines = append(lines, cachedLine(fmt.Sprintf("%s%d", p, round), p+"xyz"))
				}
				lines = append(lines, jobstest.Line(fmt.Sprintf("plain%d", round)))
			}
			run, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteFile(t, lines...), NoJobs: true})
			if err := s.PrepareBatches(ctx); err != nil {
				t.Fatalf("PrepareBatches() error = %v", err)
			}
			want := []string{"a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2", "plain0", "plain1", "plain2"}
			if got := pendingOrder(t, ctx, s, run.ID, 2); !slices.Equal(got, want) {
				t.Errorf("BatchPending pages of 2 = %v, want %v", got, want)
			}
			refs, err := s.BatchPending(ctx, run.ID, jobs.BatchCursor{}, 1)
			if err != nil || len(refs) != 1 {
				t.Fatalf("BatchPending(limit 1) = %+v, %v: want 1", refs, err)
			}
			if reqs, err := s.BatchRequests(ctx, refs); err != nil || len(reqs) != 1 || reqs[0].CustomID != "a0" || reqs[0].Cache.Key == (cacheprefix.Key{}) {
				t.Errorf("BatchRequests(first) = %+v, %v: want a0 with its prefix", reqs, err)
			}
		})
	}
}

// TestBatchPendingLineOrderWithoutPrefix: a run without cache_control is given in
// line order, page after page, as before prefix groups.
func TestBatchPendingLineOrderWithoutPrefix(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			var lines, want []string
			for i := range 9 {
				id := fmt.Sprintf("p%d", (i*7)%9) // custom_ids out of order: the line counts
				lines, want = append(lines, jobstest.Line(id)), append(want, id)
			}
			// Another run of the store with prefixes changes nothing in this one.
			jobstest.Import(t, ctx, s, jobs.ImportOptions{Name: "cached", Path: jobstest.WriteFile(t,
				cachedLine("x0", "xyz"), cachedLine("x1", "xyz")), NoJobs: true})
			run, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteFile(t, lines...), NoJobs: true})
			if err := s.PrepareBatches(ctx); err != nil {
				t.Fatalf("PrepareBatches() error = %v", err)
			}
			if got := pendingOrder(t, ctx, s, run.ID, 4); !slices.Equal(got, want) {
				t.Errorf("BatchPending pages of 4 = %v, want line order %v", got, want)
			}
		})
	}
}

// TestBatchPendingGroupsStableOnResume: a prefix split over two batches (its lines
// outnumber a batch) keeps its place after the first batch is taken, although its
// first pending line is now after the next prefix's first line: a resumed run
// forms the groups an uninterrupted one would have.
func TestBatchPendingGroupsStableOnResume(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			var lines []string
			for round := range 4 {
				for _, p := range []string{"a", "b"} {
					lines = append(lines, cachedLine(fmt.Sprintf("%s%d", p, round), p+"xyz"))
				}
			}
			run, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteFile(t, lines...), NoJobs: true})
			if err := s.PrepareBatches(ctx); err != nil {
				t.Fatalf("PrepareBatches() error = %v", err)
			}
			// The uninterrupted order, and its first batch of 3.
			whole := pendingOrder(t, ctx, s, run.ID, 3)
			if want := []string{"a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"}; !slices.Equal(whole, want) {
				t.Fatalf("BatchPending = %v, want %v", whole, want)
			}
			refs, err := s.BatchPending(ctx, run.ID, jobs.BatchCursor{}, 3)
			if err != nil {
				t.Fatal(err)
			}
			first, err := s.BatchRequests(ctx, refs)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]int64, len(first))
			for i, r := range first {
				ids[i] = r.ID
			}
			rec, err := s.RecordBatchIntent(ctx, run.ID, ids, 1, "fp")
			if err != nil {
				t.Fatal(err)
			}
			// Precondition: a's first pending line (a3, line 7) is after b's (b0, line 2).
			if first[len(first)-1].CustomID != "a2" {
				t.Fatalf("first batch ends with %s, want a2: a is not split", first[len(first)-1].CustomID)
			}
			if got := pendingOrder(t, ctx, s, run.ID, 3); !slices.Equal(got, whole[3:]) {
				t.Errorf("BatchPending after a first batch (open) = %v, want %v", got, whole[3:])
			}
			// The same once the first batch is done and its results are in.
			if err := s.RecordBatchCreated(ctx, rec.Row, "msgbatch_resume", time.Now()); err != nil {
				t.Fatal(err)
			}
			items, err := s.BatchItems(ctx, rec.Row)
			if err != nil {
				t.Fatal(err)
			}
			var res []jobs.BatchResult
			for _, it := range items {
				res = append(res, jobs.BatchResult{Item: it, Type: jobs.Succeeded,
					Line: []byte(`{"custom_id":"` + it.CustomID + `","result":{"type":"succeeded"}}`)})
			}
			if _, err := s.WriteBatchResults(ctx, run.ID, res); err != nil {
				t.Fatal(err)
			}
			if err := s.FinishBatch(ctx, rec.Row, time.Now()); err != nil {
				t.Fatal(err)
			}
			if got := pendingOrder(t, ctx, s, run.ID, 3); !slices.Equal(got, whole[3:]) {
				t.Errorf("BatchPending after a first batch (done) = %v, want %v", got, whole[3:])
			}
		})
	}
}
