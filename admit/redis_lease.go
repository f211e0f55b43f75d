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
	left      Cost      // taken in Redis, not given to a call yet
	expires   time.Time // when left goes back
	at        time.Time // the latest now a Reserve gave (the caller's clock)
	gen       uint64    // the lease's number, for its expiry timer
	leanUntil time.Time // no lease is asked for before then
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
	if now.Before(l.expires) && fits(l.left, c) {
		l.left = subCost(l.left, c)
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
		l.left, l.expires = size, now.Add(r.cfg.Lease)
		l.gen++
		gen := l.gen
		l.mu.Unlock()
		time.AfterFunc(r.cfg.Lease, func() {
			l.mu.Lock()
			if l.gen == gen {
				r.giveBack(class, l)
			}
			l.mu.Unlock()
		})
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

// giveBack returns what is left of l to Redis, in the background (l.mu held),
// as at the latest now its Reserves were given.
func (r *Redis) giveBack(class string, l *redisLease) {
	left, at := l.left, l.at
	l.left, l.expires = Cost{}, time.Time{}
	l.gen++
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
	r.leases.Range(func(k, v any) bool {
		l := v.(*redisLease)
		l.mu.Lock()
		r.giveBack(k.(string), l)
		l.mu.Unlock()
		return true
	})
	r.returning.Wait()
}
