package dashboard

import (
	"context"
	"sync"
	"time"
)

// Feed is the Source of a run: the run's live display sets its latest numbers
// (Set, at each redraw), and each sample takes the latest. The dashboard thus
// shows what the terminal shows, computed once.
//
// A hybrid run has two producers, its batches' and its realtime workers'; while the
// realtime workers feed (their display counts the whole run), theirs is shown, and
// the batches' otherwise.
type Feed struct {
	mu     sync.Mutex
	latest Sample
	rt     Sample
	rtAt   time.Time
}

// feedFresh is how long a realtime sample is preferred over a batch one.
const feedFresh = 6 * time.Second

// Set makes s the feed's latest sample (Seq and At are the dashboard's). Nil
// does nothing, so producers need not check.
func (f *Feed) Set(s Sample) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.Progress != nil && s.Progress.Mode == "realtime" {
		f.rt, f.rtAt = s, time.Now()
	}
	f.latest = s
}

// Sample returns the latest sample set.
func (f *Feed) Sample(_ context.Context, now time.Time) Sample {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.rtAt.IsZero() && time.Since(f.rtAt) < feedFresh {
		return f.rt
	}
	return f.latest
}
