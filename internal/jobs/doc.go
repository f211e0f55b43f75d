// Package jobs is the durable store of runs: the requests of an input file, one
// River job per request, and one result per request, in SQLite (default) or
// Postgres.
//
// # Model
//
// A run is an input file imported under a name (by default its absolute path).
// Import streams the file through package intake and stores, in batched
// transactions, each valid line as a clade_request row plus a River job
// (InsertManyFastTx, COPY on Postgres), and each bad line as a clade_problem row.
// The run row records the byte offset and line of the last committed batch, so an
// interrupted import continues where it stopped; the file's fingerprint (size,
// SHA-256) is checked first, and a changed file is refused with ErrInputChanged
// unless ImportOptions.Force starts the run over. Duplicate custom_ids hit the
// (run_id, custom_id) unique index and become Problems naming both lines.
//
// A Client runs River with a WorkFunc. For each job it loads the request, calls
// the WorkFunc, and writes the Result to clade_result in the same transaction that
// completes the River job (river.JobCompleteTx). Export writes results.jsonl from
// clade_result.
//
// # What is authoritative
//
// clade's tables: clade_request says what must be done, clade_result what was done
// (at most one row per request: its primary key is the request id). River's
// river_job rows are the queue: who runs what, attempts, retries and leases; River
// deletes finished ones after a day.
//
// # Failure
//
// A crash before the completing transaction commits leaves no result and the job
// not completed: it runs again once it is released. Each process registers a
// Worker (Store.Register): a row with a heartbeat every 2 s, whose ID is its
// River client's ID and so the last attempted_by of each job it runs. A worker
// whose heartbeat is 15 s old by the database's clock, or whose pid is gone from
// this machine, is dead for good, and Store.ReleaseDead, which live workers run
// after each heartbeat, gives its running jobs back without counting the attempt
// (a process that cannot write its heartbeat for that long sees Worker.Lost and
// must stop its Client). ReleaseDead replaces each such job with a copy and
// finalizes the old row, so a host that was only cut off and comes back can
// neither overwrite the copy's state through River nor commit a result: its late
// completing transaction writes nothing. Store.ReleaseRunning (every running job,
// in place) is for a store no other process works; River's leader also rescues
// jobs stuck past ClientConfig.RescueStuckJobsAfter. A crash after the commit
// leaves exactly one result and a completed job. A job whose context is cancelled by StopAndCancel returns to the queue
// without counting an attempt, provided its WorkFunc returns the context's error:
// River 0.51 treats an error wrapping context.Canceled, when the job context's
// cause is its stop signal, as "interrupted" (state available, attempt − 1).
// Snooze does the same for rate limits. An error on the last attempt becomes an
// errored result, so a finished run has exactly one result per request.
//
// # Backends
//
// SQLite (modernc.org/sqlite, pure Go): WAL, synchronous=NORMAL, busy_timeout
// 10 s, BEGIN IMMEDIATE, and one connection for all writes and River (River's
// SQLite driver requires it); a second, read-only pool serves Export, status and
// request loads, so reads never wait for the writer; the worker heartbeat
// writes on a third connection of its own, so that it never queues behind the
// process's other writes (it waits only for the file's write lock). Two
// measured departures from plain River use, both on SQLite only: connections
// cache prepared statements (River's driver sends every query as text and
// modernc re-parses it each time; parsing was ~60% of completion CPU), and
// import enqueues jobs with one INSERT … SELECT from clade_request instead of
// InsertManyFastTx (46 → 9 µs CPU per job; TestSQLiteJobRow checks the rows
// are the same).
//
// Postgres (pgx pool, 32 connections unless the DSN sets pool_max_conns):
// several machines may work one store; jobs are enqueued with River's
// InsertManyFastTx (COPY). A search_path=name DSN parameter selects (and
// creates) the schema.
package jobs
