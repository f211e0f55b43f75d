package batch

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clade-dev/clade/internal/display"
	"github.com/clade-dev/clade/internal/jobs"
)

// The display of a batch run (package display): on a terminal one block redrawn
// every liveEvery (a bar, done/total, ok/err; elapsed, ETA, cost; the batches by
// state; the requests in batches and waiting); anywhere else the status line every
// ProgressEvery, written by the loop. Events (a batch created, ended, canceled) are
// said above the block.

// liveEvery is how often the terminal display is redrawn; it reads the store
// every storeEvery.
const (
	liveEvery  = time.Second
	storeEvery = 2 * time.Second
)

// shown is what the loop publishes for the terminal display, which runs in its
// own goroutine and reads nothing else of the dispatcher's but the store.
type shown struct {
	canceling atomic.Int64 // open batches the API reports canceling
	rtHanded  atomic.Int64 // requests handed to realtime (RetryRealtime)
	rtWarm    atomic.Int64 // warm calls queued (CacheWarmRealtime)
	rt        atomic.Bool  // realtime workers were started
}

// publish copies the loop's state for the terminal display.
func (d *dispatcher) publish() {
	d.shown.canceling.Store(int64(len(d.canceling)))
	d.shown.rtHanded.Store(d.rtHanded)
	d.shown.rtWarm.Store(d.warmQueued)
	d.shown.rt.Store(d.rt != nil)
}

// batchView is what the display shows, read from the store; block and line only
// format it.
type batchView struct {
	elapsed, eta      time.Duration // eta 0: unknown
	requests, done    int64
	ok, bad           int64
	inFlight, waiting int64
	cost              float64
	prices            string  // "at batch prices", or "so far" with realtime retries
	rate              float64 // results per minute since this process started; 0: none yet
	// Batches by state: being created (intent recorded, create unconfirmed),
	// running (canceling among them), ended (results read).
	creating, running, canceling, ended int64
	// rt says realtime workers take the retries and warm calls: rtLeft of
	// rtHanded retries and rtWarm warm calls are left.
	rt                       bool
	rtLeft, rtHanded, rtWarm int64
}

// view reads the run's counts from the store. It only reads the store and what
// publish shows, so it may run beside the loop.
func (d *dispatcher) view(ctx context.Context, withBatches bool) (*batchView, error) {
	st := d.cfg.Store
	s, err := st.Status(ctx, d.runID)
	if err != nil {
		return nil, err
	}
	inFlight, err := st.OpenBatchRequests(ctx, d.runID)
	if err != nil {
		return nil, err
	}
	v := &batchView{elapsed: d.clock.Now().Sub(d.start), requests: s.Requests, done: s.Requests - s.Pending,
		ok: s.Results[jobs.Succeeded], bad: s.Results[jobs.Errored] + s.Results[jobs.Canceled] + s.Results[jobs.Expired],
		inFlight: inFlight, waiting: max(s.Pending-inFlight, 0), cost: s.CostUSD, prices: "at batch prices",
		canceling: d.shown.canceling.Load(), rt: d.shown.rt.Load(), rtHanded: d.shown.rtHanded.Load(), rtWarm: d.shown.rtWarm.Load()}
	if d.cfg.RetryVia == RetryRealtime {
		v.prices = "so far"
	}
	if n := v.done - d.doneAtStart; n > 0 && v.elapsed > 0 {
		v.rate = float64(n) / v.elapsed.Minutes()
		if left := v.requests - v.done; left > 0 {
			v.eta = time.Duration(float64(left) / v.rate * float64(time.Minute))
		}
	}
	if v.rt {
		if v.rtLeft, err = st.Unfinished(ctx, d.runID); err != nil {
			return nil, err
		}
	}
	if withBatches {
		bs, err := st.Batches(ctx, d.runID)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			switch b.State {
			case jobs.BatchIntent:
				v.creating++
			case jobs.BatchDone:
				v.ended++
			default:
				v.running++
			}
		}
	}
	return v, nil
}

// line is the plain display: the status line.
func (v *batchView) line() string {
	line := fmt.Sprintf("status: %d/%d done (%.1f%%), %d in batches in flight, %d waiting; $%.4f %s; %s",
		v.done, v.requests, display.Percent(v.done, v.requests), v.inFlight, v.waiting, v.cost, v.prices, v.elapsed.Round(time.Second))
	if v.rate > 0 {
		line += fmt.Sprintf(" (%.0f results/min)", v.rate)
	}
	if v.rt {
		line += fmt.Sprintf("; realtime: %d of %d %s left", v.rtLeft, v.rtHanded+v.rtWarm, v.rtWhat())
	}
	return line
}

// rtWhat names what the realtime workers were handed: retries, warm calls or both.
func (v *batchView) rtWhat() string {
	switch {
	case v.rtWarm == 0:
		return "retries"
	case v.rtHanded == 0:
		return "warm calls"
	}
	return "retries and warm calls"
}

// block is the terminal display, at most width columns a line, in two pieces:
// head, the run's total, and body, the batches' rows (display.Part.DrawHead):
//
//	[████████░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░]  20.0%  2,000/10,000  ok 1,990  err 10
//	elapsed 1m12s  ETA 4m48s  $0.0123 at batch prices  1.7k results/min
//	batches  3 running (1 canceling)  2 ended  1 being created
//	requests 6,000 in batches  2,000 waiting
func (v *batchView) block(width int) (head, body []string) {
	eta := "ETA …"
	switch {
	case v.done >= v.requests:
		eta = "done"
	case v.eta > 0:
		eta = "ETA " + display.Round(v.eta)
	}
	if width <= 0 {
		width = display.DefaultWidth
	}
	rate := ""
	if v.rate > 0 {
		rate = display.Short(v.rate) + " results/min"
	}
	second := display.Fit(width, "  ", "elapsed "+display.Round(v.elapsed), eta, fmt.Sprintf("$%.4f", v.cost)) // the rest if it fits:
	second = display.Fit(width, " ", second, v.prices)
	if rate != "" {
		second = display.Fit(width, "  ", second, rate)
	}
	head = []string{display.Total(width, v.done, v.requests, v.ok, v.bad), second}
	var b strings.Builder
	fmt.Fprintf(&b, "batches  %d running", v.running)
	if v.canceling > 0 {
		fmt.Fprintf(&b, " (%d canceling)", v.canceling)
	}
	fmt.Fprintf(&b, "  %d ended", v.ended)
	if v.creating > 0 {
		fmt.Fprintf(&b, "  %d being created", v.creating)
	}
	req := fmt.Sprintf("requests %s in batches  %s waiting", display.Count(v.inFlight), display.Count(v.waiting))
	if v.rt {
		req += fmt.Sprintf("  realtime %s of %s left", display.Count(v.rtLeft), display.Count(v.rtHanded+v.rtWarm))
	}
	return head, []string{b.String(), req}
}

// status prints the status line (not on a terminal, where the block is redrawn
// instead).
func (d *dispatcher) status(ctx context.Context) {
	if d.screen == nil || d.screen.Live() {
		return
	}
	if v, err := d.view(ctx, false); err == nil && v.requests > 0 {
		d.screen.Draw(nil, v.line())
	}
}

// drawLive redraws the terminal display every liveEvery until ctx ends, then
// once more with the run's last counts. The caller waits for it to return.
func (d *dispatcher) drawLive(ctx context.Context) {
	t := time.NewTicker(liveEvery)
	defer t.Stop()
	var v *batchView
	var at time.Time
	draw := func(force bool) {
		now := time.Now()
		if force || v == nil || now.Sub(at) >= storeEvery {
			if got, err := d.view(context.WithoutCancel(ctx), true); err == nil {
				v, at = got, now
			}
		}
		if v != nil && v.requests > 0 {
			v.elapsed = d.clock.Now().Sub(d.start)
			head, body := v.block(d.screen.Width())
			if s, ok := d.screen.(interface {
				DrawHead(head, body []string, line string)
			}); ok {
				s.DrawHead(head, body, "") // a part of a board: one total for the run
			} else {
				d.screen.Draw(append(head, body...), "")
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			draw(true)
			d.screen.Close()
			return
		case <-t.C:
			draw(false)
		}
	}
}
