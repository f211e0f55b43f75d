package batch

// Retries through realtime: with Config.RetryVia RetryRealtime, each request goes
// into one batch only. Those whose line comes back expired, canceled or a
// retryable error, or that their batch never answered for, are handed to realtime
// workers (package runner, at full price) as soon as their batch has been read,
// instead of waiting for a later batch: a batch can take up to 24 hours, realtime
// minutes. The workers share the store, the results file and the budget.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/runner"
)

// Where resubmitted requests go (Config.RetryVia).
const (
	RetryBatch    = "batch"
	RetryRealtime = "realtime"
)

// realtime is the runner that works the requests handed to it, started on the
// first hand-over (or at start when a resumed run left some).
type realtime struct {
	until     chan struct{}
	untilOnce sync.Once
	done      chan struct{}
	sum       *runner.Summary
	err       error
	handed    int64 // requests handed over by this process
}

func (rt *realtime) stop() { rt.untilOnce.Do(func() { close(rt.until) }) }

// handOver gives realtime the requests that came back from their batch, and starts
// it if it has work and is not running. It does nothing while the input is still
// imported (the runner resumes the run's import; it must find it complete).
func (d *dispatcher) handOver(ctx context.Context) error {
	if d.cfg.RetryVia != RetryRealtime || d.importing {
		return nil
	}
	st := d.cfg.Store
	n, err := st.EnqueueRetries(ctx, d.runID, d.cfg.Realtime.MaxAttempts)
	if err != nil {
		return err
	}
	if n > 0 {
		d.progress("%d requests sent to realtime", n)
	}
	if d.rt != nil {
		d.rt.handed += n
		return nil
	}
	queued := n
	if queued == 0 { // a resumed run may have left jobs from before
		if queued, err = st.Unfinished(ctx, d.runID); err != nil {
			return err
		}
	}
	if queued == 0 {
		return nil
	}
	if err := d.startRealtime(ctx); err != nil {
		return err
	}
	d.rt.handed += n
	return nil
}

// startRealtime starts the realtime runner on the dispatcher's store, results file,
// tier and routing. Its budget is the run's less the worst case of the requests
// still in open batches (their cost is not known until they are read).
func (d *dispatcher) startRealtime(ctx context.Context) error {
	rc := d.cfg.Realtime
	rc.Store, rc.Client, rc.Catalog, rc.Input, rc.Output = d.cfg.Store, d.cfg.Client, d.cfg.Catalog, d.cfg.Input, ""
	rc.Options, rc.Tier, rc.Ordered, rc.Force, rc.Strict = d.cfg.Options, d.cfg.Tier, false, false, false
	if d.out != nil {
		rc.Out = d.out.o
	}
	if rc.Routing == nil {
		rc.Routing = d.cfg.Routing
	}
	if rc.Logger == nil {
		rc.Logger = d.log
	}
	if d.cfg.Budget > 0 {
		held, err := HeldWorstCase(ctx, d.cfg.Store, d.cfg.Catalog, d.runID)
		if err != nil {
			return err
		}
		rc.Budget = max(d.cfg.Budget-held, 1e-9) // 1e-9: spend nothing
	}
	rt := &realtime{until: make(chan struct{}), done: make(chan struct{})}
	rc.Until = rt.until
	d.rt = rt
	go func() {
		defer close(rt.done)
		rt.sum, rt.err = runner.Run(ctx, rc)
	}()
	return nil
}

// awaitRealtime, once no batch is left to create or read, waits until realtime has
// worked every request handed to it (no job of the run is left to run), or stops
// (its budget, the API), then stops the workers. Requests no one will send (a
// budget stop of batch creation) are not waited for.
func (d *dispatcher) awaitRealtime(ctx context.Context) error {
	rt := d.rt
	if rt == nil {
		return nil
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var err error
wait:
	for {
		n, uerr := d.cfg.Store.Unfinished(ctx, d.runID)
		switch {
		case uerr != nil:
			err = uerr
			break wait
		case n == 0:
			break wait
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-rt.done:
			break wait
		case <-t.C:
		}
	}
	rt.stop()
	<-rt.done
	if rt.err != nil && !errors.Is(rt.err, context.Canceled) {
		err = errors.Join(err, fmt.Errorf("realtime retries: %w", rt.err))
	}
	return err
}

// closeRealtime stops the realtime workers, if any, and waits for them (Run's
// exit path, whatever ended it).
func (d *dispatcher) closeRealtime() {
	if d.rt != nil {
		d.rt.stop()
		<-d.rt.done
	}
}

// pendingForBatch returns the requests after afterLine that batch dispatch sends:
// every pending one, or with RetryRealtime only those never in a batch.
func (d *dispatcher) pendingForBatch(ctx context.Context, afterLine, limit int) ([]jobs.Request, error) {
	if d.cfg.RetryVia == RetryRealtime {
		return d.cfg.Store.BatchFresh(ctx, d.runID, afterLine, limit)
	}
	return d.cfg.Store.BatchPending(ctx, d.runID, afterLine, limit)
}
