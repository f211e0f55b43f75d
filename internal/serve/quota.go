package serve

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clade-dev/clade/admit"
)

// limitsRefresh is how often a class's limits are read again from the limiter for the
// caps (they change in --tier auto, and with the API's headers).
const limitsRefresh = 5 * time.Second

// dims is an amount in each of a class's three limits: requests, input tokens,
// output tokens.
type dims [3]float64

func cost(n admit.Need) dims {
	return dims{1, float64(n.InputTokens), float64(n.OutputTokens)}
}

// classLimits holds one class's limits per minute and the limiter's bucket
// capacities, as last read from the limiter.
type classLimits struct {
	fetch func(ctx context.Context) (limit, capacity dims, ok bool)

	mu         sync.Mutex
	at         time.Time // last read (or attempt)
	reading    bool
	ok         bool
	limit, cap dims
}

// refresh reads the limits again if they are older than limitsRefresh and no other
// call is reading them. It is called with no queue lock held: with Redis-shared
// limits it is a round trip, every limitsRefresh at most.
func (l *classLimits) refresh(ctx context.Context, now time.Time) {
	l.mu.Lock()
	if l.reading || l.ok && now.Sub(l.at) < limitsRefresh || !l.ok && now.Sub(l.at) < time.Second {
		l.mu.Unlock()
		return
	}
	l.reading = true
	l.mu.Unlock()
	limit, capacity, ok := l.fetch(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reading, l.at = false, now
	if ok {
		l.ok, l.limit, l.cap = true, limit, capacity
	}
}

// get returns the limits, ok false before they were first read (caps are then not
// enforced) or when l is nil.
func (l *classLimits) get() (classLimit, bool) {
	if l == nil {
		return classLimit{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return classLimit{limit: l.limit, cap: l.cap}, l.ok
}

type classLimit struct{ limit, cap dims }

// quota is a capped team's three buckets in one class: each refills at cap × the
// limit per minute and holds cap × the limiter's capacity. A new quota is full.
type quota struct {
	started bool
	at      time.Time
	level   dims
}

// fill brings q's levels to now.
func (q *quota) fill(now time.Time, share float64, l classLimit) {
	if !q.started {
		q.started, q.at = true, now
		for d := range q.level {
			q.level[d] = share * l.cap[d]
		}
		return
	}
	dt := now.Sub(q.at).Minutes()
	if dt <= 0 {
		return
	}
	q.at = now
	for d := range q.level {
		q.level[d] = min(q.level[d]+dt*share*l.limit[d], share*l.cap[d])
	}
}

// fits reports whether the buckets cover c, or are full where c is more than they
// hold.
func (q *quota) fits(now time.Time, share float64, l classLimit, c dims) bool {
	q.fill(now, share, l)
	for d := range q.level {
		if q.level[d] < min(c[d], share*l.cap[d]) {
			return false
		}
	}
	return true
}

// take charges c, and reports whether it fitted. A call that fitted may leave a
// bucket negative (a call larger than the bucket); one that borrowed (went over the
// cap while no team under its cap waited) empties the buckets but adds no debt.
func (q *quota) take(now time.Time, share float64, l classLimit, c dims) bool {
	fit := q.fits(now, share, l, c)
	for d := range q.level {
		old := q.level[d]
		q.level[d] -= c[d]
		if !fit {
			q.level[d] = max(q.level[d], min(old, 0))
		}
	}
	return fit
}

// newFairQueue returns the fair queue of class, with the gateway's clock, priority
// aging, the shared order if configured and, when a team has a cap, the class's limits read from the limiter.
func (g *Gateway) newFairQueue(class string) *fairQueue {
	f := newFairQueue()
	f.now, f.aging = g.now, g.cfg.Keys.PriorityAging()
	f.shared = g.cfg.Order.class(class)
	if g.cfg.Keys.HasCaps() {
		f.limits = &classLimits{fetch: func(ctx context.Context) (limit, capacity dims, ok bool) {
			s, _ := g.lim.Snapshot(ctx)
			for _, c := range s.Classes {
				if c.Class != class {
					continue
				}
				b := [3]admit.BucketState{c.Requests, c.InputTokens, c.OutputTokens}
				for d := range b {
					if b[d].Limit <= 0 || b[d].Capacity <= 0 {
						return limit, capacity, false
					}
					limit[d], capacity[d] = float64(b[d].Limit), b[d].Capacity
				}
				return limit, capacity, true
			}
			return limit, capacity, false
		}}
	}
	return f
}

// TeamShare is what one team was admitted in one model class by this gateway over
// the last minute, for the dashboard: reserved amounts (estimated input, expected
// output) of the calls admitted, their share of the class's, and the team's cap.
type TeamShare struct {
	Class, Team string
	Weight      int
	// Cap is the team's cap (0: none); CapRPM, CapITPM, CapOTPM what it allows per
	// minute at the limits last read (0 while they are not known).
	Cap                      float64
	CapRPM, CapITPM, CapOTPM float64
	// Requests, InputTokens, OutputTokens were admitted in the last 60 s.
	Requests, InputTokens, OutputTokens int64
	// Share is the team's part of the class's admitted requests and tokens in the
	// last 60 s, the largest of the three, in [0, 1].
	Share float64
	// Borrowed counts the calls admitted over the cap since the gateway started,
	// because no team under its cap waited.
	Borrowed int64
	// Waiting is the team's calls waiting in the class now.
	Waiting int
}

// TeamShares returns, for each model class used so far and each team that sent calls
// of it, what the team was admitted in the last minute (by class, then team).
func (g *Gateway) TeamShares() []TeamShare {
	g.mu.Lock()
	classes := make([]string, 0, len(g.queues))
	for c := range g.queues {
		classes = append(classes, c)
	}
	queues := make(map[string]*fairQueue, len(g.queues))
	for c, q := range g.queues {
		queues[c] = q
	}
	g.mu.Unlock()
	slices.Sort(classes)
	now := g.now()
	var out []TeamShare
	for _, c := range classes {
		out = append(out, queues[c].shares(c, now)...)
	}
	return out
}

func (f *fairQueue) shares(class string, now time.Time) []TeamShare {
	lim, known := f.limits.get()
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]TeamShare, 0, len(f.teams))
	var total rateSlot
	for _, tq := range f.teams {
		s := tq.served.sum(now)
		total.req += s.req
		total.in += s.in
		total.out += s.out
		ts := TeamShare{Class: class, Team: tq.team.Name, Weight: tq.team.Weight, Cap: tq.team.Cap,
			Requests: s.req, InputTokens: s.in, OutputTokens: s.out, Borrowed: tq.borrowed, Waiting: tq.n}
		if known && tq.team.Cap > 0 {
			ts.CapRPM, ts.CapITPM, ts.CapOTPM = tq.team.Cap*lim.limit[0], tq.team.Cap*lim.limit[1], tq.team.Cap*lim.limit[2]
		}
		out = append(out, ts)
	}
	part := func(n, of int64) float64 {
		if of == 0 {
			return 0
		}
		return float64(n) / float64(of)
	}
	for i := range out {
		out[i].Share = max(part(out[i].Requests, total.req), part(out[i].InputTokens, total.in), part(out[i].OutputTokens, total.out))
	}
	slices.SortFunc(out, func(a, b TeamShare) int { return strings.Compare(a.Team, b.Team) })
	return out
}
