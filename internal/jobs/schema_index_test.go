package jobs_test

import (
	"context"
	"testing"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// TestPrefixIndexMigration: the partial index clade_request_run_prefix is a
// numbered migration on both backends: a fresh store has it without
// PrepareBatches; a store made by the version before it gets it on open; and a
// store of that version that has it already (PrepareBatches used to create it)
// opens cleanly. Not parallel: it swaps the migration lists.
func TestPrefixIndexMigration(t *testing.T) {
	const index = "clade_request_run_prefix"
	ctx := context.Background()
	has := func(t *testing.T, s *jobs.Store, when string, want bool) {
		t.Helper()
		got, err := s.HasIndex(ctx, index)
		if err != nil || got != want {
			t.Fatalf("%s: HasIndex(%s) = %v, %v, want %v", when, index, got, err, want)
		}
	}
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("fresh", func(t *testing.T) {
				s := jobstest.Open(t, ctx, b.NewDSN(t))
				has(t, s, "fresh store", true)
			})
			for _, c := range []struct {
				name     string
				hadIndex bool // PrepareBatches made it before the migration existed
			}{
				{name: "upgrade", hadIndex: false},
				{name: "upgrade with the index", hadIndex: true},
			} {
				t.Run(c.name, func(t *testing.T) {
					dsn := b.NewDSN(t)
					old, err := jobs.OpenBeforeLastMigration(ctx, dsn)
					if err != nil {
						t.Fatalf("open at the previous version: %v", err)
					}
					has(t, old, "previous version", false) // the precondition: the migration has work to do
					if c.hadIndex {
						if err := old.Exec(ctx, `CREATE INDEX clade_request_run_prefix ON clade_request (run_id, cache_prefix, line)
							WHERE cache_prefix IS NOT NULL`); err != nil {
							t.Fatal(err)
						}
						has(t, old, "previous version, index made by hand", true)
					}
					old.Close()
					s := jobstest.Open(t, ctx, dsn)
					has(t, s, "after the upgrade", true)
				})
			}
		})
	}
}
