package batch_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/jobs"
)

// TestOneDispatcherPerRun: while one Run works a store's run, a second Run on the
// same store (another process, in practice) is refused with jobs.ErrLeased
// instead of creating batches for the same requests; once the first returns, the
// run can be resumed.
func TestOneDispatcherPerRun(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{BatchProcessingRate: 20})
	input := writeInput(t, e.dir, 40)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := batch.Run(ctx, e.config(input, 20))
		first <- err
	}()
	// Wait until the first dispatcher has created a batch.
	for deadline := time.Now().Add(10 * time.Second); ; {
		page, err := e.client.ListBatches(context.Background(), "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first dispatcher created no batch")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cfg := e.config(input, 20)
	cfg.Output = filepath.Join(e.dir, "second.jsonl")
	if _, err := batch.Run(context.Background(), cfg); !errors.Is(err, jobs.ErrLeased) {
		t.Fatalf("second Run while the first works = %v, want jobs.ErrLeased", err)
	}
	cancel()
	if err := <-first; err != nil {
		t.Fatalf("first Run: %v", err)
	}
	sum, err := batch.Run(context.Background(), e.config(input, 20))
	if err != nil {
		t.Fatalf("resumed Run: %v", err)
	}
	if sum.Succeeded != 40 {
		t.Errorf("resumed run: %d succeeded, want 40", sum.Succeeded)
	}
}
