package admit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Snapshot is a Limiter's state at one time, for metrics and the dashboard.
type Snapshot struct {
	At time.Time
	// Tier is the configured tier, or TierAuto.
	Tier string
	// MaxConcurrency is the cap across classes; InFlight the calls holding a slot of it
	// (admitted, or first in line and waiting for tokens).
	MaxConcurrency int
	InFlight       int
	// Classes are the classes used so far, by name.
	Classes []ClassSnapshot
}

// ClassSnapshot is one model class.
type ClassSnapshot struct {
	Class string
	// State is the backend's view: limits, capacities, levels, pause, last sync.
	State
	// InFlight counts this limiter's live reservations and what they hold.
	InFlight Cost
	// Concurrency is the class's overload (AIMD) controller.
	Concurrency AIMDState
}

// Paused reports whether the class is paused at the snapshot's time.
func (c ClassSnapshot) Paused(at time.Time) bool { return at.Before(c.PausedUntil) }

// Snapshot is SnapshotAt at the current time.
func (l *Limiter) Snapshot(ctx context.Context) (Snapshot, error) {
	return l.SnapshotAt(ctx, l.cfg.Now())
}

// SnapshotAt returns the limiter's state at now. A class whose backend state cannot be
// read is listed with a zero State, and the error says which.
func (l *Limiter) SnapshotAt(ctx context.Context, now time.Time) (Snapshot, error) {
	s := Snapshot{At: now, Tier: l.cfg.Tier, MaxConcurrency: l.cfg.MaxConcurrency, InFlight: int(l.inUse.Load())}
	classes := *l.classes.Load()
	names := make([]string, 0, len(classes))
	for n := range classes {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		c := classes[n]
		st, err := l.be.State(ctx, n, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("state %s: %w", n, err))
		}
		s.Classes = append(s.Classes, ClassSnapshot{
			Class: n, State: st,
			InFlight:    Cost{Requests: c.reqs.Load(), InputTokens: c.in.Load(), OutputTokens: c.out.Load()},
			Concurrency: c.aimd.State(),
		})
	}
	return s, errors.Join(errs...)
}
