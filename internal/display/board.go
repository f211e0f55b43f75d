package display

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// Board shares one screen between the parts of a command that each draw their own
// progress (a hybrid run's realtime workers and batches). Each part is a Screen
// and an io.Writer, so it can be given where a progress writer is expected (New
// returns it as is). On a terminal the parts' last blocks are drawn together, in
// the order of the parts, as one block; elsewhere each part prints its own lines.
type Board struct {
	mu            sync.Mutex
	screen        Screen
	heads, bodies [][]string // each part's last block (DrawHead)
}

// NewBoard returns a Board of n parts on w's Screen (New(w)).
func NewBoard(w io.Writer, n int) *Board {
	return &Board{screen: New(w), heads: make([][]string, n), bodies: make([][]string, n)}
}

// Part is the part i of the board, 0 ≤ i < n: its block is drawn below those of
// the parts before it.
func (b *Board) Part(i int) *Part { return &Part{b: b, i: i} }

// Part is one part of a Board. Write prints each complete line written to it
// above the board's block (Say), so events written with fmt.Fprintf keep clear
// of the redrawn block.
type Part struct {
	b       *Board
	i       int
	partial []byte // a line written without its newline yet
}

func (p *Part) Live() bool { return p.b.screen.Live() }
func (p *Part) Width() int { return p.b.screen.Width() }

// Draw replaces this part's block and draws the board's (a terminal), or prints
// line (anywhere else). The whole block counts as the part's head (DrawHead).
func (p *Part) Draw(block []string, line string) { p.DrawHead(block, nil, line) }

// DrawHead is Draw for a block in two pieces: head, the run's total (a bar,
// elapsed, cost), and body, this part's own rows. The board shows one head, the
// first part's that has one, so parts that each count the whole run show one
// total: a hybrid run's realtime block, once it draws, stands above the batches'
// rows without their head.
func (p *Part) DrawHead(head, body []string, line string) {
	b := p.b
	b.mu.Lock()
	defer b.mu.Unlock()
	b.heads[p.i] = append([]string(nil), head...)
	b.bodies[p.i] = append([]string(nil), body...)
	var all []string
	headed := false
	for i := range b.heads {
		if len(b.heads[i]) > 0 && !headed {
			all, headed = append(all, b.heads[i]...), true
		}
		all = append(all, b.bodies[i]...)
	}
	b.screen.Draw(all, line)
}

// Say prints msg above the board's block.
func (p *Part) Say(msg string) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	p.b.screen.Say(msg)
}

// Close leaves the board's last block on the screen.
func (p *Part) Close() {}

// Write says each complete line of data; it never fails.
func (p *Part) Write(data []byte) (int, error) {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	p.partial = append(p.partial, data...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		p.b.screen.Say(strings.TrimSuffix(string(p.partial[:i]), "\r"))
		p.partial = p.partial[i+1:]
	}
	return len(data), nil
}
