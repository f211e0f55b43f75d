package jobs

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a Worker's heartbeat (WithHeartbeat).
const (
	// DefaultHeartbeatInterval is how often a Worker writes its heartbeat and
	// releases the jobs of dead workers: 2 s, so that a dead host's jobs come back
	// at most 2 s after DefaultDeadAfter, for one small UPDATE per host every 2 s.
	DefaultHeartbeatInterval = 2 * time.Second
	// DefaultDeadAfter is how long a Worker's heartbeat may go unwritten before
	// it counts as dead: 15 s, over seven intervals, so that a Postgres
	// fail-over, a network blip or a stalled machine of a few seconds does not
	// give a live host's jobs away (which sends them twice, and stops the host:
	// Lost), while a killed host's jobs still come back within 17 s, not after
	// River's 15-minute rescue.
	DefaultDeadAfter = 15 * time.Second
	// deadWorkerRetention is how long the row of a dead worker stays, to be read
	// (Workers) after it died; ReleaseDead then deletes it.
	deadWorkerRetention = time.Hour
)

// WorkerOption configures Register.
type WorkerOption func(*workerConfig)

type workerConfig struct {
	interval, deadAfter, orphanGrace time.Duration
}

// WithHeartbeat sets how often the worker writes its heartbeat (and releases
// dead workers' jobs), and how long after its last heartbeat it counts as dead.
// Defaults to DefaultHeartbeatInterval and DefaultDeadAfter. deadAfter must be at
// least 3 × interval, so that one slow write is not a death. The dead-after
// window is stored in the worker's row: each worker is judged by its own.
func WithHeartbeat(interval, deadAfter time.Duration) WorkerOption {
	return func(c *workerConfig) { c.interval, c.deadAfter = interval, deadAfter }
}

// Worker is this process's entry in the store's table of live workers
// (clade_worker): a row with its host, pid and a heartbeat the process writes
// every interval. The River client of a Client made with ClientConfig.Worker
// takes the worker's ID as its River ID, so every job it fetches names the
// worker as its last attempted_by, and ReleaseDead can tell the running jobs of a
// dead worker from those of a live one.
//
// The heartbeat is written with the database's clock, and a worker is dead
// once its heartbeat is older than its dead-after window by that clock (hosts'
// clocks may differ; the database's is the one they share). A dead worker
// never comes back: its next heartbeat finds itself dead and fires Lost, and
// its late results are dropped (see ReleaseDead). A live worker runs ReleaseDead
// after each heartbeat, and once at Register.
type Worker struct {
	s           *Store
	id          string
	interval    time.Duration
	deadAfter   time.Duration
	orphanGrace time.Duration

	lost      chan struct{}
	lostOnce  sync.Once
	lostTimer *time.Timer
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool

	mu     sync.Mutex
	active map[int64]struct{} // jobs its client is working (begin, end)
}

// Register records this process as a worker of the store and starts its
// heartbeat; it then releases the jobs of workers found dead (ReleaseDead). Make
// the process's Client with ClientConfig.Worker set to it, stop that Client on
// Lost, and Close the worker after the Client has stopped.
func (s *Store) Register(ctx context.Context, opts ...WorkerOption) (*Worker, error) {
	cfg := workerConfig{interval: DefaultHeartbeatInterval, deadAfter: DefaultDeadAfter, orphanGrace: DefaultOrphanGrace}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.interval <= 0 {
		return nil, fmt.Errorf("register worker: heartbeat interval %s must be positive", cfg.interval)
	}
	if cfg.deadAfter < 3*cfg.interval {
		return nil, fmt.Errorf("register worker: dead-after %s must be at least 3 × the heartbeat interval (%s)", cfg.deadAfter, cfg.interval)
	}
	host, _ := os.Hostname()
	pid := os.Getpid()
	w := &Worker{s: s, id: newWorkerID(host, pid), interval: cfg.interval, deadAfter: cfg.deadAfter, orphanGrace: cfg.orphanGrace,
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}), active: map[int64]struct{}{}}
	d := s.dialect()
	start := time.Now()
	if _, err := s.b.exec(ctx, `INSERT INTO clade_worker (id, host, machine, pid, started_at, heartbeat_at, dead_after)
		VALUES ($1, $2, $3, $4, `+d.now+`, `+d.now+`, $5)`,
		w.id, host, machineID(), pid, cfg.deadAfter.Microseconds()); err != nil {
		return nil, fmt.Errorf("register worker: %w", err)
	}
	w.lostTimer = time.AfterFunc(cfg.deadAfter-time.Since(start), func() {
		w.markLost("its heartbeat was not written for " + cfg.deadAfter.String())
	})
	go w.run(start)
	if n, err := s.ReleaseDead(ctx); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("register worker: %w", err)
	} else if n > 0 {
		s.logger.Info("released the jobs of dead workers", "worker_id", w.id, "jobs", n)
	}
	return w, nil
}

// newWorkerID returns a River client ID (at most 100 characters) naming the host
// and pid, with random bytes so that no two processes ever share one.
func newWorkerID(host string, pid int) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, host)
	if len(host) > 60 {
		host = host[:60]
	}
	if host == "" {
		host = "unknown_host"
	}
	return "clade_" + host + "_" + strconv.Itoa(pid) + "_" + hex.EncodeToString(b[:])
}

// machineID names this kernel's boot and pid namespace ("" where unknown): two
// workers with the same host name and machine ID see each other's pids, so a
// worker whose pid is gone is dead at once. Host names alone do not say that:
// containers (or pods on a host network) may share one with separate pids.
func machineID() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + ns
}

// ID is the worker's ID, also its River client's.
func (w *Worker) ID() string { return w.id }

// Lost is closed when the worker counts as dead to the other workers, or will
// shortly: its heartbeat could not be written for its dead-after window (the
// database is unreachable), or was refused because the worker had been found
// dead. Its running jobs are then released, or about to be, to other workers:
// stop the Client (StopAndCancel) so that it fetches no more, Close the Worker
// (its row's deletion gives its jobs back at once if the database answers), and
// register a new Worker to work again. A lost Worker starts no more heartbeats;
// one in flight when Lost fires may still land if the network delivers it late,
// and the row then counts as live for one more window.
func (w *Worker) Lost() <-chan struct{} { return w.lost }

func (w *Worker) markLost(why string) {
	w.lostOnce.Do(func() {
		w.s.logger.Warn("worker lost: other workers take over its jobs", "worker_id", w.id, "reason", why)
		close(w.lost)
	})
}

// run writes the heartbeat every interval and, after each one written, releases
// dead workers' jobs. lastOK is when the last heartbeat written (Register's)
// was sent.
func (w *Worker) run(lastOK time.Time) {
	defer close(w.done)
	// Stopping ends a write in flight too: Close does not wait for a database
	// that does not answer.
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	go func() {
		select {
		case <-w.stop:
			cancelBase()
		case <-base.Done():
		}
	}()
	t := time.NewTicker(w.interval)
	defer t.Stop()
	orphans := map[int64]time.Time{} // releaseOrphans's suspects
	for {
		select {
		case <-w.stop:
			return
		case <-w.lost:
			return
		case <-t.C:
		}
		// A write may take until the worker would be lost; one that succeeds
		// later than that does not make it live again (Lost is final).
		start := time.Now()
		ctx, cancel := context.WithDeadline(base, lastOK.Add(w.deadAfter))
		ok, err := w.beat(ctx)
		cancel()
		switch {
		case base.Err() != nil:
			return
		case err != nil:
			w.s.logger.Warn("worker heartbeat not written", "worker_id", w.id, "err", err)
			continue
		case !ok:
			w.markLost("other workers found it dead")
			return
		}
		// Its row now holds a heartbeat no older than start: the others cannot
		// find it dead before start + deadAfter.
		if !w.lostTimer.Stop() {
			return // lost meanwhile
		}
		lastOK = start
		w.lostTimer.Reset(w.deadAfter - time.Since(start))

		ctx, cancel = context.WithTimeout(base, w.interval)
		n, err := w.s.ReleaseDead(ctx)
		cancel()
		if err != nil && base.Err() == nil {
			w.s.logger.Warn("release dead workers' jobs", "worker_id", w.id, "err", err)
		} else if n > 0 {
			w.s.logger.Info("released the jobs of dead workers", "worker_id", w.id, "jobs", n)
		}
		ctx, cancel = context.WithTimeout(base, w.interval)
		n, err = w.releaseOrphans(ctx, orphans)
		cancel()
		if err != nil && base.Err() == nil {
			w.s.logger.Warn("release orphaned jobs", "worker_id", w.id, "err", err)
		} else if n > 0 {
			w.s.logger.Warn("released jobs recorded as this worker's that it was not working (a fetch or report the network lost)", "worker_id", w.id, "jobs", n)
		}
	}
}

// beat writes the heartbeat; false means the row is gone or dead (a dead worker
// is never made live again: its jobs may already run elsewhere).
func (w *Worker) beat(ctx context.Context) (bool, error) {
	d := w.s.dialect()
	n, err := w.s.b.heartbeat().exec(ctx, `UPDATE clade_worker SET heartbeat_at = `+d.now+`
		WHERE id = $1 AND dead_at IS NULL AND heartbeat_at + dead_after >= `+d.now, w.id)
	return n == 1, err
}

// stopHeartbeat stops the heartbeat goroutine, as a frozen process would.
func (w *Worker) stopHeartbeat() {
	w.stopOnce.Do(func() {
		close(w.stop)
		<-w.done
		w.lostTimer.Stop()
	})
}

// Close stops the heartbeat and deletes the worker's row. Stop the worker's
// Client first: a job still running under a worker without a row is released
// by the next ReleaseDead, as a dead worker's.
func (w *Worker) Close() error {
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		w.stopHeartbeat()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := w.s.b.exec(ctx, `DELETE FROM clade_worker WHERE id = $1`, w.id); err != nil {
			w.closeErr = fmt.Errorf("close worker %s: %w", w.id, err)
		}
	})
	return w.closeErr
}

// WorkerInfo is one row of the store's workers (Workers).
type WorkerInfo struct {
	ID          string
	Host        string
	PID         int64
	StartedAt   time.Time
	HeartbeatAt time.Time
	// DeadAfter is the worker's window: it is dead once its heartbeat is older.
	DeadAfter time.Duration
	// Dead says the worker has been found dead (by ReleaseDead), or its
	// heartbeat is older than DeadAfter by the database's clock.
	Dead bool
}

// Workers returns the store's workers, live ones and those dead within the
// last hour, oldest first.
func (s *Store) Workers(ctx context.Context) ([]WorkerInfo, error) {
	d := s.dialect()
	rs, err := s.b.query(ctx, `SELECT id, host, pid, started_at, heartbeat_at, dead_after,
			dead_at IS NOT NULL OR heartbeat_at + dead_after < `+d.now+`
		FROM clade_worker ORDER BY started_at, id`)
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	defer rs.Close()
	var out []WorkerInfo
	for rs.Next() {
		var wi WorkerInfo
		var started, beat, deadAfter int64
		if err := rs.Scan(&wi.ID, &wi.Host, &wi.PID, &started, &beat, &deadAfter, &wi.Dead); err != nil {
			return nil, fmt.Errorf("workers: %w", err)
		}
		wi.StartedAt, wi.HeartbeatAt = time.UnixMicro(started), time.UnixMicro(beat)
		wi.DeadAfter = time.Duration(deadAfter) * time.Microsecond
		out = append(out, wi)
	}
	return out, rs.Err()
}

// ReleaseDead gives the running request jobs of dead workers to live ones, and
// returns how many. A dead worker is one whose heartbeat is older than its
// dead-after window by the database's clock, or whose process is gone from
// this machine (same host and pid namespace: a SIGKILLed process's jobs come
// back at once); a job whose last attempted_by has no live worker row at all
// (a client made without ClientConfig.Worker, a process from before workers
// existed, a worker whose row was deleted) counts as a dead worker's too. A live
// worker's jobs are never touched. Dead workers' rows are marked dead, for good,
// and deleted an hour later.
//
// Each such job is replaced, not put back in place: the old row is finalized
// (cancelled, its metadata marked clade_released) and a copy is inserted in the
// queue, available at once, with the attempt not counted (attempt − 1, as
// ReleaseRunning and shutdown do). Why: a dead-looking host may be alive behind
// a network partition. When it comes back, River reports its attempt's outcome
// (completed, retry, snooze, cancel) by job id, for whatever row is running under
// that id; a row put back in place and fetched by another worker would be
// overwritten (completed without its result, or sent again). A finalized row
// takes no report, and the late host's completing transaction sees the mark and
// writes nothing (its result and cost are dropped; the copy's run is the one that
// counts), so a request still gets exactly one result.
//
// Use it, through Register, wherever more than one process may work a store
// (always on Postgres); ReleaseRunning only on a store that no other process
// works.
func (s *Store) ReleaseDead(ctx context.Context) (int64, error) {
	d := s.dialect()
	host, _ := os.Hostname()
	machine := machineID()
	var released int64
	err := s.inTx(ctx, func(tx txn) error {
		// Workers of this machine whose process is gone are dead now.
		if machine != "" {
			rs, err := tx.query(ctx, `SELECT id, pid FROM clade_worker WHERE dead_at IS NULL AND host = $1 AND machine = $2`, host, machine)
			if err != nil {
				return err
			}
			var gone []string
			for rs.Next() {
				var id string
				var pid int64
				if err := rs.Scan(&id, &pid); err != nil {
					rs.Close()
					return err
				}
				if !processAlive(int(pid)) {
					gone = append(gone, id)
				}
			}
			rs.Close()
			if err := rs.Err(); err != nil {
				return err
			}
			for _, id := range gone {
				if _, err := tx.exec(ctx, `UPDATE clade_worker SET dead_at = `+d.now+` WHERE id = $1 AND dead_at IS NULL`, id); err != nil {
					return err
				}
			}
		}
		// Marking the dead in this transaction serialises with their heartbeats
		// (which refuse a dead row): a worker is either live here, or dead for
		// good before its jobs are released.
		if _, err := tx.exec(ctx, `UPDATE clade_worker SET dead_at = `+d.now+`
			WHERE id IN (SELECT id FROM clade_worker WHERE dead_at IS NULL AND heartbeat_at + dead_after < `+d.now+`
				ORDER BY id`+d.lock+`)`); err != nil {
			return err
		}
		rs, err := tx.query(ctx, `SELECT id FROM river_job j WHERE kind = '`+JobKind+`' AND state = 'running'
			AND NOT EXISTS (SELECT 1 FROM clade_worker w WHERE w.id = `+d.lastAttemptedBy+` AND w.dead_at IS NULL)
			ORDER BY id`+d.lockSkipLocked)
		if err != nil {
			return err
		}
		ids, err := scanIDs(rs)
		if err != nil || len(ids) == 0 {
			return err
		}
		released, err = s.requeue(ctx, tx, ids)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("release dead workers' jobs: %w", err)
	}
	// Forget workers long dead.
	if _, err := s.b.exec(ctx, `DELETE FROM clade_worker WHERE dead_at IS NOT NULL AND dead_at < `+d.now+` - $1`,
		deadWorkerRetention.Microseconds()); err != nil {
		return released, fmt.Errorf("delete dead workers: %w", err)
	}
	return released, nil
}

// requeue replaces each running job of ids by a copy, available now with its
// attempt uncounted, and finalizes the original as released (see ReleaseDead).
func (s *Store) requeue(ctx context.Context, tx txn, ids []int64) (int64, error) {
	d := s.dialect()
	in := idList(ids)
	// state takes its default, available (a text literal would not cast to
	// Postgres's river_job_state in INSERT … SELECT).
	if _, err := tx.exec(ctx, `INSERT INTO river_job (args, attempt, attempted_at, attempted_by, created_at, errors,
			kind, max_attempts, metadata, priority, queue, scheduled_at, tags)
		SELECT args, `+s.b.greatest()+`(attempt - 1, 0), attempted_at, attempted_by, created_at, errors,
			kind, max_attempts, metadata, priority, queue, `+d.jobNow+`, tags
		FROM river_job WHERE id IN (`+in+`) ORDER BY id`); err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	n, err := tx.exec(ctx, `UPDATE river_job SET state = 'cancelled', finalized_at = `+d.jobNow+`,
		metadata = `+d.markReleased+` WHERE id IN (`+in+`)`)
	if err != nil {
		return 0, fmt.Errorf("finalize released: %w", err)
	}
	return n, nil
}

// DefaultOrphanGrace is how long a job may be recorded as running under a live
// worker while the worker's client is not working it, before the worker
// releases it: longer than River's fetch and completion timeouts (10 s each), so
// a job just fetched, or whose outcome River is still reporting, is not taken
// for an orphan.
const DefaultOrphanGrace = 20 * time.Second

// WithOrphanGrace sets how long a job may look orphaned before the worker
// releases it (default DefaultOrphanGrace; tests).
func WithOrphanGrace(d time.Duration) WorkerOption {
	return func(c *workerConfig) { c.orphanGrace = d }
}

// begin and end bracket the worker's client working job id.
func (w *Worker) begin(id int64) {
	w.mu.Lock()
	w.active[id] = struct{}{}
	w.mu.Unlock()
}

func (w *Worker) end(id int64) {
	w.mu.Lock()
	delete(w.active, id)
	w.mu.Unlock()
}

// releaseOrphans gives back the jobs the store records as running under this
// worker that its client is not working: a fetch whose answer the network lost
// (the database marked the jobs running, the client never got them), or an
// outcome River gave up reporting. Without it they would stay running as long
// as the worker lives, and the run would never end. A job is released when it
// has been such an orphan for its grace (WithOrphanGrace; seen is the worker's record of when
// each was first seen so).
func (w *Worker) releaseOrphans(ctx context.Context, seen map[int64]time.Time) (int64, error) {
	d := w.s.dialect()
	rs, err := w.s.b.query(ctx, `SELECT id FROM river_job j WHERE kind = '`+JobKind+`' AND state = 'running'
		AND `+d.lastAttemptedBy+` = $1 ORDER BY id`, w.id)
	if err != nil {
		return 0, err
	}
	ids, err := scanIDs(rs)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	var due []int64
	still := make(map[int64]bool, len(ids))
	w.mu.Lock()
	for _, id := range ids {
		if _, working := w.active[id]; working {
			continue
		}
		still[id] = true
		if first, ok := seen[id]; !ok {
			seen[id] = now
		} else if now.Sub(first) >= w.orphanGrace {
			due = append(due, id)
		}
	}
	w.mu.Unlock()
	for id := range seen {
		if !still[id] {
			delete(seen, id)
		}
	}
	if len(due) == 0 {
		return 0, nil
	}
	var n int64
	err = w.s.inTx(ctx, func(tx txn) error {
		rs, err := tx.query(ctx, `SELECT id FROM river_job j WHERE id IN (`+idList(due)+`) AND state = 'running'
			AND `+d.lastAttemptedBy+` = $1 ORDER BY id`+d.lockSkipLocked, w.id)
		if err != nil {
			return err
		}
		ids, err := scanIDs(rs)
		if err != nil || len(ids) == 0 {
			return err
		}
		n, err = w.s.requeue(ctx, tx, ids)
		return err
	})
	for _, id := range due {
		delete(seen, id)
	}
	return n, err
}

// idList formats ids for an IN (…) list.
func idList(ids []int64) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	return b.String()
}

// errReleased means the job was released from its worker, found dead, to
// another (ReleaseDead) before this attempt's result was committed: nothing was
// written, the released copy's run decides the request's result.
var errReleased = errors.New("the job was released to another worker (this one was found dead); its result is dropped")

// lockAttempt locks the job's row for the completing transaction and checks
// that it is still this attempt's to complete: not released by ReleaseDead
// (errReleased) and not deleted (errJobNotRunning). ReleaseDead skips a row
// locked here, so the two never both win.
func (s *Store) lockAttempt(ctx context.Context, tx txn, jobID int64) error {
	d := s.dialect()
	var released bool
	err := tx.queryRow(ctx, `SELECT `+d.released+` FROM river_job WHERE id = $1`+d.lock, jobID).Scan(&released)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errJobNotRunning
	case err != nil:
		return fmt.Errorf("lock job %d: %w", jobID, err)
	case released:
		return errReleased
	}
	return nil
}

// dialect holds the SQL that workers need and that differs between backends.
type dialect struct {
	// now is the database's clock in microseconds since the Unix epoch.
	now string
	// jobNow is the database's clock as River stores times in river_job.
	jobNow string
	// lastAttemptedBy is the last client ID in river_job j's attempted_by.
	lastAttemptedBy string
	// released is true for a river_job row that ReleaseDead replaced.
	released string
	// markReleased is river_job's metadata with the released mark added.
	markReleased string
	// lock and lockSkipLocked end a SELECT that locks the rows it returns.
	lock, lockSkipLocked string
}

func (s *Store) dialect() dialect {
	if s.b.kind() == "postgres" {
		return dialect{
			now:             `(extract(epoch FROM now()) * 1000000)::bigint`,
			jobNow:          `now()`,
			lastAttemptedBy: `j.attempted_by[cardinality(j.attempted_by)]`,
			released:        `(metadata->>'clade_released') IS NOT NULL`,
			markReleased:    `metadata || jsonb_build_object('clade_released', (extract(epoch FROM now()) * 1000000)::bigint)`,
			lock:            ` FOR UPDATE`,
			lockSkipLocked:  ` FOR UPDATE SKIP LOCKED`,
		}
	}
	// SQLite has one writer at a time: a write transaction holds every row.
	return dialect{
		now:             `CAST(unixepoch('subsec') * 1000000 AS INTEGER)`,
		jobNow:          `datetime('now', 'subsec')`,
		lastAttemptedBy: `json_extract(j.attempted_by, '$[#-1]')`,
		released:        `json_extract(metadata, '$.clade_released') IS NOT NULL`,
		markReleased:    `jsonb_set(metadata, '$.clade_released', CAST(unixepoch('subsec') * 1000000 AS INTEGER))`,
	}
}
