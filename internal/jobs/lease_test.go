package jobs_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// TestLease: one holder at a time, on every backend; a second process (a second
// Store on the same database) is refused while the lease is held and renewed,
// gets it at once after Release, and takes over a lease whose holder stopped
// renewing once it has run out.
func TestLease(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dsn := b.NewDSN(t)
			s1 := jobstest.Open(t, ctx, dsn)
			s2 := jobstest.Open(t, ctx, dsn)
			run, _ := jobstest.Import(t, ctx, s1, jobs.ImportOptions{Path: jobstest.WriteInput(t, 1)})

			const ttl = 600 * time.Millisecond
			l1, err := s1.AcquireLease(ctx, run.ID, ttl)
			if err != nil {
				t.Fatalf("first AcquireLease: %v", err)
			}
			// Held and renewed: still refused after more than one ttl.
			deadline := time.Now().Add(2 * ttl)
			for time.Now().Before(deadline) {
				if _, err := s2.AcquireLease(ctx, run.ID, ttl); !errors.Is(err, jobs.ErrLeased) {
					t.Fatalf("second AcquireLease while held = %v, want ErrLeased", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err := l1.Release(); err != nil {
				t.Fatalf("Release: %v", err)
			}
			l2, err := s2.AcquireLease(ctx, run.ID, ttl)
			if err != nil {
				t.Fatalf("AcquireLease after Release: %v", err)
			}
			// Another run's lease is independent.
			other, _ := jobstest.Import(t, ctx, s1, jobs.ImportOptions{Path: jobstest.WriteInput(t, 2)})
			l3, err := s1.AcquireLease(ctx, other.ID, ttl)
			if err != nil {
				t.Fatalf("AcquireLease of another run: %v", err)
			}
			defer l3.Release()

			// A holder that stops renewing (a frozen or dead process) loses the
			// run once its lease has run out.
			l2.StopRenewing()
			var l4 *jobs.Lease
			for deadline := time.Now().Add(10 * ttl); l4 == nil; {
				if time.Now().After(deadline) {
					t.Fatal("the lease was not free after its holder stopped renewing")
				}
				l4, err = s1.AcquireLease(ctx, run.ID, ttl)
				if err != nil && !errors.Is(err, jobs.ErrLeased) {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			defer l4.Release()
		})
	}
}

// TestLeaseOfDeadProcess: a lease left by a process that died on this machine
// (SIGKILL, crash) is taken at once, not after its time runs out; one held by a
// live process is not.
func TestLeaseOfDeadProcess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := jobstest.Open(t, ctx, jobstest.SQLite().NewDSN(t))
	dead, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteInput(t, 1)})
	alive, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteInput(t, 2)})

	child := exec.Command(os.Args[0], "-test.run=^$")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgeLease(ctx, dead.ID, child.Process.Pid, time.Hour); err != nil {
		t.Fatal(err)
	}
	l, err := s.AcquireLease(ctx, dead.ID, time.Hour)
	if err != nil {
		t.Fatalf("AcquireLease over a dead holder's lease: %v", err)
	}
	l.Release()

	if err := s.ForgeLease(ctx, alive.ID, os.Getppid(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLease(ctx, alive.ID, time.Hour); !errors.Is(err, jobs.ErrLeased) {
		t.Fatalf("AcquireLease over a live holder's lease = %v, want ErrLeased", err)
	}
}
