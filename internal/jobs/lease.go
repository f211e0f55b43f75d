package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
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
// Postgres store. A lease whose holder died on the same machine is taken over at
// once (its pid is gone); otherwise it runs out DefaultLeaseTTL after the holder's
// last renewal. The holder renews it in the background; Lost is closed if a
// renewal finds it taken or fails until the lease has run out.
type Lease struct {
	s     *Store
	runID int64
	owner string
	host  string
	pid   int64
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
		host       TEXT NOT NULL,
		pid        `+big+` NOT NULL,
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
	l := &Lease{s: s, runID: runID, ttl: ttl, host: host, pid: int64(os.Getpid()),
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	l.owner = fmt.Sprintf("pid %d on %s (%d)", l.pid, host, time.Now().UnixNano())
	ok, err := l.take(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	if !ok {
		var owner, ohost string
		var opid, exp int64
		err := s.b.queryRow(ctx, `SELECT owner, host, pid, expires_at FROM clade_lease WHERE run_id = $1`, runID).Scan(&owner, &ohost, &opid, &exp)
		if err == nil && ohost == host && !processAlive(int(opid)) {
			// Its holder died on this machine (a crash, a SIGKILL): take the run
			// now rather than when the lease runs out. Compare-and-swap on the
			// owner, in case another process does the same.
			n, err := s.b.exec(ctx, `UPDATE clade_lease SET owner = $3, host = $4, pid = $5, expires_at = $6
				WHERE run_id = $1 AND owner = $2`, runID, owner, l.owner, host, l.pid, time.Now().Add(ttl).UnixMicro())
			if err != nil {
				return nil, fmt.Errorf("lease: %w", err)
			}
			ok = n == 1
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s holds it until %s", ErrLeased, owner, time.UnixMicro(exp).Format(time.RFC3339))
		}
	}
	go l.renew()
	return l, nil
}

// processAlive reports whether a process with this pid runs on this machine. A
// pid reused by an unrelated process reads as alive: the lease then runs out as
// usual.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// take inserts or extends the lease if it is free, run out, or already ours.
func (l *Lease) take(ctx context.Context) (bool, error) {
	now := time.Now()
	n, err := l.s.b.exec(ctx, `INSERT INTO clade_lease (run_id, owner, host, pid, expires_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, host = excluded.host, pid = excluded.pid,
			expires_at = excluded.expires_at
		WHERE clade_lease.owner = excluded.owner OR clade_lease.expires_at < $6`,
		l.runID, l.owner, l.host, l.pid, now.Add(l.ttl).UnixMicro(), now.UnixMicro())
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
