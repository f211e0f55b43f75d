package admit

import (
	"context"
	"sync"
	"time"
)

// Leases (RedisConfig.Lease): a process that admits many calls of a class takes
// a few calls' worth of each bucket from Redis at once, with the call that
// needed them, and admits the next calls from what it took without a round
// trip. What it took is taken in Redis like a reservation (held, in flight), so
// no other process can use it meanwhile and the buckets never give out more than
// they hold; the calls admitted from a lease settle as any call does (their
// reserved cost released, their actual cost charged), and what a lease has not
// given out when it expires goes back with a settle of that reserved cost and
// nothing actual. A lease is at most Lease's worth of the class's smallest
// limit, and at most maxLeaseCalls calls: where the limits allow less than one
// more call per Lease (the low tiers) there is no lease, every call reserves in
// Redis as without one. A class that could not give a lease is not asked for
// another for leanFor, and a pause (a 429) returns the class's lease at once.
//
// A lease in use is renewed ahead: once a call leaves it under half full, a
// round trip in the background adds another lease's worth to it (so it holds at
// most one and a half), and once a call finds it with under half its time left,
// one tops it up to a lease's worth; either gives it another Lease. So while
// calls keep coming none of them waits for Redis (without, the call that found
// the lease spent or expired made the round trip, and the calls that arrived
// during it waited too: at a thousand calls a second a 50 ms lease lasts about
// fifty calls, so about one in fifty). A call that finds the lease
// spent while a renewal is on its way waits for it rather than make a round trip
// of its own.

const (
	maxLeaseCalls = 64
	leanFor       = time.Second
)

// DefaultRedisLease is the RedisConfig.Lease clade run and clade serve use with
// --limits-redis: at tier 4 a lease of a fast class is a few calls, and another
// process waits at most this long for what one holds and does not use.
const DefaultRedisLease = 50 * time.Millisecond

// redisLease is what this process holds of one class's buckets.
type redisLease struct {
	mu        sync.Mutex
	left      Cost          // taken in Redis, not given to a call yet
	expires   time.Time     // when left goes back
	at        time.Time     // the latest now a Reserve gave (the caller's clock)
	gen       uint64        // the lease's number, for its expiry timer
	leanUntil time.Time     // no lease is asked for before then
	renewal   chan struct{} // closed when the renewal on its way (renewAhead) has landed; nil when none is
}

func (r *Redis) leaseOf(class string) *redisLease {
	if v, ok := r.leases.Load(class); ok {
		return v.(*redisLease)
	}
	v, _ := r.leases.LoadOrStore(class, &redisLease{})
	return v.(*redisLease)
}

// fits reports whether c is within left on every bucket.
func fits(left, c Cost) bool {
	return c.Requests <= left.Requests && c.InputTokens <= left.InputTokens && c.OutputTokens <= left.OutputTokens
}

func subCost(a, b Cost) Cost {
	return Cost{Requests: a.Requests - b.Requests, InputTokens: a.InputTokens - b.InputTokens, OutputTokens: a.OutputTokens - b.OutputTokens}
}

// leaseSize is the lease to take beside a call of cost c: n more calls like it,
// n the calls the class's limits allow in Lease (at most maxLeaseCalls); zero
// when that is under one or the class's limits are not known here.
func (r *Redis) leaseSize(class string, c Cost) Cost {
	rc := r.class(class)
	l := rc.spec.Limits
	if !l.valid() || c.Requests <= 0 {
		return Cost{}
	}
	per := func(limit, cost int64) float64 {
		if cost <= 0 {
			return float64(maxLeaseCalls)
		}
		return float64(limit) / float64(cost)
	}
	calls := min(per(l.RPM, c.Requests), per(l.ITPM, c.InputTokens), per(l.OTPM, c.OutputTokens))
	n := int64(calls * r.cfg.Lease.Seconds() / 60)
	n = min(n, maxLeaseCalls)
	if n < 1 {
		return Cost{}
	}
	return Cost{Requests: n * c.Requests, InputTokens: n * c.InputTokens, OutputTokens: n * c.OutputTokens}
}

// reserveLeased is Reserve with leases on.
func (r *Redis) reserveLeased(ctx context.Context, class string, c Cost, now time.Time) (time.Duration, error) {
	l := r.leaseOf(class)
	l.mu.Lock()
	if now.After(l.at) {
		l.at = now
	}
	for l.renewal != nil && !(now.Before(l.expires) && fits(l.left, c)) {
		ch := l.renewal
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		l.mu.Lock()
	}
	if now.Before(l.expires) && fits(l.left, c) {
		l.left = subCost(l.left, c)
		r.renewAhead(class, l, c, now)
		l.mu.Unlock()
		return 0, nil
	}
	r.giveBack(class, l) // what is left of an expired or too small lease
	size := r.leaseSize(class, c)
	if size.Requests == 0 || now.Before(l.leanUntil) || r.down.Load() {
		l.mu.Unlock()
		return r.reserve(ctx, class, c, now)
	}
	// The calls arriving meanwhile wait for this one's lease rather than each
	// making a round trip of its own.
	wait, err := r.reserve(ctx, class, addCost(c, size), now)
	if err == nil && wait == 0 && !r.down.Load() {
		r.setLease(class, l, size, now)
		l.mu.Unlock()
		return 0, nil
	}
	if err == nil && wait == 0 {
		// Reserved by the outage policy's fallback: the call is admitted, and
		// what was taken for the lease stays taken there.
		l.mu.Unlock()
		return 0, nil
	}
	l.leanUntil = now.Add(leanFor)
	l.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return r.reserve(ctx, class, c, now)
}

// setLease makes left what l holds (l.mu held), for Lease from now: a new
// number, and a timer that gives it back unless it is renewed or replaced first.
func (r *Redis) setLease(class string, l *redisLease, left Cost, now time.Time) {
	l.left, l.expires = left, now.Add(r.cfg.Lease)
	l.gen++
	gen := l.gen
	time.AfterFunc(r.cfg.Lease, func() {
		l.mu.Lock()
		if l.gen == gen {
			r.giveBack(class, l)
		}
		l.mu.Unlock()
	})
}

// renewAhead starts l's renewal (l.mu held, c the call just given from it, now
// its time) when l is under half its size (the size of a lease for calls like
// c) or has under half its time left, unless one is on its way.
func (r *Redis) renewAhead(class string, l *redisLease, c Cost, now time.Time) {
	if l.renewal != nil || now.Before(l.leanUntil) || r.down.Load() {
		return
	}
	size := r.leaseSize(class, c)
	half := Cost{Requests: size.Requests / 2, InputTokens: size.InputTokens / 2, OutputTokens: size.OutputTokens / 2}
	if size.Requests == 0 || (fits(l.left, half) && l.expires.Sub(now) >= r.cfg.Lease/2) {
		return
	}
	// Under half full, a lease's worth more (so a renewal lands every lease's
	// worth of calls, whatever its round trip took); only old, topped up to its size.
	top := size
	if fits(l.left, half) {
		d := subCost(size, l.left)
		top = Cost{Requests: max(d.Requests, 0), InputTokens: max(d.InputTokens, 0), OutputTokens: max(d.OutputTokens, 0)}
	}
	if top == (Cost{}) {
		return // full for calls like c, only old: it goes back when it expires
	}
	ch := make(chan struct{})
	l.renewal = ch
	gen := l.gen
	r.renewing.Add(1)
	go func() {
		defer r.renewing.Done()
		wait, err := r.reserve(context.Background(), class, top, now)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.renewal = nil
		close(ch)
		switch {
		case err != nil || wait != 0:
			// No room (or no Redis): the calls use up what is left, then reserve
			// one by one, as when a lease could not be had.
			l.leanUntil = now.Add(leanFor)
			if err != nil {
				r.cfg.Logger.Warn("admit redis: renew a lease", "class", class, "error", err)
			}
		case r.down.Load():
			// Reserved by the outage policy's fallback: it stays taken there.
		case l.gen != gen:
			// Given back meanwhile (a pause, an expiry, ReturnLeases): so is this.
			r.returnCost(class, top, l.at)
		default:
			r.setLease(class, l, addCost(l.left, top), now)
		}
	}()
}

// giveBack returns what is left of l to Redis, in the background (l.mu held),
// as at the latest now its Reserves were given.
func (r *Redis) giveBack(class string, l *redisLease) {
	left, at := l.left, l.at
	l.left, l.expires = Cost{}, time.Time{}
	l.gen++
	r.returnCost(class, left, at)
}

// returnCost settles left, taken in Redis for a lease and not given to a call,
// with nothing actual, in the background.
func (r *Redis) returnCost(class string, left Cost, at time.Time) {
	if left == (Cost{}) {
		return
	}
	r.returning.Add(1)
	go func() {
		defer r.returning.Done()
		if err := r.Settle(context.Background(), class, left, Cost{}, at); err != nil {
			r.cfg.Logger.Warn("admit redis: return a lease", "class", class, "error", err)
		}
	}()
}

// dropLease returns class's lease at once (a pause: its calls must wait).
func (r *Redis) dropLease(class string) {
	if r.cfg.Lease <= 0 {
		return
	}
	l := r.leaseOf(class)
	l.mu.Lock()
	r.giveBack(class, l)
	l.mu.Unlock()
}

// ReturnLeases gives every class's lease back to Redis and waits until Redis has
// them (RedisConfig.Lease): call it before closing the client, or what the
// leases held stays taken until Redis's HeldLease frees it.
func (r *Redis) ReturnLeases() {
	r.renewing.Wait()
	r.leases.Range(func(k, v any) bool {
		l := v.(*redisLease)
		l.mu.Lock()
		r.giveBack(k.(string), l)
		l.mu.Unlock()
		return true
	})
	r.returning.Wait()
}
