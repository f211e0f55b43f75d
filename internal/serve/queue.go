package serve

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// fairQueue orders the calls of one model class that wait for admission, so that
// teams share the class in proportion to their weights however many calls each
// sends. It is self-clocked fair queueing over per-team FIFO queues: a call is
// tagged, when it joins, with a virtual finish time, its team's last tag (or the
// queue's virtual time, if later) plus its cost ÷ the team's weight, where the cost is
// its estimated input plus reserved output tokens; the call with the smallest tag goes
// next, and the virtual time becomes its tag. A team that was idle joins at the
// current virtual time: it cannot save up a burst, and it waits behind at most one
// call of each other team, however long their queues are. (Deficit round robin gives
// the same shares but, with a quantum of many small calls, serves a flood in runs.)
//
// Only one call of a class at a time waits in the limiter (the one holding the
// baton); when it is admitted, or gives up, the baton passes to the next call. So the
// limiter's own FIFO never sees the flood.
type fairQueue struct {
	mu    sync.Mutex
	busy  bool // a call holds the baton
	teams []*teamQueue
	vtime float64 // tag of the last call served
	seq   uint64  // ties between equal tags go in arrival order
	depth int     // calls waiting, all teams
}

type teamQueue struct {
	team *Team
	q    list.List // of *ticket
	last float64   // tag of the team's last call to join
}

type ticket struct {
	tq    *teamQueue
	tag   float64
	seq   uint64
	ready chan struct{} // closed when the ticket gets the baton
	elem  *list.Element
}

func newFairQueue() *fairQueue { return &fairQueue{} }

// acquire waits until the caller may go to the limiter, and returns the function
// that passes the baton on; call it exactly once, when the limiter has answered. It
// returns ctx's error if ctx ends first. onQueue, if not nil, is called (under no
// lock) with +1 when the call starts waiting and -1 when it stops.
func (f *fairQueue) acquire(ctx context.Context, team *Team, cost int64, onQueue func(delta int)) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	if !f.busy {
		// Nobody waits (the baton is free only with an empty queue).
		f.busy = true
		f.mu.Unlock()
		return f.release, nil
	}
	var tq *teamQueue
	for _, q := range f.teams {
		if q.team.Name == team.Name {
			tq = q
			break
		}
	}
	if tq == nil {
		tq = &teamQueue{team: team}
		f.teams = append(f.teams, tq)
	}
	if tq.q.Len() == 0 {
		tq.last = max(tq.last, f.vtime)
	}
	tq.last += float64(max(cost, 1)) / float64(max(team.Weight, 1))
	f.seq++
	t := &ticket{tq: tq, tag: tq.last, seq: f.seq, ready: make(chan struct{})}
	t.elem = tq.q.PushBack(t)
	f.depth++
	f.mu.Unlock()
	if onQueue != nil {
		onQueue(1)
		defer onQueue(-1)
	}
	select {
	case <-t.ready:
		return f.release, nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	select {
	case <-t.ready:
		// Handed the baton as ctx ended: pass it on.
		f.mu.Unlock()
		f.release()
		return nil, ctx.Err()
	default:
	}
	tq.q.Remove(t.elem)
	f.depth--
	f.mu.Unlock()
	return nil, ctx.Err()
}

// release passes the baton to the waiting call with the smallest tag, or frees it.
func (f *fairQueue) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	var next *ticket
	for _, tq := range f.teams {
		if tq.q.Len() == 0 {
			continue
		}
		t := tq.q.Front().Value.(*ticket)
		if next == nil || t.tag < next.tag || t.tag == next.tag && t.seq < next.seq {
			next = t
		}
	}
	if next == nil {
		f.busy = false
		return
	}
	next.tq.q.Remove(next.elem)
	f.depth--
	f.vtime = next.tag
	close(next.ready)
}

// depths adds the number of waiting calls per team to into.
func (f *fairQueue) depths(into map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tq := range f.teams {
		into[tq.team.Name] += tq.q.Len()
	}
}

// rateWindow counts what passed in the last minute, in one-second slots.
type rateWindow struct {
	mu    sync.Mutex
	slots [60]rateSlot
}

type rateSlot struct {
	sec          int64
	req, in, out int64
	throttled    int64 // upstream 429s
	overloaded   int64 // upstream 529s
}

func (w *rateWindow) add(now time.Time, f func(*rateSlot)) {
	sec := now.Unix()
	w.mu.Lock()
	s := &w.slots[sec%60]
	if s.sec != sec {
		*s = rateSlot{sec: sec}
	}
	f(s)
	w.mu.Unlock()
}

// sum returns the totals of the 60 seconds up to now.
func (w *rateWindow) sum(now time.Time) rateSlot {
	sec := now.Unix()
	var t rateSlot
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.slots {
		if s.sec > sec-60 && s.sec <= sec {
			t.req += s.req
			t.in += s.in
			t.out += s.out
			t.throttled += s.throttled
			t.overloaded += s.overloaded
		}
	}
	return t
}
