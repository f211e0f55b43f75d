package serve

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/spend"
)

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestServeBudgetSeenSpend: far from its limit, a budget's check uses the last
// store read for up to seenFor, plus everything this gateway has spent since
// (never missed); what another gateway spent shows once seenFor has passed; near
// the limit every check reads the store.
func TestServeBudgetSeenSpend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := jobstest.Open(t, ctx, jobstest.SQLite().NewDSN(t))
	clock := &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	b := &budgets{store: store, cat: catalog.Default(), now: clock.now, held: map[heldKey]spend.Micros{}}
	const scope = "team:research"
	always := func(spend.Micros) bool { return true }
	never := func(spend.Micros) bool { return false }
	spent := func(ok func(spend.Micros) bool) spend.Micros {
		t.Helper()
		v, err := b.spentOf(ctx, scope, jobs.PeriodDay, clock.now(), ok)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := store.AddSpend(ctx, []string{scope}, clock.now(), 1000); err != nil {
		t.Fatal(err)
	}
	if got := spent(always); got != 1000 {
		t.Fatalf("first read = %v, want the store's 1000", got)
	}
	// Another gateway spends 500; this one 200, through its own settle path.
	if err := store.AddSpend(ctx, []string{scope}, clock.now(), 500); err != nil {
		t.Fatal(err)
	}
	if err := b.addSpend(ctx, []string{scope}, clock.now(), 200); err != nil {
		t.Fatal(err)
	}
	clock.add(seenFor / 2)
	if got := spent(always); got != 1200 {
		t.Errorf("within seenFor, far from the limit = %v, want 1200 (the read's 1000 and this gateway's 200; the other's 500 not yet)", got)
	}
	if got := spent(never); got != 1700 {
		t.Errorf("near the limit = %v, want the store's 1700", got)
	}
	// The fresh read replaced the old one: this gateway's 200 is in it, not
	// counted again.
	if got := spent(always); got != 1700 {
		t.Errorf("after a fresh read = %v, want 1700 (this gateway's spend not counted twice)", got)
	}
	if err := store.AddSpend(ctx, []string{scope}, clock.now(), 300); err != nil {
		t.Fatal(err)
	}
	clock.add(seenFor)
	if got := spent(always); got != 2000 {
		t.Errorf("seenFor after the last read = %v, want the store's 2000", got)
	}
	// A new day is read afresh, not carried over.
	clock.add(12 * time.Hour)
	if got := spent(always); got != 0 {
		t.Errorf("the next day = %v, want 0", got)
	}
}

// TestServeBudgetReadAhead: far from its limit, a check that finds the last
// store read past half of seenFor takes it as it is, without waiting for the
// store, and has it read again in the background, so that the next check sees
// what another gateway spent meanwhile without a read of its own; one read
// ahead at a time.
func TestServeBudgetReadAhead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := jobstest.Open(t, ctx, jobstest.SQLite().NewDSN(t))
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	var wg sync.WaitGroup
	gate := make(chan struct{}) // holds the reads ahead until the test lets them go
	var started int
	b := &budgets{store: store, cat: catalog.Default(), now: clock.now, held: map[heldKey]spend.Micros{},
		background: func(f func()) {
			started++ // under b.mu
			wg.Go(func() { <-gate; f() })
		}}
	const scope = "team:research"
	always := func(spend.Micros) bool { return true }
	spent := func() spend.Micros {
		t.Helper()
		v, err := b.spentOf(ctx, scope, jobs.PeriodDay, clock.now(), always)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := store.AddSpend(ctx, []string{scope}, clock.now(), 1000); err != nil {
		t.Fatal(err)
	}
	if got := spent(); got != 1000 || started != 0 {
		t.Fatalf("first read = %v with %d reads ahead, want the store's 1000 and none", got, started)
	}
	// Another gateway spends 500.
	if err := store.AddSpend(ctx, []string{scope}, clock.now(), 500); err != nil {
		t.Fatal(err)
	}
	clock.add(seenFor/2 - time.Millisecond)
	if got := spent(); got != 1000 || started != 0 {
		t.Errorf("under half of seenFor = %v with %d reads ahead, want the last read's 1000 and none", got, started)
	}
	clock.add(2 * time.Millisecond)
	// The read ahead is held at the gate: these checks return at once.
	for range 3 {
		if got := spent(); got != 1000 {
			t.Errorf("past half of seenFor = %v, want the last read's 1000 at once", got)
		}
	}
	if started != 1 {
		t.Errorf("%d reads ahead started by three checks, want 1", started)
	}
	close(gate)
	wg.Wait()
	if got := spent(); got != 1500 {
		t.Errorf("after the read ahead = %v, want the store's 1500 (the other gateway's 500 seen)", got)
	}
	if started != 1 {
		t.Errorf("%d reads ahead, want 1: the fresh read is under half of seenFor old", started)
	}
}

// TestServeBudgetFar: the store may be read up to seenFor old only with more than
// a tenth of the limit and room for a hundred calls like this one left after it.
func TestServeBudgetFar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		limit, used, worst spend.Micros
		want               bool
	}{
		{limit: 50e6, used: 0, worst: 10e3, want: true},
		{limit: 50e6, used: 44e6, worst: 10e3, want: true},
		{limit: 50e6, used: 45e6, worst: 10e3, want: false}, // a tenth left before the call
		{limit: 50e6, used: 0, worst: 500e3, want: false},   // room for fewer than 100 such calls
		{limit: 2000, used: 0, worst: 60, want: false},      // a test's tiny budget: always read
	} {
		if got := far(tc.limit, tc.used, tc.worst); got != tc.want {
			t.Errorf("far(limit %d, used %d, worst %d) = %v, want %v", tc.limit, tc.used, tc.worst, got, tc.want)
		}
	}
}
