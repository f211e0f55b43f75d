package admit

import (
	"container/list"
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// Outcome is how a call ended, as the concurrency controller sees it.
type Outcome int

const (
	// Neutral says nothing about load: a 429 (quota), a client error, a cancelled call.
	Neutral Outcome = iota
	// Success is a completed call: the limit may grow.
	Success
	// Overload is a 529 overloaded_error: the limit shrinks.
	Overload
)

// AIMDConfig shapes an AIMD controller. Zero fields take the defaults.
type AIMDConfig struct {
	// Min is the floor: overload never shrinks the limit below it. Default 1.
	Min int
	// Max is the ceiling. Default 256 (in a Limiter: Config.MaxConcurrency).
	Max int
	// Initial is the limit to start from, in [Min, Max]. Default Max: 529s are rare, and
	// starting low would slow every run's first minutes.
	Initial int
	// Increase is added to the limit on each success while the limit is in use (at
	// least half of it in flight). Per success rather than per round of successes (as
	// TCP does) so that the limit recovers from a burst of 529s within a few round trips
	// even at hundreds of calls in flight; the in-use condition keeps a controller whose
	// calls are held back by the token buckets from drifting to Max, where the next
	// 529s would take several rounds to bite. Default 1.
	Increase float64
	// Decrease multiplies the limit on an overload, in (0, 1). Only one decrease
	// applies per round: the outcome of a call started before the last decrease (a
	// 529 answering a load that decrease already addressed, or a success) does not
	// move the limit. Default 0.5.
	Decrease float64
}

func (c AIMDConfig) withDefaults(maxDefault int) AIMDConfig {
	if c.Min == 0 {
		c.Min = 1
	}
	if c.Max == 0 {
		c.Max = maxDefault
	}
	if c.Initial == 0 {
		c.Initial = c.Max
	}
	if c.Increase == 0 {
		c.Increase = 1
	}
	if c.Decrease == 0 {
		c.Decrease = 0.5
	}
	return c
}

func (c AIMDConfig) validate() error {
	switch {
	case c.Min < 1:
		return fmt.Errorf("aimd min %d: must be at least 1", c.Min)
	case c.Max < c.Min:
		return fmt.Errorf("aimd max %d: must be at least min %d", c.Max, c.Min)
	case c.Initial < c.Min || c.Initial > c.Max:
		return fmt.Errorf("aimd initial %d: must be in [%d, %d]", c.Initial, c.Min, c.Max)
	case !(c.Increase > 0) || math.IsInf(c.Increase, 0):
		return fmt.Errorf("aimd increase %v: must be positive", c.Increase)
	case !(c.Decrease > 0 && c.Decrease < 1):
		return fmt.Errorf("aimd decrease %v: must be in (0, 1)", c.Decrease)
	}
	return nil
}

// AIMD is a concurrency limit driven by overload: additive increase on success,
// multiplicative decrease on 529, between a floor and a ceiling. It is also the
// semaphore that enforces the limit: Acquire waits in FIFO order for a slot.
// Overload is kept apart from quota: 429s do not move it (see Limiter).
type AIMD struct {
	cfg AIMDConfig

	mu           sync.Mutex
	limit        float64
	inFlight     int
	lastDecrease time.Time
	waiters      list.List // of chan struct{}, closed when granted a slot
}

// NewAIMD returns a controller for cfg with defaults applied (Max defaults to 256).
func NewAIMD(cfg AIMDConfig) (*AIMD, error) {
	cfg = cfg.withDefaults(defaultMaxConcurrency)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &AIMD{cfg: cfg, limit: float64(cfg.Initial)}, nil
}

// slots is the whole number of calls the limit allows.
func (a *AIMD) slots() int { return int(a.limit) }

// TryAcquire takes a slot if one is free and no one is waiting.
func (a *AIMD) TryAcquire() bool {
	a.mu.Lock()
	ok := a.waiters.Len() == 0 && a.inFlight < a.slots()
	if ok {
		a.inFlight++
	}
	a.mu.Unlock()
	return ok
}

// Acquire takes a slot, waiting in FIFO order until one is free or ctx ends.
func (a *AIMD) Acquire(ctx context.Context) error {
	a.mu.Lock()
	if a.waiters.Len() == 0 && a.inFlight < a.slots() {
		a.inFlight++
		a.mu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	e := a.waiters.PushBack(ready)
	a.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		select {
		case <-ready:
			// Granted while giving up: hand the slot back.
			a.inFlight--
			a.grant()
		default:
			a.waiters.Remove(e)
			a.grant() // the next waiter may now be first in line for a free slot
		}
		a.mu.Unlock()
		return ctx.Err()
	}
}

// Release returns a slot taken at started and moves the limit by the outcome.
func (a *AIMD) Release(o Outcome, started, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	inUse := 2*a.inFlight >= a.slots()
	a.inFlight--
	switch o {
	case Success:
		if inUse && !started.Before(a.lastDecrease) {
			a.limit = math.Min(float64(a.cfg.Max), a.limit+a.cfg.Increase)
		}
	case Overload:
		if !started.Before(a.lastDecrease) {
			a.limit = math.Max(float64(a.cfg.Min), a.limit*a.cfg.Decrease)
			a.lastDecrease = now
		}
	}
	a.grant()
}

// grant hands free slots to waiters in order. a.mu is held.
func (a *AIMD) grant() {
	for a.inFlight < a.slots() {
		e := a.waiters.Front()
		if e == nil {
			return
		}
		a.waiters.Remove(e)
		a.inFlight++
		close(e.Value.(chan struct{}))
	}
}

// AIMDState is a controller's state for monitoring.
type AIMDState struct {
	Limit    float64 // current limit; Limit rounded down calls may be in flight
	InFlight int
	Waiting  int
	Min, Max int
}

// State returns the controller's state.
func (a *AIMD) State() AIMDState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return AIMDState{Limit: a.limit, InFlight: a.inFlight, Waiting: a.waiters.Len(), Min: a.cfg.Min, Max: a.cfg.Max}
}
