// Package display draws a long command's live progress. On a terminal it redraws
// one block of lines in place, each cut to the terminal's width; anywhere else (a
// pipe, a log file, CI) it prints one plain line per period, so logs stay
// readable. Runs, batches and hybrid runs compose their own lines; this package
// only decides how they reach the screen.
//
// It uses golang.org/x/term for the two things it needs (is this a terminal, how
// wide is it) and plain ANSI sequences to redraw: a progress library (mpb, say)
// would bring its own bars and layout, and the layouts here are rows of text
// with their own meaning (the binding limit marked), not bars.
package display

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/term"
)

// DefaultWidth is the width assumed when a terminal does not say.
const DefaultWidth = 80

// Screen shows a command's progress.
type Screen interface {
	// Live reports whether the screen redraws in place (a terminal).
	Live() bool
	// Width is how many columns a line may use.
	Width() int
	// Draw shows block, replacing the block drawn before (a terminal), or prints
	// line (anywhere else).
	Draw(block []string, line string)
	// Say prints a message above the block (an event: a signal, a batch created);
	// on a terminal the block is drawn again below it at once.
	Say(msg string)
	// Close leaves the last block on the screen.
	Close()
}

// New returns the Screen for w: w itself when it is one (a Part of a Board, so
// a command's parts share a screen), live when w is a terminal (an *os.File
// whose descriptor is one), plain otherwise.
func New(w io.Writer) Screen {
	if s, ok := w.(Screen); ok {
		return s
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		width, _, err := term.GetSize(int(f.Fd()))
		if err != nil || width <= 0 {
			width = DefaultWidth
		}
		return &live{w: w, width: width, fd: int(f.Fd())}
	}
	return &plain{w: w}
}

// plain prints each line as it is given.
type plain struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *plain) Live() bool   { return false }
func (p *plain) Width() int   { return 0 }
func (p *plain) Close()       {}
func (p *plain) Say(m string) { p.print(m) }
func (p *plain) Draw(_ []string, line string) {
	if line != "" {
		p.print(line)
	}
}

func (p *plain) print(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, s)
}

// live redraws a block in place with ANSI sequences.
type live struct {
	mu    sync.Mutex
	w     io.Writer
	fd    int
	width int
	drawn int      // lines of the block on the screen, below the cursor's line
	last  []string // the block drawn last, cut to width
}

func (l *live) Live() bool { return true }

func (l *live) Width() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.width
}

func (l *live) Draw(block []string, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, _, err := term.GetSize(l.fd); err == nil && w > 0 {
		l.width = w // the terminal was resized
	}
	l.last = l.last[:0]
	for _, line := range block {
		l.last = append(l.last, Cut(line, l.width))
	}
	var b strings.Builder
	l.erase(&b)
	l.put(&b)
	io.WriteString(l.w, b.String())
}

// put writes the last block.
func (l *live) put(b *strings.Builder) {
	for _, line := range l.last {
		b.WriteString(line)
		b.WriteString("\x1b[K\n")
	}
	l.drawn = len(l.last)
}

func (l *live) Say(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	l.erase(&b)
	b.WriteString(msg)
	b.WriteString("\n")
	l.put(&b)
	io.WriteString(l.w, b.String())
}

// erase moves the cursor up over the block drawn before and clears it.
func (l *live) erase(b *strings.Builder) {
	if l.drawn > 0 {
		fmt.Fprintf(b, "\x1b[%dA\r\x1b[J", l.drawn)
	}
}

func (l *live) Close() {}

// Cut shortens s to at most width columns (runes; the display's lines hold no
// wide characters), ending in "…" when cut. width <= 0 keeps s.
func Cut(s string, width int) string {
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}

// Bar is a bar of width cells, filled for fraction (0 to 1).
func Bar(fraction float64, width int) string {
	fraction = min(max(fraction, 0), 1)
	full := int(fraction*float64(width) + 0.5)
	return strings.Repeat("█", full) + strings.Repeat("░", width-full)
}
