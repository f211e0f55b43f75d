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
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/spend"
)

// Where resubmitted requests go (Config.RetryVia).
const (
	RetryBatch    = "batch"
	RetryRealtime = "realtime"
)

// realtime is the runner that works the requests handed to it, started on the
// first hand-over (or at start when a resumed run left some).
type realtime struct {
	w      *runner.Worker
	budget bool         // the runner has a budget
	room   spend.Micros // the run's budget less what the runner held back for batches
}

// stoppedByBudget reports whether the runner has ended on its budget.
func (rt *realtime) stoppedByBudget() bool {
	select {
	case <-rt.w.Done():
		_, err := rt.w.Result()
		return errors.Is(err, runner.ErrStopped) && rt.budget
	default:
		return false
	}
}

// handOver gives realtime the requests that came back from their batch, and starts
// it if it has work and is not running. It does nothing while the input is still
// imported (the runner resumes the run's import; it must find it complete).
func (d *dispatcher) handOver(ctx context.Context) error {
	if d.cfg.RetryVia != RetryRealtime || d.life.Importing() {
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
	d.rtHanded += n
	if d.rt != nil && !d.rt.stoppedByBudget() {
		return nil
	}
	queued, err := st.Unfinished(ctx, d.runID)
	if err != nil || queued == 0 {
		return err
	}
	_, err = d.startRealtime(ctx)
	return err
}

// realtimeHeld is what realtime workers starting now hold back from the run's
// budget (runner.Config.BudgetHeld): the worst case of everything batches may still
// cost (the requests in open batches and those not yet sent). A runner counts the
// run's cost at its start and its own calls, not the batches read after, so with
// that held back the two together stay within the budget. 0: no budget.
func (d *dispatcher) realtimeHeld(ctx context.Context) (spend.Micros, error) {
	if d.cfg.Budget <= 0 {
		return 0, nil
	}
	held, err := HeldWorstCase(ctx, d.cfg.Store, d.cfg.Catalog, d.runID)
	if err != nil {
		return 0, err
	}
	fresh, err := FreshWorstCase(ctx, d.cfg.Store, d.cfg.Catalog, d.runID)
	if err != nil {
		return 0, err
	}
	return held + fresh, nil
}

// startRealtime starts realtime workers on the dispatcher's store, results file,
// tier and routing, unless the last ones stopped on a budget that has not grown
// since (batches that end free the worst case held for them). It reports whether
// it started them.
func (d *dispatcher) startRealtime(ctx context.Context) (bool, error) {
	if d.yielded {
		return false, nil // the caller's workers have the run (Config.StopRealtime)
	}
	held, err := d.realtimeHeld(ctx)
	if err != nil {
		return false, err
	}
	room := max(spend.FromUSD(d.cfg.Budget)-held, 0)
	if prev := d.rt; prev != nil {
		if room <= prev.room+prev.room/1000 {
			return false, nil
		}
		d.rtCarry(prev)
		d.progress("realtime resumes: batches that ended freed budget ($%.4f for realtime)", room.USD())
	}
	rc := d.cfg.Realtime
	rc.Spec = d.cfg.Sharing(rc.Spec, d.life.Out)
	if rc.Routing == nil {
		rc.Routing = d.cfg.Routing
	}
	rc.BudgetHeld = held
	d.rt = &realtime{w: runner.Start(ctx, rc), budget: d.cfg.Budget > 0, room: room}
	return true, nil
}

// rtCarry adds an ended runner's calls to the run's count.
func (d *dispatcher) rtCarry(rt *realtime) {
	if sum, _ := rt.w.Result(); sum != nil {
		d.rtSent += sum.Sent
	}
}

// awaitRealtime, once no batch is left to create or read, waits until realtime has
// worked every request handed to it (no job of the run is left to run), or stops
// (its budget, the API), then stops the workers. A runner stopped on its budget is
// started again if the batches that ended since freed some. Requests no one will
// send (a budget stop of batch creation) are not waited for.
func (d *dispatcher) awaitRealtime(ctx context.Context) error {
	if d.rt == nil {
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
		case <-d.rt.w.Done():
			if d.rt.stoppedByBudget() {
				started, serr := d.startRealtime(ctx)
				if serr != nil {
					err = serr
					break wait
				}
				if started {
					continue
				}
			}
			break wait
		case <-t.C:
		}
	}
	rt := d.rt
	rt.w.Finish()
	<-rt.w.Done()
	if _, rerr := rt.w.Result(); rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = errors.Join(err, fmt.Errorf("realtime retries: %w", rerr))
	}
	return err
}

// yieldRealtime, once Config.StopRealtime is closed, stops the workers (their
// calls counted in the run's) and tells Config.RealtimeStopped, once.
func (d *dispatcher) yieldRealtime() {
	if d.cfg.StopRealtime == nil || d.yielded {
		return
	}
	select {
	case <-d.cfg.StopRealtime:
	default:
		return
	}
	d.yielded = true
	if d.rt != nil {
		d.closeRealtime()
		d.rtCarry(d.rt)
		d.rt = nil
	}
	if d.cfg.RealtimeStopped != nil {
		d.cfg.RealtimeStopped()
	}
}

// closeRealtime stops the realtime workers, if any, and waits for them (Run's
// exit path, whatever ended it).
func (d *dispatcher) closeRealtime() {
	if d.rt != nil {
		d.rt.w.Finish()
		<-d.rt.w.Done()
	}
}

// pendingForBatch returns the requests after the cursor that batch dispatch sends,
// a prompt-cache prefix's lines together (jobs.Store.BatchPending): every pending
// one, or with RetryRealtime only those never in a batch.
func (d *dispatcher) pendingForBatch(ctx context.Context, after jobs.BatchCursor, limit int) ([]jobs.BatchRef, error) {
	if d.cfg.RetryVia == RetryRealtime {
		return d.cfg.Store.BatchFresh(ctx, d.runID, after, limit)
	}
	return d.cfg.Store.BatchPending(ctx, d.runID, after, limit)
}
