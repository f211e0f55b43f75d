package jobs

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/clade-dev/clade/internal/testkit"
)

// TestSQLiteResultTableUpgrade: a store made before migration 2 (clade_result
// keyed by request_id) keeps every result, its counts and its export when opened
// by this version, and the rebuilt table still refuses a second result for a
// request. Not parallel: it swaps the migration list.
func TestSQLiteResultTableUpgrade(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	testkit.Input{IDFormat: "r%d", MaxTokens: 8, Content: "x"}.Write(t, input, 5)
	db := filepath.Join(dir, "store.db")

	all := sqliteMigrations
	sqliteMigrations = all[:1]
	old, err := Open(ctx, db)
	sqliteMigrations = all
	if err != nil {
		t.Fatal(err)
	}
	run, _, err := old.Import(ctx, ImportOptions{Path: input, NoJobs: true})
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := old.Pending(ctx, run.ID, 0, 10)
	if err != nil || len(reqs) != 5 {
		t.Fatalf("Pending = %d, %v", len(reqs), err)
	}
	var results []BatchResult
	for _, i := range []int{2, 0, 1} { // out of request order
		r := reqs[i]
		results = append(results, BatchResult{Item: BatchItem{RequestID: r.ID, CustomID: r.CustomID, Line: r.Line, Model: r.Model},
			Type: Succeeded, Line: []byte(fmt.Sprintf(`{"custom_id":%q,"result":{"type":"succeeded"}}`, r.CustomID)), CostUSD: 0.5})
	}
	if wrote, err := old.WriteBatchResults(ctx, run.ID, results); err != nil || len(wrote) != 3 {
		t.Fatalf("WriteBatchResults on the old table = %d, %v", len(wrote), err)
	}
	var before bytes.Buffer
	if _, err := old.Export(ctx, run.ID, &before, true); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := Open(ctx, db)
	if err != nil {
		t.Fatalf("open and upgrade: %v", err)
	}
	defer s.Close()
	st, err := s.Status(ctx, run.ID)
	if err != nil || st.Results[Succeeded] != 3 || st.Pending != 2 || st.CostUSD != 1.5 {
		t.Fatalf("after the upgrade: %+v, %v; want 3 succeeded, 2 pending, $1.5", st, err)
	}
	var after bytes.Buffer
	if _, err := s.Export(ctx, run.ID, &after, true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before.Bytes(), after.Bytes()) {
		t.Errorf("export changed by the upgrade:\n%s\nwant\n%s", after.Bytes(), before.Bytes())
	}
	if wrote, err := s.WriteBatchResults(ctx, run.ID, results[:1]); err != nil || len(wrote) != 0 {
		t.Errorf("a second result for a request: wrote %d, %v; want 0 (the first is kept)", len(wrote), err)
	}
}
