// Package roundtrip shares one round trip (to a store, to Redis) between the
// callers that need the same one at once: while a round trip for a key is in
// flight, the calls that arrive for the key join the next, which the first of
// them performs for all of them with their inputs merged, once the previous one
// has finished. A round trip is joined only before it starts, so what each caller
// gets back is at least as recent as its call.
package roundtrip

import (
	"sync"
	"time"
)

// Group shares round trips by key K, with inputs and results of type V. Its
// zero value is ready to use.
type Group[K comparable, V any] struct {
	// Linger is how long a round's opener waits for others to join once the
	// previous round of its key has finished, when that round was shared (more
	// than one caller: the key is busy); a caller alone, as one calling in
	// sequence is, starts at once. 0: every round starts at once.
	Linger time.Duration
	// Always makes every round's opener linger, alone or not: for callers off
	// any path someone waits on (a gateway's settles, made once the answer has
	// gone), which then share round trips at rates where they would not queue
	// (a few hundred a second against a round trip of a fraction of a
	// millisecond) instead of making one each.
	Always bool

	mu      sync.Mutex
	pending map[K]*round[V] // not started yet, open to join
	running map[K]*sync.Mutex
	shared  map[K]bool // whether the key's last round had more than one caller
}

// round is one shared round trip: in its merged input, out its result.
type round[V any] struct {
	in   V
	n    int // callers
	done chan struct{}
	out  V
	err  error
}

// Do joins or opens the pending round of k, merges in into its input with merge,
// and returns the round's result once it ran: run is performed by the round's
// opener, with the merged input, after the previous round of k finished.
func (g *Group[K, V]) Do(k K, in V, merge func(a, b V) V, run func(V) (V, error)) (V, error) {
	g.mu.Lock()
	if g.pending == nil {
		g.pending, g.running, g.shared = map[K]*round[V]{}, map[K]*sync.Mutex{}, map[K]bool{}
	}
	if r := g.pending[k]; r != nil {
		r.in = merge(r.in, in)
		r.n++
		g.mu.Unlock()
		<-r.done
		return r.out, r.err
	}
	r := &round[V]{in: in, n: 1, done: make(chan struct{})}
	g.pending[k] = r
	lock := g.running[k]
	if lock == nil {
		lock = &sync.Mutex{}
		g.running[k] = lock
	}
	g.mu.Unlock()
	lock.Lock() // the previous round of k ends; calls arriving meanwhile join r
	g.mu.Lock()
	busy := g.shared[k]
	g.mu.Unlock()
	if g.Linger > 0 && (busy || g.Always) {
		time.Sleep(g.Linger)
	}
	g.mu.Lock()
	delete(g.pending, k) // r starts: later calls open the next round
	in = r.in
	g.shared[k] = r.n > 1
	g.mu.Unlock()
	r.out, r.err = run(in)
	lock.Unlock()
	close(r.done)
	return r.out, r.err
}
