package display

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// redraw is the sequence that moves the cursor up over a block and clears it.
var redraw = regexp.MustCompile(`\x1b\[\d+A\r\x1b\[J`)

// frames splits what a live screen wrote into what it showed after each write:
// the lines of each block (ending in erase-line) and the other lines.
func frames(out string) [][]string {
	var fs [][]string
	for _, c := range redraw.Split(out, -1) {
		var f []string
		for _, l := range strings.Split(strings.TrimSuffix(c, "\n"), "\n") {
			if l != "" {
				f = append(f, strings.TrimSuffix(l, "\x1b[K"))
			}
		}
		fs = append(fs, f)
	}
	return fs
}

// testLive is a live screen on a buffer (fd -1: GetSize fails, width stays).
func testLive(width int) (*live, *bytes.Buffer) {
	var b bytes.Buffer
	return &live{w: &b, fd: -1, width: width}, &b
}

// TestLiveRedrawsInPlace: each Draw moves up over the block before; lines are
// cut to the width; a message said meanwhile goes above, the block below it.
func TestLiveRedrawsInPlace(t *testing.T) {
	l, out := testLive(20)
	l.Draw([]string{"one", "two"}, "")
	l.Draw([]string{"three is longer than twenty", "four"}, "")
	l.Say("an event")
	got := frames(out.String())
	want := [][]string{{"one", "two"}, {"three is longer tha…", "four"}, {"an event", "three is longer tha…", "four"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("frames = %q, want %q", got, want)
	}
	if n := strings.Count(out.String(), "\x1b[2A"); n != 2 {
		t.Errorf("%d moves up over the 2-line block, want 2 (one per redraw)", n)
	}
}

// TestBoardOneHead: a board draws its parts' blocks as one, in the parts'
// order, with one head (the first part's that has one); lines written to a part
// are said above; anywhere else each part prints its own line.
func TestBoardOneHead(t *testing.T) {
	l, out := testLive(80)
	b := &Board{screen: l, heads: make([][]string, 2), bodies: make([][]string, 2)}
	rt, bt := b.Part(0), b.Part(1)
	bt.DrawHead([]string{"[batch total]"}, []string{"batches 3 running"}, "")
	rt.Draw([]string{"[realtime total]", "haiku row"}, "")
	fmt.Fprintf(bt, "batch 1 ")
	fmt.Fprintf(bt, "created\nbatch 2 created\n")
	got := frames(out.String())
	want := [][]string{
		{"[batch total]", "batches 3 running"},
		{"[realtime total]", "haiku row", "batches 3 running"},
		{"batch 1 created", "[realtime total]", "haiku row", "batches 3 running"},
		{"batch 2 created", "[realtime total]", "haiku row", "batches 3 running"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("frames =\n%q\nwant\n%q", got, want)
	}
	if s := New(bt); s != Screen(bt) {
		t.Errorf("New(part) = %v, want the part itself", s)
	}

	var plainOut bytes.Buffer
	pb := NewBoard(&plainOut, 2)
	pb.Part(1).DrawHead([]string{"head"}, []string{"body"}, "batch line")
	pb.Part(0).Draw([]string{"block"}, "realtime line")
	fmt.Fprintln(pb.Part(1), "event")
	if got, want := plainOut.String(), "batch line\nrealtime line\nevent\n"; got != want {
		t.Errorf("plain board printed %q, want %q", got, want)
	}
}

// TestTotalFits: the total line keeps to the width (a bar of 10 to 40 cells)
// and says 100 % of an empty run.
func TestTotalFits(t *testing.T) {
	for _, tc := range []struct {
		width              int
		done, total, ok, n int64
	}{
		{width: 80, done: 1234, total: 3000, ok: 1230, n: 4},
		{width: 60, done: 9_999_999, total: 10_000_000, ok: 9_999_000, n: 999},
		{width: 0, done: 0, total: 0},
	} {
		got := Total(tc.width, tc.done, tc.total, tc.ok, tc.n)
		if w := max(tc.width, DefaultWidth*(1-min(tc.width, 1))); utf8.RuneCountInString(got) > w {
			t.Errorf("Total(%d, ...) = %q: %d columns, want at most %d", tc.width, got, utf8.RuneCountInString(got), w)
		}
	}
	if got := Total(80, 0, 0, 0, 0); !strings.Contains(got, "100.0%  0/0") {
		t.Errorf("Total of an empty run = %q, want 100.0%%", got)
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Count(0), "0"}, {Count(999), "999"}, {Count(1000), "1,000"}, {Count(12345678), "12,345,678"}, {Count(-5), "-5"},
		{Round(12 * time.Second), "12s"}, {Round(184 * time.Second), "3m04s"}, {Round(62 * time.Minute), "1h02m"},
		{Short(950), "950"}, {Short(1234), "1.2k"}, {Short(40_000), "40k"}, {Short(4_500_000), "4.5M"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
