package batch

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func testBatchView() *batchView {
	return &batchView{elapsed: 72 * time.Second, eta: 288 * time.Second, requests: 10_000, done: 2_000, ok: 1_990, bad: 10,
		inFlight: 6_000, waiting: 2_000, cost: 0.0123, prices: "at batch prices", rate: 1666.7,
		creating: 1, running: 3, canceling: 1, ended: 2}
}

// The non-terminal line, golden: what a log or CI shows every ProgressEvery.
func TestBatchLineGolden(t *testing.T) {
	want := "status: 2000/10000 done (20.0%), 6000 in batches in flight, 2000 waiting; $0.0123 at batch prices; 1m12s (1667 results/min)"
	if got := testBatchView().line(); got != want {
		t.Errorf("line =\n%s\nwant\n%s", got, want)
	}
	v := testBatchView()
	v.rt, v.rtLeft, v.rtHanded, v.prices = true, 12, 40, "so far"
	if got := v.line(); !strings.HasSuffix(got, "$0.0123 so far; 1m12s (1667 results/min); realtime: 12 of 40 retries left") {
		t.Errorf("line with realtime retries = %s", got)
	}
	v.rtHanded, v.rtWarm, v.rtLeft = 0, 2, 2
	if got := v.line(); !strings.HasSuffix(got, "realtime: 2 of 2 warm calls left") {
		t.Errorf("line with warm calls = %s", got)
	}
	v.rtHanded = 40
	if got := v.line(); !strings.HasSuffix(got, "realtime: 2 of 42 retries and warm calls left") {
		t.Errorf("line with retries and warm calls = %s", got)
	}
}

// The terminal block: the run's total (bar, elapsed, ETA, cost) as its head,
// the batches by state and the requests in them as its body, each line within
// the width.
func TestBatchBlock(t *testing.T) {
	for _, width := range []int{80, 60} {
		head, body := testBatchView().block(width)
		for _, l := range append(head, body...) {
			if n := utf8.RuneCountInString(l); n > width {
				t.Errorf("width %d: line of %d columns: %q", width, n, l)
			}
		}
	}
	head, body := testBatchView().block(80)
	want := []string{
		"elapsed 1m12s  ETA 4m48s  $0.0123 at batch prices  1.7k results/min",
		"batches  3 running (1 canceling)  2 ended  1 being created",
		"requests 6,000 in batches  2,000 waiting",
	}
	if len(head) != 2 || !strings.HasPrefix(head[0], "[") || !strings.Contains(head[0], " 20.0%  2,000/10,000  ok 1,990  err 10") {
		t.Fatalf("head = %q", head)
	}
	if got := append(head[1:], body...); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("block =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	v := testBatchView()
	v.done, v.eta = v.requests, 0
	if head, _ := v.block(80); !strings.Contains(head[1], "  done  ") {
		t.Errorf("finished: %q, want done", head[1])
	}
	v = testBatchView()
	v.rate, v.eta = 0, 0
	if head, _ := v.block(80); !strings.Contains(head[1], "ETA …") {
		t.Errorf("no result yet: %q, want no ETA", head[1])
	}
}
