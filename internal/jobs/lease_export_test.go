package jobs

import (
	"context"
	"os"
	"time"
)

// ForgeLease writes a lease on runID held by pid on this machine, as a process
// that then died would have left it.
func (s *Store) ForgeLease(ctx context.Context, runID int64, pid int, ttl time.Duration) error {
	if err := s.prepareLease(ctx); err != nil {
		return err
	}
	host, _ := os.Hostname()
	_, err := s.b.exec(ctx, `INSERT INTO clade_lease (run_id, owner, host, pid, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		runID, "forged", host, pid, time.Now().Add(ttl).UnixMicro())
	return err
}
