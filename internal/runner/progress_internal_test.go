package runner

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func testView() view {
	return view{
		elapsed: 72 * time.Second, done: 1234, total: 3000, ok: 1230, bad: 4, rateLimited: 0, over: 2,
		cost: 0.0123, batchCost: 0.00615, eta: 100 * time.Second,
		classes: []classView{
			{name: "haiku", rate: [3]float64{950, 40_000, 9_800}, limit: [3]float64{1000, 50_000, 10_000}},
			{name: "sonnet", rate: [3]float64{12, 30_000, 400}, limit: [3]float64{1000, 40_000, 8_000}, paused: 2100 * time.Millisecond},
		},
	}
}

// The non-terminal line, golden: what a log or CI shows every period.
func TestProgressLineGolden(t *testing.T) {
	got := testView().line()
	want := "1,234/3,000 (41.1%) ok 1,230 err 4 | 1m12s | haiku req 950/1.0k in 40k/50k out 9.8k/10k | sonnet req 12/1.0k in 30k/40k out 400/8.0k | 429 0 529 2 | ETA 1m40s | $0.0123"
	if got != want {
		t.Errorf("line =\n%s\nwant\n%s", got, want)
	}
	w := testView()
	w.warming = true
	if got := w.line(); !strings.Contains(got, "| haiku burst | sonnet burst |") || strings.Contains(got, "950") {
		t.Errorf("warming line = %s: want the burst named, not a rate", got)
	}
}

// The terminal block fits the width, marks each class's binding limit, and
// names the opening burst instead of showing its rates.
func TestProgressBlock(t *testing.T) {
	for _, width := range []int{80, 60, 120} {
		for _, l := range testView().block(width) {
			if n := utf8.RuneCountInString(l); n > width && width >= 80 {
				t.Errorf("width %d: line of %d columns: %q", width, n, l)
			}
		}
	}
	b := testView().block(80)
	if len(b) != 4 {
		t.Fatalf("block has %d lines, want 4 (bar, totals, two classes):\n%s", len(b), strings.Join(b, "\n"))
	}
	if !strings.HasPrefix(b[0], "[") || !strings.Contains(b[0], " 41.1%  1,234/3,000  ok 1,230  err 4") {
		t.Errorf("bar line = %q", b[0])
	}
	if !strings.Contains(b[1], "elapsed 1m12s  ETA 1m40s  $0.0123") {
		t.Errorf("totals line = %q", b[1])
	}
	if !strings.Contains(b[2], "out 9.8k/10k*") || strings.Count(b[2], "*") != 1 {
		t.Errorf("haiku row = %q: want its output limit (98%%) marked, alone", b[2])
	}
	if !strings.Contains(b[3], "in 30k/40k*") || !strings.Contains(b[3], "paused 2.1s") {
		t.Errorf("sonnet row = %q: want its input limit marked and the pause shown", b[3])
	}
	w := testView()
	w.warming, w.eta = true, 0
	for _, l := range w.block(80)[2:] {
		if !strings.Contains(l, "req burst/1.0k") || strings.Contains(l, "*") {
			t.Errorf("warming row = %q: want burst, no binding mark", l)
		}
	}
	if !strings.Contains(w.block(80)[1], "ETA …") {
		t.Errorf("warming totals = %q: want no ETA yet", w.block(80)[1])
	}
}

// TestLeftAtLimits: the least time the rest of a run takes is its class's binding
// limit: 100 requests left at 50 requests/min is 2 min, whatever rate the opening
// burst showed; with 1,000 input tokens each against 25,000 ITPM it is 4 min.
func TestLeftAtLimits(t *testing.T) {
	c := counts{sent: 20, in: 20 * 100, out: 20 * 10}
	if got := leftAtLimits(100, c, 20, [3]float64{50, 1e6, 1e6}); got != 2 {
		t.Errorf("RPM-bound: %v min, want 2", got)
	}
	c.in = 20 * 1000
	if got := leftAtLimits(100, c, 20, [3]float64{50, 25000, 1e6}); got != 4 {
		t.Errorf("ITPM-bound: %v min, want 4", got)
	}
	// Half the requests so far were another class's: this class gets half the rest.
	if got := leftAtLimits(100, c, 40, [3]float64{50, 25000, 1e6}); got != 2 {
		t.Errorf("half the traffic: %v min, want 2", got)
	}
	if got := leftAtLimits(100, counts{}, 40, [3]float64{50, 1, 1}); got != 0 {
		t.Errorf("a class that sent nothing: %v, want 0", got)
	}
}
