package jobs

import (
	"context"

	"github.com/riverqueue/river"

	"github.com/clade-dev/clade/internal/intake"
)

// querier runs SQL written with Postgres placeholders ($1, $2, ...); the SQLite
// backend rewrites them to ?1, ?2.
type querier interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	query(ctx context.Context, q string, args ...any) (rows, error)
	queryRow(ctx context.Context, q string, args ...any) row
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

type row interface {
	Scan(dest ...any) error
}

// backend is what differs between SQLite and Postgres: connections, bulk inserts,
// River's driver type, and a few SQL fragments.
type backend interface {
	querier
	// reader is for long reads (export, status); on SQLite a separate read-only pool
	// so that reads never wait for the single write connection.
	reader() querier
	// heartbeat is for the worker heartbeat: on SQLite a write connection of its
	// own, so that a beat never queues behind this process's other writes.
	heartbeat() querier
	begin(ctx context.Context) (txn, error)
	kind() string
	// runOfJob is the SQL expression for the run id in river_job.args.
	runOfJob() string
	// requestOfJob is the SQL expression for the request id in river_job.args.
	requestOfJob() string
	// greatest is the SQL function that returns the larger of its arguments.
	greatest() string
	// migrateRiver applies River's migrations.
	migrateRiver(ctx context.Context) error
	// migrateLock serialises migrations between processes (Postgres advisory lock).
	migrateLock(ctx context.Context) (unlock func(), err error)
	// newClient returns a River client; with a nil Workers it is insert-only.
	newClient(cfg *river.Config) (riverClient, error)
	close() error
}

// txn is one transaction.
type txn interface {
	querier
	// insertRequests inserts reqs, skipping custom_ids already present in the run;
	// ids[i] is the new row's id, or 0 for a skipped duplicate.
	insertRequests(ctx context.Context, runID int64, reqs []*intake.Request) (ids []int64, err error)
	// insertJobs enqueues one River job for each non-zero request id, in this
	// transaction.
	insertJobs(ctx context.Context, runID int64, ids []int64, maxAttempts int) error
	// completeJob marks a running River job completed in this transaction.
	completeJob(ctx context.Context, job *river.Job[requestArgs]) error
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

// riverClient is the part of *river.Client[TTx] that does not depend on TTx.
type riverClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Stopped() <-chan struct{}
	Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func())
}

// requestArgs are the args of a clade request job: which run and request row. The
// params stay in clade_request, so jobs stay small whatever the prompt size.
type requestArgs struct {
	Run     int64 `json:"run"`
	Request int64 `json:"req"`
}

// JobKind is the River job kind of a request.
const JobKind = "clade_request"

func (requestArgs) Kind() string { return JobKind }

var _ river.JobArgs = requestArgs{}
