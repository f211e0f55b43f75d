package admit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the in-process Backend: the default, and right for one `clade run`.
// Lookups of an existing class take no lock; each class has its own mutex. The zero
// value is not usable; call NewMemory.
type Memory struct {
	mu      sync.Mutex                           // serialises adding classes
	classes atomic.Pointer[map[string]*memClass] // copied on write
}

type memClass struct {
	mu          sync.Mutex
	spec        Spec
	b           [numDims]bucket
	pausedUntil time.Time
	syncedAt    time.Time
}

// NewMemory returns an empty in-process backend.
func NewMemory() *Memory {
	m := &Memory{}
	empty := map[string]*memClass{}
	m.classes.Store(&empty)
	return m
}

var _ Backend = (*Memory)(nil)

func (m *Memory) get(class string) (*memClass, error) {
	if c, ok := (*m.classes.Load())[class]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownClass, class)
}

// Init implements Backend.
func (m *Memory) Init(_ context.Context, class string, spec Spec, now time.Time) error {
	if !spec.valid() {
		return fmt.Errorf("init class %s: invalid spec %+v", class, spec)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.classes.Load()
	if _, ok := old[class]; ok {
		return nil
	}
	c := &memClass{spec: spec}
	for i, lim := range spec.Limits.dims() {
		c.b[i] = newBucket(lim, spec.Burst, spec.Headroom, now)
	}
	next := make(map[string]*memClass, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[class] = c
	m.classes.Store(&next)
	return nil
}

// Reserve implements Backend.
func (m *Memory) Reserve(_ context.Context, class string, cost Cost, now time.Time) (time.Duration, error) {
	c, err := m.get(class)
	if err != nil {
		return 0, err
	}
	need := cost.dims()
	c.mu.Lock()
	defer c.mu.Unlock()
	var wait time.Duration
	if now.Before(c.pausedUntil) {
		wait = c.pausedUntil.Sub(now)
	}
	for i := range c.b {
		c.b[i].refill(now)
		wait = max(wait, c.b[i].wait(need[i]))
	}
	if wait > 0 {
		return wait, nil
	}
	for i := range c.b {
		c.b[i].level -= need[i]
	}
	c.b[dimOutput].held += need[dimOutput]
	return 0, nil
}

// Settle implements Backend.
func (m *Memory) Settle(_ context.Context, class string, reserved, actual Cost, now time.Time) error {
	c, err := m.get(class)
	if err != nil {
		return err
	}
	res, act := reserved.dims(), actual.dims()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.b {
		b := &c.b[i]
		b.refill(now)
		if i == dimOutput {
			b.held = max(0, b.held-res[i])
		}
		b.level = min(b.level-(act[i]-res[i]), b.top())
	}
	return nil
}

// Sync implements Backend.
func (m *Memory) Sync(_ context.Context, class string, r Report, now time.Time) error {
	c, err := m.get(class)
	if err != nil {
		return err
	}
	rd := r.dims()
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := !now.Before(c.syncedAt)
	for i := range c.b {
		if !rd[i].Valid {
			continue
		}
		b := &c.b[i]
		b.refill(now)
		if rd[i].Limit > 0 && rd[i].Limit != b.limit {
			b.setLimit(rd[i].Limit, c.spec.Burst, c.spec.Headroom)
		}
		if fresh {
			b.level = min(b.level, float64(rd[i].Remaining+rd[i].Slack))
		}
	}
	if fresh {
		c.syncedAt = now
	}
	return nil
}

// Pause implements Backend.
func (m *Memory) Pause(_ context.Context, class string, until time.Time) error {
	c, err := m.get(class)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if until.After(c.pausedUntil) {
		c.pausedUntil = until
	}
	return nil
}

// State implements Backend.
func (m *Memory) State(_ context.Context, class string, now time.Time) (State, error) {
	c, err := m.get(class)
	if err != nil {
		return State{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var s [numDims]BucketState
	for i := range c.b {
		s[i] = c.b[i].state()
		s[i].Level = c.b[i].levelAt(now)
	}
	return State{
		Requests: s[dimRequests], InputTokens: s[dimInput], OutputTokens: s[dimOutput],
		PausedUntil: c.pausedUntil, SyncedAt: c.syncedAt,
	}, nil
}
