package batch_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/lifecycle"
)

// TestFirstBatchBeforeImportEnds: on a large input the first (full) batch is
// created while the rest of the file is still imported, only full batches are
// created meanwhile, and the run ends with every request answered once.
func TestFirstBatchBeforeImportEnds(t *testing.T) {
	t.Parallel()
	// Enough lines that importing the rest takes longer than building and
	// creating the first batch (the race detector slows SQLite several times).
	n, per := int64(60_000), int64(1_000)
	if raceOn {
		n = 8_000
	}
	e := setup(t, emulator.Config{BatchProcessingRate: 1e6})
	input := writeInput(t, e.dir, int(n))
	sum, err := batch.Run(context.Background(), e.config(input, int(per)))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != n || sum.Pending != 0 {
		t.Errorf("%d succeeded, %d pending; want %d, 0", sum.Succeeded, sum.Pending, n)
	}
	abs, err := filepath.Abs(input)
	if err != nil {
		t.Fatal(err)
	}
	run, err := e.store.RunByName(context.Background(), abs)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := e.store.Batches(context.Background(), run.ID)
	if err != nil || len(bs) == 0 {
		t.Fatalf("Batches = %d, %v", len(bs), err)
	}
	if first := bs[0]; !first.AttemptedAt.Before(run.ImportedAt) {
		t.Errorf("first batch recorded at %s, the import ended at %s: no overlap", first.AttemptedAt, run.ImportedAt)
	}
	for _, b := range bs {
		if b.AttemptedAt.Before(run.ImportedAt) && b.Requests != per {
			t.Errorf("a batch of %d requests was created during the import; only full batches (%d) should be", b.Requests, per)
		}
	}
}

// TestStrictSendsNothing: with Strict, a bad line stops the run before any batch
// is created (the whole input is checked first).
func TestStrictSendsNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{})
	input := writeInput(t, e.dir, 50, `{"custom_id":"bad","params":`)
	cfg := e.config(input, 10)
	cfg.Strict = true
	if _, err := batch.Run(context.Background(), cfg); !errors.Is(err, lifecycle.ErrStrict) {
		t.Fatalf("Run with a bad line and Strict = %v, want ErrStrict", err)
	}
	page, err := e.client.ListBatches(context.Background(), "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 0 {
		t.Errorf("%d batches created; Strict must send nothing when a line is bad", len(page.Data))
	}
}
