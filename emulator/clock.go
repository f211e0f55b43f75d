package emulator

import (
	"sync"
	"time"
)

// Clock is the emulator's batch clock: it runs Speed times faster than the real clock
// it is built on and can be moved forward by Advance. Rate-limit buckets do not use it;
// they stay in real time so clients that honour retry-after behave correctly.
type Clock struct {
	real  func() time.Time
	speed float64

	mu     sync.Mutex
	base   time.Time     // real time at creation
	origin time.Time     // virtual time at creation
	offset time.Duration // added by Advance
}

// NewClock returns a clock that starts at real() and runs speed times faster.
func NewClock(real func() time.Time, speed float64) *Clock {
	now := real()
	return &Clock{real: real, speed: speed, base: now, origin: now}
}

// Now returns the current emulator time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	elapsed := c.real().Sub(c.base)
	return c.origin.Add(time.Duration(float64(elapsed)*c.speed) + c.offset)
}

// Advance moves the clock forward by d (negative values are ignored).
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// Speed is how many emulator seconds pass per real second.
func (c *Clock) Speed() float64 { return c.speed }

// RealDuration converts an emulator-clock duration into real time.
func (c *Clock) RealDuration(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.speed)
}
