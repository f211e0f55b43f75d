package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrLeased is returned by AcquireLease when another process holds the run's lease.
var ErrLeased = errors.New("another process is working this run")

// DefaultLeaseTTL is how long a lease lasts without renewal: a process that dies
// without releasing it holds the run this long.
const DefaultLeaseTTL = 30 * time.Second

// Lease is one process's exclusive right to dispatch a run (batch and hybrid
// dispatch: two dispatchers would both create batches for the same requests). It
// lives in the store, so it works across processes and machines sharing a
// Postgres store. The holder renews it in the background; Lost is closed if a
// renewal finds it taken or fails until the lease has run out.
type Lease struct {
	s     *Store
	runID int64
	owner string
	ttl   time.Duration
	lost  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func (s *Store) prepareLease(ctx context.Context) error {
	big := "INTEGER"
	if s.b.kind() == "postgres" {
		big = "BIGINT"
	}
	_, err := s.b.exec(ctx, `CREATE TABLE IF NOT EXISTS clade_lease (
		run_id     `+big+` PRIMARY KEY,
		owner      TEXT NOT NULL,
		expires_at `+big+` NOT NULL
	)`)
	return err
}

// AcquireLease takes the run's lease for this process, or returns ErrLeased
// (wrapped, naming the holder) if another process holds one that has not run out.
// ttl <= 0 means DefaultLeaseTTL. Release it when done.
func (s *Store) AcquireLease(ctx context.Context, runID int64, ttl time.Duration) (*Lease, error) {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	if err := s.prepareLease(ctx); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	host, _ := os.Hostname()
	l := &Lease{s: s, runID: runID, ttl: ttl, owner: fmt.Sprintf("pid %d on %s (%d)", os.Getpid(), host, time.Now().UnixNano()),
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	ok, err := l.take(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if !ok {
		var owner string
		var exp int64
		_ = s.b.queryRow(ctx, `SELECT owner, expires_at FROM clade_lease WHERE run_id = $1`, runID).Scan(&owner, &exp)
		return nil, fmt.Errorf("%w: %s holds it until %s", ErrLeased, owner, time.UnixMicro(exp).Format(time.RFC3339))
	}
	go l.renew()
	return l, nil
}

// take inserts or extends the lease if it is free, run out, or already ours.
func (l *Lease) take(ctx context.Context) (bool, error) {
	now := time.Now()
	n, err := l.s.b.exec(ctx, `INSERT INTO clade_lease (run_id, owner, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
		WHERE clade_lease.owner = excluded.owner OR clade_lease.expires_at < $4`,
		l.runID, l.owner, now.Add(l.ttl).UnixMicro(), now.UnixMicro())
	return n == 1, err
}

func (l *Lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	held := time.Now().Add(l.ttl)
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		ok, err := l.take(ctx)
		cancel()
		switch {
		case err == nil && ok:
			held = time.Now().Add(l.ttl)
		case err == nil || time.Now().After(held):
			// Taken by another process, or our hold ran out while renewals failed.
			close(l.lost)
			return
		}
	}
}

// StopRenewing stops the background renewal without releasing the lease, as a
// frozen process would; for tests.
func (l *Lease) StopRenewing() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
		<-l.done
	}
}

// Lost is closed when the lease is lost: the holder must stop dispatching.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives the lease up so another process can take the run at once.
func (l *Lease) Release() error {
	var err error
	l.once.Do(func() {
		l.StopRenewing()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = l.s.b.exec(ctx, `DELETE FROM clade_lease WHERE run_id = $1 AND owner = $2`, l.runID, l.owner)
	})
	return err
}
