package serve

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/clade-dev/clade/admit"
)

// fairQueue orders the calls of one model class that wait for admission, so that
// teams share the class in proportion to their weights however many calls each
// sends, capped teams keep to their caps while others wait, and within a team higher
// priority goes first.
//
// Between teams it is self-clocked fair queueing: each team's next call is tagged with
// a virtual finish time, the tag of the team's last call served (or the queue's
// virtual time, if later, when the team starts waiting) plus the call's cost ÷ the
// team's weight, where the cost is its estimated input plus reserved output tokens;
// the team whose next call has the smallest tag goes, and the virtual time becomes
// that tag. A team that was idle joins at the current virtual time: it cannot save
// up a burst, and it waits behind at most one call of each other team, however long
// their queues are. (Deficit round robin gives the same shares but, with a quantum of
// many small calls, serves a flood in runs.)
//
// Within a team, the next call is the one of highest effective priority: its
// priority plus one level per aging of waiting (ties in arrival order). Priority
// orders a team's own calls and never moves one team ahead of another: the header
// that sets it is the client's to choose, and shares between teams are the
// operator's (weights, caps).
//
// A team with a cap (Team.Cap) has, per class, three buckets of the limiter's shape
// at cap × each limit: refilling at cap × RPM, ITPM and OTPM, holding cap × the
// limiter's capacity. Each call of the team admitted takes its cost from them. While
// a team whose buckets cannot cover its next call waits alongside a team under its
// cap (or with no cap), it is skipped; when every waiting team is over its cap, the
// smallest tag goes anyway (borrowing: no capacity is left unused), and what it
// borrowed is not paid back (its buckets stop at empty).
//
// Only one call of a class at a time waits in the limiter (the one holding the
// baton); when it is admitted, or gives up, the baton passes to the next call. So the
// limiter's own FIFO never sees the flood.
type fairQueue struct {
	now    func() time.Time
	aging  time.Duration // a waiting call gains a priority level per aging
	limits *classLimits  // the class's limits, for the caps; nil without caps
	shared *orderClass   // the order across gateways; nil: this gateway's own

	mu    sync.Mutex
	busy  bool // a call holds the baton
	teams []*teamQueue
	vtime float64 // tag of the last call served
	seq   uint64  // ties go in arrival order
	depth int     // calls waiting, all teams
}

type teamQueue struct {
	team   *Team
	levels [MaxPriority + 1]list.List // of *ticket, by priority, each in arrival order
	n      int                        // calls waiting
	finish float64                    // tag of the team's last call served
	quota  quota                      // its cap's buckets in this class
	served rateWindow                 // admitted in the last minute (reserved amounts)
	// borrowed counts the calls admitted over the team's cap (no team under its cap
	// waited).
	borrowed int64
}

type ticket struct {
	f      *fairQueue
	tq     *teamQueue
	prio   int
	need   admit.Need
	joined time.Time
	seq    uint64
	tag    float64
	ready  chan struct{} // closed when the ticket gets the baton
	elem   *list.Element
	turn   *turn // its place in the shared order, while it holds the baton
	// backlogged: another call of the team was waiting when this one joined.
	backlogged bool
}

func newFairQueue() *fairQueue {
	return &fairQueue{now: time.Now, aging: DefaultPriorityAging}
}

// acquire waits until the caller may go to the limiter, and returns the function
// that passes the baton on; call it exactly once, when the limiter has answered,
// saying whether the call was admitted (it then counts against the team's cap). It
// returns ctx's error if ctx ends first. onQueue, if not nil, is called (under no
// lock) with +1 when the call starts waiting and -1 when it stops.
func (f *fairQueue) acquire(ctx context.Context, team *Team, prio int, need admit.Need, onQueue func(delta int)) (func(admitted bool), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	prio = min(max(prio, 0), MaxPriority)
	if f.limits != nil && team.Cap > 0 {
		f.limits.refresh(ctx, f.now())
	}
	f.mu.Lock()
	tq := f.team(team)
	t := &ticket{f: f, tq: tq, prio: prio, need: need}
	if !f.busy {
		// Nobody waits (the baton is free only with an empty queue).
		f.busy = true
		f.mu.Unlock()
		return t.release, nil
	}
	if tq.n == 0 {
		tq.finish = max(tq.finish, f.vtime)
	}
	t.backlogged = tq.n > 0
	f.seq++
	t.seq, t.joined, t.ready = f.seq, f.now(), make(chan struct{})
	t.elem = tq.levels[prio].PushBack(t)
	tq.n++
	f.depth++
	f.mu.Unlock()
	if onQueue != nil {
		onQueue(1)
		defer onQueue(-1)
	}
	select {
	case <-t.ready:
		if f.shared != nil {
			// The baton is this gateway's; across gateways, wait for the call's turn.
			tr, err := f.shared.wait(ctx, team.Name, float64(max(need.InputTokens+need.OutputTokens, 1))/float64(max(team.Weight, 1)), t.backlogged)
			if err != nil {
				t.release(false)
				return nil, err
			}
			t.turn = tr
		}
		return t.release, nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	select {
	case <-t.ready:
		// Handed the baton as ctx ended: pass it on.
		f.mu.Unlock()
		t.release(false)
		return nil, ctx.Err()
	default:
	}
	tq.levels[prio].Remove(t.elem)
	tq.n--
	f.depth--
	f.mu.Unlock()
	return nil, ctx.Err()
}

// team returns team's queue, creating it. f.mu is held.
func (f *fairQueue) team(team *Team) *teamQueue {
	for _, q := range f.teams {
		if q.team.Name == team.Name {
			return q
		}
	}
	q := &teamQueue{team: team}
	f.teams = append(f.teams, q)
	return q
}

// release counts t against its team's cap if it was admitted, and passes the baton
// on.
func (t *ticket) release(admitted bool) {
	f := t.f
	t.turn.end(admitted)
	if admitted && f.limits != nil && t.tq.team.Cap > 0 {
		// The limits are read from the limiter once it has the class, which is by the
		// first call's admission; with Redis, a round trip every limitsRefresh.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		f.limits.refresh(ctx, f.now())
		cancel()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if admitted {
		tq := t.tq
		tq.served.add(now, func(s *rateSlot) {
			s.req++
			s.in += t.need.InputTokens
			s.out += t.need.OutputTokens
		})
		if tq.team.Cap > 0 {
			if lim, ok := f.limits.get(); ok {
				if !tq.quota.take(now, tq.team.Cap, lim, cost(t.need)) {
					tq.borrowed++
				}
			}
		}
	}
	f.next(now)
}

// next passes the baton to the next call (see fairQueue), or frees it. f.mu is held.
func (f *fairQueue) next(now time.Time) {
	lim, capped := f.limits.get()
	var next, any *ticket
	for _, tq := range f.teams {
		if tq.n == 0 {
			continue
		}
		t := tq.head(now, f.aging)
		t.tag = tq.finish + float64(max(t.need.InputTokens+t.need.OutputTokens, 1))/float64(max(tq.team.Weight, 1))
		if any == nil || t.before(any) {
			any = t
		}
		under := tq.team.Cap <= 0 || !capped || tq.quota.fits(now, tq.team.Cap, lim, cost(t.need))
		if under && (next == nil || t.before(next)) {
			next = t
		}
	}
	if next == nil {
		next = any // every waiting team is over its cap: borrow
	}
	if next == nil {
		f.busy = false
		return
	}
	tq := next.tq
	tq.levels[next.prio].Remove(next.elem)
	tq.n--
	f.depth--
	tq.finish = next.tag
	f.vtime = next.tag
	close(next.ready)
}

// head returns the team's waiting call of highest effective priority: its priority
// plus one level per aging it has waited; ties in arrival order. tq.n > 0.
func (tq *teamQueue) head(now time.Time, aging time.Duration) *ticket {
	var best *ticket
	var bestEff float64
	for p := range tq.levels {
		e := tq.levels[p].Front()
		if e == nil {
			continue
		}
		t := e.Value.(*ticket)
		eff := float64(p) + float64(now.Sub(t.joined))/float64(aging)
		if best == nil || eff > bestEff || eff == bestEff && t.seq < best.seq {
			best, bestEff = t, eff
		}
	}
	return best
}

func (t *ticket) before(u *ticket) bool {
	return t.tag < u.tag || t.tag == u.tag && t.seq < u.seq
}

// depths adds the number of waiting calls per team to into.
func (f *fairQueue) depths(into map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, tq := range f.teams {
		into[tq.team.Name] += tq.n
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
