package jobs_test

import (
	"os"
	"testing"

	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

func TestMain(m *testing.M) {
	jobstest.MaybeChild()
	os.Exit(m.Run())
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	jobstest.Run(t, jobstest.SQLite())
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	jobstest.Run(t, jobstest.Postgres())
}
