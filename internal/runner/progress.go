package runner

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/clade-dev/clade/internal/display"
	"github.com/clade-dev/clade/internal/jobs"
)

// progress draws the live display: on a terminal a block redrawn in place (a bar,
// done/total, ok/err, elapsed, ETA, cost, and a row per model class with requests,
// input and output tokens per minute against its limits, the binding one marked);
// elsewhere one plain line per period.
type progress struct {
	r       *run
	screen  display.Screen
	done    chan struct{} // closed when loop returns
	start   time.Time
	total   int64 // requests pending when the work started, plus those already done
	samples []sample
	// whole is the run as the store has it (every process's results, a hybrid
	// run's batches too), read every storeEvery; wholeAt is when (zero: never).
	whole   *jobs.Status
	wholeAt time.Time
}

// storeEvery is how often the display reads the whole run's counts from the store.
const storeEvery = 2 * time.Second

// sample is the counters at one time: the run's, and each class's.
type sample struct {
	at      time.Time
	done    int64
	classes map[string]counts
}

type counts struct{ sent, in, out int64 }

// rateWindow is how far back the display's rates look: a sustained rate, not the
// opening burst of full buckets.
const rateWindow = 10 * time.Second

func newProgress(r *run, pending int64) *progress {
	done := r.succeeded.Load() + r.errored.Load()
	return &progress{r: r, screen: display.New(cmp.Or[io.Writer](r.cfg.Progress, io.Discard)), start: time.Now(), total: done + pending, done: make(chan struct{})}
}

// loop draws every period until ctx ends.
func (p *progress) loop(ctx context.Context, every time.Duration) {
	defer close(p.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.draw(time.Now())
		}
	}
}

// final draws the last state, once loop has returned (its ctx must have ended).
func (p *progress) final() {
	<-p.done
	p.wholeAt = time.Time{} // the last frame reads the store: it shows the end
	p.draw(time.Now())
	p.screen.Close()
}

// say prints an event above the display (nothing without one: p nil).
func (p *progress) say(msg string) {
	if p != nil {
		p.screen.Say(msg)
	}
}

func (p *progress) draw(now time.Time) {
	v := p.view(now)
	p.screen.Draw(v.block(p.screen.Width()), v.line())
	p.r.cfg.Dashboard.Set(v.sample(p.r.cfg.Tier, p.r.inFlight.Load())) // dashboard.go
}

// view is what the display shows, computed from the counters; block and line
// only format it.
type view struct {
	elapsed           time.Duration
	done, total       int64
	ok, bad           int64
	rateLimited, over int64
	cost, batchCost   float64
	// cacheRead and cacheWrite are the results' prompt-cache tokens; cacheSaved
	// what the cache saved against the same input uncached (USD).
	cacheRead, cacheWrite int64
	cacheSaved            float64
	// warming is set until the rates cover rateWindow.
	warming bool
	eta     time.Duration // 0: unknown
	classes []classView
}

type classView struct {
	name string
	// rate and limit per minute, for requests, input and output tokens.
	rate, limit [3]float64
	paused      time.Duration
}

// binding is the index of the limit closest to being reached (-1: none used).
func (c classView) binding() int {
	best, at := -1, 0.0
	for i := range 3 {
		if c.limit[i] > 0 && c.rate[i]/c.limit[i] > at {
			best, at = i, c.rate[i]/c.limit[i]
		}
	}
	return best
}

func (p *progress) view(now time.Time) view {
	r := p.r
	ok, bad := r.succeeded.Load(), r.errored.Load()
	total, cost := p.total, r.usd.Spent().USD()
	// The whole run, when others write results too (hosts sharing the store, a
	// hybrid run's batches): what the store holds.
	if now.Sub(p.wholeAt) >= storeEvery {
		if st, err := r.cfg.Store.Status(context.Background(), r.runID); err == nil {
			p.whole = st
		}
		p.wholeAt = now
	}
	if w := p.whole; w != nil {
		wok := w.Results[jobs.Succeeded]
		wbad := w.Results[jobs.Errored] + w.Results[jobs.Canceled] + w.Results[jobs.Expired]
		if wok+wbad >= ok+bad { // the store is never behind this process's own commits
			ok, bad, total, cost = wok, wbad, w.Requests, max(cost, w.CostUSD)
		}
	}
	s := sample{at: now, done: ok + bad, classes: map[string]counts{}}
	r.byClass.Range(func(k, c any) bool {
		cc := c.(*classCount)
		s.classes[k.(string)] = counts{cc.sent.Load(), cc.in.Load(), cc.out.Load()}
		return true
	})
	p.samples = append(p.samples, s)
	for len(p.samples) > 2 && now.Sub(p.samples[1].at) >= rateWindow {
		p.samples = p.samples[1:]
	}
	first := p.samples[0]
	span := now.Sub(first.at).Minutes()
	perMin := func(a, b int64) float64 {
		if span <= 0 {
			return 0
		}
		return float64(b-a) / span
	}
	v := view{
		elapsed: now.Sub(p.start), done: s.done, total: total, ok: ok, bad: bad,
		rateLimited: r.rateLimited.Load(), over: r.overloaded.Load(),
		cost: cost, batchCost: cost * r.cat.Pricing.Batch,
		warming:   now.Sub(first.at) < rateWindow-time.Second/2,
		cacheRead: r.cacheRead.Load(), cacheWrite: r.cacheWrite.Load(), cacheSaved: float64(r.cacheSaved.Load()) / 1e6,
	}
	snap, _ := r.lim.Snapshot(context.Background())
	var sentAll int64
	for _, c := range s.classes {
		sentAll += c.sent
	}
	var limitETA float64 // minutes: the least the rest takes at the limits
	for _, c := range snap.Classes {
		a, b := first.classes[c.Class], s.classes[c.Class]
		cv := classView{name: c.Class,
			rate:  [3]float64{perMin(a.sent, b.sent), perMin(a.in, b.in), perMin(a.out, b.out)},
			limit: [3]float64{float64(c.Requests.Limit), float64(c.InputTokens.Limit), float64(c.OutputTokens.Limit)}}
		if c.Paused(now) {
			cv.paused = c.PausedUntil.Sub(now)
		}
		v.classes = append(v.classes, cv)
		limitETA = max(limitETA, leftAtLimits(float64(total-s.done), b, sentAll, cv.limit))
	}
	if left := total - s.done; left > 0 && !v.warming {
		if rate := perMin(first.done, s.done); rate > 0 {
			// The window's rate may still hold the opening burst of full buckets:
			// the rest takes at least what the limits allow.
			v.eta = time.Duration(max(float64(left)/rate, limitETA) * float64(time.Minute))
		}
	}
	return v
}

// leftAtLimits is how many minutes a class needs, at most at its limits, for its
// share of the left requests (its share of those sent so far), each using the
// tokens its requests used on average.
func leftAtLimits(left float64, c counts, sentAll int64, limit [3]float64) float64 {
	if c.sent == 0 || sentAll == 0 {
		return 0
	}
	n := left * float64(c.sent) / float64(sentAll)
	need := [3]float64{n, n * float64(c.in) / float64(c.sent), n * float64(c.out) / float64(c.sent)}
	var t float64
	for i := range 3 {
		if limit[i] > 0 {
			t = max(t, need[i]/limit[i])
		}
	}
	return t
}

// block is the terminal display, at most width columns a line.
func (v view) block(width int) []string {
	lines := []string{display.Total(width, v.done, v.total, v.ok, v.bad)}
	eta := "ETA …"
	switch {
	case v.done >= v.total:
		eta = "done"
	case v.eta > 0:
		eta = "ETA " + display.Round(v.eta)
	}
	lines = append(lines, fmt.Sprintf("elapsed %s  %s  $%.4f (batch $%.4f)  429s %s  529s %s",
		display.Round(v.elapsed), eta, v.cost, v.batchCost, display.Count(v.rateLimited), display.Count(v.over)))
	for _, c := range v.classes {
		lines = append(lines, v.classRow(c))
	}
	if v.cacheRead+v.cacheWrite > 0 {
		lines = append(lines, fmt.Sprintf("cache   read %s  written %s  saved $%.4f",
			display.Short(float64(v.cacheRead)), display.Short(float64(v.cacheWrite)), v.cacheSaved))
	}
	return lines
}

// classRow is "haiku  req 950/1.0k  in 40k/50k  out 9.8k/10k* /min": per minute
// against the limits, * on the binding one; "burst" while the rates do not yet
// cover rateWindow (full buckets let the first minute go above the limits).
func (v view) classRow(c classView) string {
	names := [3]string{"req", "in", "out"}
	bind := c.binding()
	var b strings.Builder
	fmt.Fprintf(&b, "%-7s", c.name)
	for i := range 3 {
		rate := display.Short(c.rate[i])
		if v.warming {
			rate = "burst"
		}
		mark := ""
		if i == bind && !v.warming {
			mark = "*"
		}
		fmt.Fprintf(&b, " %s %s/%s%s", names[i], rate, display.Short(c.limit[i]), mark)
	}
	b.WriteString(" /min")
	if c.paused > 0 {
		fmt.Fprintf(&b, "  paused %s", c.paused.Round(100*time.Millisecond))
	}
	return b.String()
}

// line is the plain display: one line per period.
func (v view) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s (%.1f%%) ok %s err %s | %s", display.Count(v.done), display.Count(v.total), display.Percent(v.done, v.total), display.Count(v.ok), display.Count(v.bad), display.Round(v.elapsed))
	for _, c := range v.classes {
		if v.warming {
			fmt.Fprintf(&b, " | %s burst", c.name)
			continue
		}
		fmt.Fprintf(&b, " | %s req %s/%s in %s/%s out %s/%s", c.name, display.Short(c.rate[0]), display.Short(c.limit[0]),
			display.Short(c.rate[1]), display.Short(c.limit[1]), display.Short(c.rate[2]), display.Short(c.limit[2]))
	}
	fmt.Fprintf(&b, " | 429 %s 529 %s", display.Count(v.rateLimited), display.Count(v.over))
	if v.eta > 0 && v.done < v.total {
		fmt.Fprintf(&b, " | ETA %s", display.Round(v.eta))
	}
	fmt.Fprintf(&b, " | $%.4f", v.cost)
	if v.cacheRead+v.cacheWrite > 0 {
		fmt.Fprintf(&b, " | cache read %s written %s saved $%.4f", display.Short(float64(v.cacheRead)), display.Short(float64(v.cacheWrite)), v.cacheSaved)
	}
	return b.String()
}
