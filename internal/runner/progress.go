package runner

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// progress prints the live display: done/total, succeeded/errored, requests and
// tokens per minute against each limit, 429s and 529s, ETA and cost, once per period.
type progress struct {
	r       *run
	done    chan struct{} // closed when loop returns
	total   int64         // requests pending when the work started, plus those already done
	base    int64         // done when the work started
	samples []sample
}

type sample struct {
	at                  time.Time
	done, sent, in, out int64
}

func newProgress(r *run, pending int64) *progress {
	done := r.succeeded.Load() + r.errored.Load()
	return &progress{r: r, total: done + pending, base: done, done: make(chan struct{})}
}

// loop prints a line every period until ctx ends.
func (p *progress) loop(ctx context.Context, every time.Duration) {
	defer close(p.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fmt.Fprintln(p.r.cfg.Progress, p.line(time.Now()))
		}
	}
}

// final prints the last line, once loop has returned (its ctx must have ended).
func (p *progress) final() {
	<-p.done
	fmt.Fprintln(p.r.cfg.Progress, p.line(time.Now()))
}

// rateWindow is how far back the display's rates look.
const rateWindow = 10 * time.Second

func (p *progress) line(now time.Time) string {
	r := p.r
	ok, bad := r.succeeded.Load(), r.errored.Load()
	done := ok + bad
	s := sample{at: now, done: done, sent: r.sent.Load(), in: r.inTok.Load(), out: r.outTok.Load()}
	p.samples = append(p.samples, s)
	for len(p.samples) > 2 && now.Sub(p.samples[1].at) >= rateWindow {
		p.samples = p.samples[1:]
	}
	first := p.samples[0]
	perMin := func(a, b int64) float64 {
		dt := s.at.Sub(first.at).Minutes()
		if dt <= 0 {
			return 0
		}
		return float64(b-a) / dt
	}
	reqRate := perMin(first.sent, s.sent)
	doneRate := perMin(first.done, s.done)
	var b strings.Builder
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(done) / float64(p.total)
	}
	fmt.Fprintf(&b, "%s/%s (%.1f%%)  ok %s  err %s  |  %s req/min", commas(done), commas(p.total), pct, commas(ok), commas(bad), short(reqRate))
	if snap, err := r.lim.Snapshot(context.Background()); err == nil {
		for _, c := range snap.Classes {
			fmt.Fprintf(&b, "  [%s rpm %s  in %s/%s  out %s/%s tok/min",
				c.Class, short(float64(c.Requests.Limit)),
				short(perMin(first.in, s.in)), short(float64(c.InputTokens.Limit)),
				short(perMin(first.out, s.out)), short(float64(c.OutputTokens.Limit)))
			if c.Paused(now) {
				fmt.Fprintf(&b, "  paused %s", c.PausedUntil.Sub(now).Round(100*time.Millisecond))
			}
			b.WriteString("]")
		}
	}
	fmt.Fprintf(&b, "  |  429 %s  529 %s", commas(r.rateLimited.Load()), commas(r.overloaded.Load()))
	if left := p.total - done; left > 0 && doneRate > 0 {
		eta := time.Duration(float64(left) / doneRate * float64(time.Minute))
		fmt.Fprintf(&b, "  |  ETA %s", eta.Round(time.Second))
	}
	cost := r.usd.Spent().USD()
	fmt.Fprintf(&b, "  |  $%.4f (batch $%.4f)", cost, cost*r.cat.Pricing.Batch)
	return b.String()
}

// short formats n as 950, 12.3k or 4.5M.
func short(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", n/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.0fk", n/1e3)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", n/1e3)
	default:
		return fmt.Sprintf("%.0f", n)
	}
}

// commas formats n as 12,345.
func commas(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 || len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	b.WriteString(s[:pre])
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}
