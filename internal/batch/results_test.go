package batch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/testkit"
)

// advanceEvery moves the emulator's batch clock by step every real interval until
// the test ends, so batches expire without the test waiting a day.
func advanceEvery(t *testing.T, e *env, interval, step time.Duration) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				e.em.Server.Clock().Advance(step)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// TestRetryableErroredResubmittedUntilMaxRounds: api_error and overloaded_error
// lines send their request again, in a new batch each round, and after MaxRounds
// batches the last line is the final result. The emulator fails the same requests
// in every batch (BatchItemErrorRate is fixed per request), so they use every round.
func TestRetryableErroredResubmittedUntilMaxRounds(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000, BatchItemErrorRate: 0.25})
	const n, rounds = 80, 3
	cfg := e.config(writeInput(t, e.dir, n), 0)
	cfg.MaxRounds = rounds
	sum := run(t, cfg)
	res := testkit.ReadResults(t, cfg.Output)
	if len(res) != n {
		t.Fatalf("results file has %d custom_ids, want %d", len(res), n)
	}
	byErr := map[string]int64{}
	for id, l := range res {
		switch {
		case l.Type == "succeeded":
		case l.Type == "errored" && (l.ErrorType == "api_error" || l.ErrorType == "overloaded_error"):
			byErr[l.ErrorType]++
		default:
			t.Errorf("result of %s = %+v, want succeeded or a retryable errored", id, l)
		}
	}
	failed := byErr["api_error"] + byErr["overloaded_error"]
	if byErr["api_error"] == 0 || byErr["overloaded_error"] == 0 {
		t.Errorf("final errored lines by type = %v, want both api_error and overloaded_error", byErr)
	}
	if sum.Errored != failed || sum.Succeeded != n-failed {
		t.Errorf("Run() = %d succeeded, %d errored; want %d, %d", sum.Succeeded, sum.Errored, n-failed, failed)
	}
	if want := failed * (rounds - 1); sum.Resubmitted != want {
		t.Errorf("Run() resubmitted %d, want %d (%d failing requests × %d extra rounds)", sum.Resubmitted, want, failed, rounds-1)
	}
	bs := e.apiBatches(t)
	if want := n + failed*(rounds-1); len(bs) != rounds || requestsIn(bs) != want {
		t.Errorf("emulator holds %d batches of %d requests, want %d of %d", len(bs), requestsIn(bs), rounds, want)
	}
}

// TestExpiredFinalAfterMaxRounds: a request that expires in every batch is sent
// MaxRounds times, then its expired line is final.
func TestExpiredFinalAfterMaxRounds(t *testing.T) {
	t.Parallel()
	// Practically nothing is processed; the clock jumps a day every 20 ms. Results
	// are kept 10 years (of that clock): 29 days pass in 0.6 s, and an archived
	// batch would send its requests again without a line.
	e := setup(t, emulator.Config{ClockSpeed: 1000, BatchProcessingRate: 1e-9, BatchRetention: 10 * 365 * 24 * time.Hour})
	advanceEvery(t, e, 20*time.Millisecond, 24*time.Hour)
	const n = 20
	cfg := e.config(writeInput(t, e.dir, n), 0)
	cfg.MaxRounds = 2
	sum := run(t, cfg)
	wantAll(t, cfg.Output, n, "expired")
	if sum.Expired != n || sum.Resubmitted != n {
		t.Errorf("Run() = %d expired, %d resubmitted; want %d, %d", sum.Expired, sum.Resubmitted, n, n)
	}
	if bs := e.apiBatches(t); len(bs) != 2 || requestsIn(bs) != 2*n {
		t.Errorf("emulator holds %d batches of %d requests, want 2 of %d", len(bs), requestsIn(bs), 2*n)
	}
}

// TestCancelStopsRun: batch.Cancel while Run has batches in flight and requests not
// yet sent (the queue limit holds them back). Run reads the partial results, writes
// every other request as a final canceled line, creates no batch after the cancel and
// returns; reopening the run (clade batch --resume-canceled) sends exactly the
// canceled requests again.
func TestCancelStopsRun(t *testing.T) {
	t.Parallel()
	// 20 requests a real second: the first batch of 20 takes a second.
	e := setup(t, emulator.Config{ClockSpeed: 1000, BatchProcessingRate: 0.02})
	const n = 60
	cfg := e.config(writeInput(t, e.dir, n), 20)
	cfg.QueueLimit = 40 // two batches in flight; 20 requests wait
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type outcome struct {
		sum *batch.Summary
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		sum, err := batch.Run(ctx, cfg)
		done <- outcome{sum, err}
	}()
	// Cancel once both batches are created.
	for {
		bs, err := e.store.Batches(ctx, 0, jobs.BatchCreated)
		if err == nil && len(bs) == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("two batches were not created in time")
		}
		select {
		case o := <-done:
			t.Fatalf("Run() returned before the cancel: %+v, %v", o.sum, o.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	rep, err := batch.Cancel(ctx, e.store, e.client)
	if err != nil {
		t.Fatalf("Cancel() error = %v", err)
	}
	if len(rep.Runs) != 1 || len(rep.Batches) != 2 {
		t.Errorf("Cancel() marked %d runs and %d batches, want 1 and 2", len(rep.Runs), len(rep.Batches))
	}
	for _, b := range rep.Batches {
		if b.Err != nil || (b.Status != "canceling" && b.Status != "ended") {
			t.Errorf("Cancel() batch %s = %q, %v; want canceling or ended", b.ID, b.Status, b.Err)
		}
	}
	o := <-done
	if o.err != nil {
		t.Fatalf("Run() after Cancel error = %v", o.err)
	}
	if o.sum.Pending != 0 || o.sum.Canceled < 20 || o.sum.Succeeded+o.sum.Canceled != n || o.sum.Resubmitted != 0 {
		t.Errorf("Run() after Cancel = %d succeeded, %d canceled, %d pending, %d resubmitted; want %d in all, ≥ 20 canceled, 0 pending, 0 resubmitted",
			o.sum.Succeeded, o.sum.Canceled, o.sum.Pending, o.sum.Resubmitted, n)
	}
	res := testkit.ReadResults(t, cfg.Output)
	if len(res) != n {
		t.Fatalf("results file has %d custom_ids, want %d", len(res), n)
	}
	for i := 40; i < n; i++ { // never sent
		if id := fmt.Sprintf("req-%05d", i); res[id].Type != "canceled" {
			t.Errorf("result of unsent %s = %q, want canceled", id, res[id].Type)
		}
	}
	if bs := e.apiBatches(t); len(bs) != 2 || requestsIn(bs) != 40 {
		t.Errorf("emulator holds %d batches of %d requests, want the 2 of 40 created before the cancel", len(bs), requestsIn(bs))
	}

	// Run again: the run stays canceled, nothing is sent.
	again := run(t, cfg)
	if again.Batches != 0 || again.Canceled != o.sum.Canceled {
		t.Errorf("Run() on a canceled run = %d batches, %d canceled; want 0, %d", again.Batches, again.Canceled, o.sum.Canceled)
	}

	// Reopen: exactly the canceled requests are sent again, and succeed.
	reopened, err := e.store.ReopenCanceledRun(ctx, o.sum.RunID)
	if err != nil || reopened != o.sum.Canceled {
		t.Fatalf("ReopenCanceledRun() = %d, %v; want %d", reopened, err, o.sum.Canceled)
	}
	e.em.Server.Clock().Advance(time.Hour) // the canceled batches are long over
	advanceEvery(t, e, 10*time.Millisecond, time.Minute)
	final := run(t, cfg)
	if final.Succeeded != n || final.Canceled != 0 {
		t.Errorf("Run() after reopening = %d succeeded, %d canceled; want %d, 0", final.Succeeded, final.Canceled, n)
	}
	wantAll(t, cfg.Output, n, "succeeded")
	if bs := e.apiBatches(t); requestsIn(bs) != 40+reopened {
		t.Errorf("emulator holds %d requests in all, want %d (the canceled ones sent once more)", requestsIn(bs), 40+reopened)
	}
}
