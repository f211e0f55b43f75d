package jobs_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/testkit"
)

// Short heartbeats, so that the tests run in seconds. 2 s leaves a loaded CI
// machine (two cores, -race, other packages' tests) ten intervals of slack
// before a live worker would count as dead.
const (
	testInterval  = 200 * time.Millisecond
	testDeadAfter = 2 * time.Second
	// testSlack is how late, past its bound, a release or Lost may be seen: one
	// ReleaseDead or heartbeat write on a loaded machine, and the polls.
	testSlack = time.Second
)

func register(t *testing.T, ctx context.Context, s *jobs.Store) *jobs.Worker {
	t.Helper()
	w, err := s.Register(ctx, jobs.WithHeartbeat(testInterval, testDeadAfter))
	if err != nil {
		t.Fatalf("Register() error = %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Worker.Close() = %v", err)
		}
	})
	return w
}

// holder is a WorkFunc that reports each job it starts on started and holds it
// until release is closed (then returns result(job)) or its context ends.
type holder struct {
	started  chan string
	release  chan struct{}
	result   func(*jobs.Job) jobs.Result
	returned atomic.Int64 // results returned after release
}

func newHolder(result func(*jobs.Job) jobs.Result) *holder {
	return &holder{started: make(chan string, 100), release: make(chan struct{}), result: result}
}

func (h *holder) work(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
	h.started <- job.Request.CustomID
	select {
	case <-h.release:
		h.returned.Add(1)
		return h.result(job), nil
	case <-ctx.Done():
		return jobs.Result{}, ctx.Err()
	}
}

// take waits for n jobs to start and returns their custom_ids.
func (h *holder) take(t *testing.T, n int) []string {
	t.Helper()
	var ids []string
	timeout := time.After(30 * time.Second)
	for len(ids) < n {
		select {
		case id := <-h.started:
			ids = append(ids, id)
		case <-timeout:
			t.Fatalf("%d of %d jobs started", len(ids), n)
		}
	}
	return ids
}

// waitFor polls cond every 20 ms until it is true, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runningBy(t *testing.T, ctx context.Context, s *jobs.Store) map[string]int64 {
	t.Helper()
	by, err := s.RunningBy(ctx)
	if err != nil {
		t.Fatalf("RunningBy() error = %v", err)
	}
	return by
}

func released(t *testing.T, ctx context.Context, s *jobs.Store) int64 {
	t.Helper()
	n, err := s.Released(ctx)
	if err != nil {
		t.Fatalf("Released() error = %v", err)
	}
	return n
}

func jobCounts(t *testing.T, ctx context.Context, s *jobs.Store, runID int64) map[string]int64 {
	t.Helper()
	jc, err := s.JobCounts(ctx, runID)
	if err != nil {
		t.Fatalf("JobCounts() error = %v", err)
	}
	return jc
}

func workerInfo(t *testing.T, ctx context.Context, s *jobs.Store, id string) jobs.WorkerInfo {
	t.Helper()
	ws, err := s.Workers(ctx)
	if err != nil {
		t.Fatalf("Workers() error = %v", err)
	}
	for _, w := range ws {
		if w.ID == id {
			return w
		}
	}
	t.Fatalf("Workers() has no worker %s: %+v", id, ws)
	return jobs.WorkerInfo{}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestWorkerDeadJobsComeBack: two workers on one store (two Stores, as two
// hosts), each holding three running jobs; one stops heart-beating without
// closing (a frozen or partitioned host). Its three jobs come back to the queue
// no sooner than its dead-after window and no later than one interval (and
// slack) past it, without counting the attempt; the live worker's three stay
// running, its own, for two more windows; then the run finishes with one result
// per request.
func TestWorkerDeadJobsComeBack(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dsn := b.NewDSN(t)
			sA, sB := jobstest.Open(t, ctx, dsn), jobstest.Open(t, ctx, dsn)
			const n = 10
			run, _ := jobstest.Import(t, ctx, sA, jobs.ImportOptions{Path: jobstest.WriteInput(t, n)})

			wA := register(t, ctx, sA)
			hA := newHolder(jobstest.EchoResult)
			cA := jobstest.StartClient(t, ctx, sA, hA.work, jobs.ClientConfig{MaxWorkers: 3, Worker: wA})
			hA.take(t, 3)
			wB := register(t, ctx, sB)
			hB := newHolder(jobstest.EchoResult)
			jobstest.StartClient(t, ctx, sB, hB.work, jobs.ClientConfig{MaxWorkers: 3, Worker: wB})
			hB.take(t, 3)
			both := map[string]int64{wA.ID(): 3, wB.ID(): 3}
			if got := runningBy(t, ctx, sB); !maps.Equal(got, both) {
				t.Fatalf("running jobs by attempted_by = %v, want %v (each client's River ID is its worker's)", got, both)
			}

			stopped := time.Now()
			wA.StopHeartbeat()
			// A's last heartbeat was written at most one interval before stopped.
			earliest := stopped.Add(testDeadAfter - testInterval - 100*time.Millisecond)
			onlyB := map[string]int64{wB.ID(): 3}
			waitFor(t, testDeadAfter+testInterval+testSlack, "the dead worker's jobs did not come back", func() bool {
				if got := runningBy(t, ctx, sB); !maps.Equal(got, both) && !maps.Equal(got, onlyB) {
					t.Fatalf("running jobs by attempted_by = %v, want %v or %v: the live worker's jobs were touched", got, both, onlyB)
				}
				r := released(t, ctx, sB)
				if r > 0 && time.Now().Before(earliest) {
					t.Fatalf("%d jobs released %s after the heartbeat stopped, before the dead-after window (%s)", r, time.Since(stopped), testDeadAfter)
				}
				return r == 3
			})
			t.Logf("released %s after the heartbeat stopped (dead after %s, interval %s)", time.Since(stopped).Round(time.Millisecond), testDeadAfter, testInterval)
			if info := workerInfo(t, ctx, sB, wA.ID()); !info.Dead {
				t.Errorf("Workers(): the stopped worker is not dead: %+v", info)
			}
			// Back in the queue, the attempt not counted: every available job is at
			// attempt 0 (3 released, 4 never fetched; B's slots are full).
			if got, err := sB.Attempts(ctx, "available"); err != nil || !maps.Equal(got, map[int]int64{0: 7}) {
				t.Fatalf("available jobs by attempt = %v, %v; want 7 at attempt 0", got, err)
			}

			// The live worker keeps its jobs, and its liveness.
			for until := time.Now().Add(2 * testDeadAfter); time.Now().Before(until); time.Sleep(50 * time.Millisecond) {
				if got := runningBy(t, ctx, sB); !maps.Equal(got, onlyB) {
					t.Fatalf("running jobs by attempted_by = %v, want %v: the live worker's jobs were released", got, onlyB)
				}
				if isClosed(wB.Lost()) {
					t.Fatal("the live worker is Lost")
				}
			}
			if r := released(t, ctx, sB); r != 3 {
				t.Fatalf("%d jobs released, want the dead worker's 3", r)
			}

			close(hB.release)
			jobstest.Wait(t, ctx, sB, run.ID)
			// The dead host's attempts end (its client is stopped): River's reports
			// of them change nothing.
			if err := cA.StopAndCancel(ctx); err != nil {
				t.Fatal(err)
			}
			lines, _ := jobstest.Export(t, ctx, sB, run.ID, true)
			if len(lines) != n {
				t.Fatalf("%d results, want %d", len(lines), n)
			}
			for i, rl := range lines {
				if rl.CustomID != jobstest.CustomID(i) {
					t.Fatalf("result %d is %s, want %s (each once)", i, rl.CustomID, jobstest.CustomID(i))
				}
			}
			if jc := jobCounts(t, ctx, sB, run.ID); jc["completed"] != n || jc["cancelled"] != 3 || len(jc) != 2 {
				t.Fatalf("jobs by state = %v, want %d completed and the 3 released rows cancelled", jc, n)
			}
		})
	}
}

// TestWorkerLateCommitIsNoOp: a host found dead comes back (a network
// partition) and commits the two results it had worked on, after its jobs were
// released and taken by another worker: one whose copy already has its result
// (Y), one whose copy is still running elsewhere (X). Neither commit writes
// anything (no second result, no cost, no AfterCommit), neither touches the
// copy that another worker runs, and the run ends with one result per request,
// the live worker's.
func TestWorkerLateCommitIsNoOp(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dsn := b.NewDSN(t)
			sA, sB := jobstest.Open(t, ctx, dsn), jobstest.Open(t, ctx, dsn)
			run, _ := jobstest.Import(t, ctx, sA, jobs.ImportOptions{Path: jobstest.WriteInput(t, 2)})
			x, y := jobstest.CustomID(0), jobstest.CustomID(1)

			const lateCost = 1.0
			late := func(job *jobs.Job) jobs.Result {
				res := jobstest.EchoResult(job)
				res.Message = json.RawMessage(`{"id":"msg_late","type":"message"}`)
				res.CostUSD = lateCost
				return res
			}
			var afterA atomic.Int64
			wA := register(t, ctx, sA)
			hA := newHolder(late)
			cA := jobstest.StartClient(t, ctx, sA, hA.work, jobs.ClientConfig{MaxWorkers: 2, Worker: wA,
				AfterCommit: func(*jobs.Job, jobs.Result) { afterA.Add(1) }})
			hA.take(t, 2)
			wA.StopHeartbeat()

			var mu sync.Mutex
			var afterB []string
			releaseX := make(chan struct{})
			startedX := make(chan struct{})
			wB := register(t, ctx, sB)
			jobstest.StartClient(t, ctx, sB, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
				if job.Request.CustomID == x {
					close(startedX)
					select {
					case <-releaseX:
					case <-ctx.Done():
						return jobs.Result{}, ctx.Err()
					}
				}
				return jobstest.EchoResult(job), nil
			}, jobs.ClientConfig{MaxWorkers: 2, Worker: wB, AfterCommit: func(job *jobs.Job, _ jobs.Result) {
				mu.Lock()
				afterB = append(afterB, job.Request.CustomID)
				mu.Unlock()
			}})
			select {
			case <-startedX:
			case <-time.After(testDeadAfter + testInterval + 30*time.Second):
				t.Fatal("the live worker never got the dead one's job")
			}
			waitFor(t, 30*time.Second, "the live worker did not complete "+y, func() bool {
				st, err := sB.Status(ctx, run.ID)
				return err == nil && st.Results[jobs.Succeeded] == 1
			})

			// The partition heals: the dead host's calls return and it commits.
			close(hA.release)
			if err := cA.Stop(ctx); err != nil { // waits for both attempts to end
				t.Fatal(err)
			}
			if got := hA.returned.Load(); got != 2 {
				t.Fatalf("the dead host returned %d results, want 2 (both late commits tried)", got)
			}
			if got := afterA.Load(); got != 0 {
				t.Fatalf("AfterCommit ran %d times for the late commits, want 0", got)
			}
			st, err := sB.Status(ctx, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.Results[jobs.Succeeded] != 1 || st.CostUSD >= lateCost {
				t.Fatalf("after the late commits: results %v, cost %v; want only %s's result, without the late cost", st.Results, st.CostUSD, y)
			}
			if got, want := runningBy(t, ctx, sB), map[string]int64{wB.ID(): 1}; !maps.Equal(got, want) {
				t.Fatalf("running jobs by attempted_by = %v, want %v: the late host's report touched the copy that runs", got, want)
			}

			close(releaseX)
			jobstest.Wait(t, ctx, sB, run.ID)
			lines, _ := jobstest.Export(t, ctx, sB, run.ID, true)
			if len(lines) != 2 || lines[0].CustomID != x || lines[1].CustomID != y {
				t.Fatalf("results = %+v, want one each for %s and %s", lines, x, y)
			}
			for _, rl := range lines {
				if strings.Contains(string(rl.Result.Message), "msg_late") {
					t.Errorf("result of %s is the late host's: %s", rl.CustomID, rl.Result.Message)
				}
			}
			if st, err = sB.Status(ctx, run.ID); err != nil || st.CostUSD >= lateCost {
				t.Fatalf("cost %v (%v), want the live worker's only", st.CostUSD, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(afterB) != 2 {
				t.Fatalf("the live worker's AfterCommit ran for %v, want both requests", afterB)
			}
			if jc := jobCounts(t, ctx, sB, run.ID); jc["completed"] != 2 || jc["cancelled"] != 2 || len(jc) != 2 {
				t.Fatalf("jobs by state = %v, want 2 completed copies and the 2 released rows cancelled", jc)
			}
		})
	}
}

// TestWorkerKilledProcessJobsComeBack: a child process registers a worker with
// a one-minute dead-after window, holds three jobs, and is killed (SIGKILL). A
// live worker on the same machine sees its pid gone and gives its jobs back at
// its next heartbeat, long before the minute; the run finishes with one result
// per request.
func TestWorkerKilledProcessJobsComeBack(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dsn := b.NewDSN(t)
			s := jobstest.Open(t, ctx, dsn)
			const n = 10
			run, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteInput(t, n)})

			const childDeadAfter = time.Minute
			child := jobstest.StartWorkerChild(t, ctx, dsn, 3, testInterval, childDeadAfter)
			if got, want := runningBy(t, ctx, s), map[string]int64{child.WorkerID: 3}; !maps.Equal(got, want) {
				t.Fatalf("running jobs by attempted_by = %v, want %v", got, want)
			}
			w := register(t, ctx, s)
			if r := released(t, ctx, s); r != 0 {
				t.Fatalf("%d jobs released while their worker lives", r)
			}
			child.Kill(t)
			killed := time.Now()
			jobstest.StartClient(t, ctx, s, jobstest.Echo, jobs.ClientConfig{MaxWorkers: 4, Worker: w})
			jobstest.Wait(t, ctx, s, run.ID)
			if took := time.Since(killed); took > childDeadAfter/4 {
				t.Fatalf("the killed worker's jobs came back after %s, want within a few heartbeats (its pid is gone)", took)
			}
			if r := released(t, ctx, s); r != 3 {
				t.Fatalf("%d jobs released, want the killed worker's 3", r)
			}
			if info := workerInfo(t, ctx, s, child.WorkerID); !info.Dead {
				t.Errorf("Workers(): the killed worker is not dead: %+v", info)
			}
			lines, _ := jobstest.Export(t, ctx, s, run.ID, true)
			if len(lines) != n {
				t.Fatalf("%d results, want %d", len(lines), n)
			}
			for i, rl := range lines {
				if rl.CustomID != jobstest.CustomID(i) {
					t.Fatalf("result %d is %s, want %s (each once)", i, rl.CustomID, jobstest.CustomID(i))
				}
			}
		})
	}
}

// TestReleaseDeadTakesJobsOfUnregisteredClients: a job running under a client
// made without a Worker has no live worker row, so ReleaseDead gives it back
// (as a process from before workers, or one whose row is gone), and that
// client's late result is dropped.
func TestReleaseDeadTakesJobsOfUnregisteredClients(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			run, _ := jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteInput(t, 2)})
			// The first two jobs return their results once released; any later one
			// (a copy this client fetches again) waits for the client's stop.
			h := newHolder(jobstest.EchoResult)
			var fetched atomic.Int64
			c := jobstest.StartClient(t, ctx, s, func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
				if fetched.Add(1) <= 2 {
					return h.work(ctx, job)
				}
				<-ctx.Done()
				return jobs.Result{}, ctx.Err()
			}, jobs.ClientConfig{MaxWorkers: 2})
			h.take(t, 2)
			n, err := s.ReleaseDead(ctx)
			if err != nil || n != 2 {
				t.Fatalf("ReleaseDead() = %d, %v; want 2", n, err)
			}
			close(h.release)
			waitFor(t, 30*time.Second, "the released jobs' work did not return", func() bool { return h.returned.Load() == 2 })
			if err := c.StopAndCancel(ctx); err != nil {
				t.Fatal(err)
			}
			if st := jobCounts(t, ctx, s, run.ID); st["available"] != 2 || st["cancelled"] != 2 || len(st) != 2 {
				t.Fatalf("jobs by state = %v, want the 2 copies available and the 2 released rows cancelled", st)
			}
			if st, err := s.Status(ctx, run.ID); err != nil || st.Pending != 2 {
				t.Fatalf("Status() pending = %v, %v; want 2 (the late results dropped)", st, err)
			}
			w := register(t, ctx, s)
			jobstest.StartClient(t, ctx, s, jobstest.Echo, jobs.ClientConfig{Worker: w})
			jobstest.Wait(t, ctx, s, run.ID)
		})
	}
}

// sqliteWorker opens a SQLite store of its own (at path) and registers a worker
// of it with the tests' short heartbeat.
func sqliteWorker(t *testing.T, ctx context.Context) (path string, s *jobs.Store, w *jobs.Worker) {
	t.Helper()
	path = jobstest.SQLite().NewDSN(t)
	s = jobstest.Open(t, ctx, path)
	return path, s, register(t, ctx, s)
}

// TestWorkerLostSQLite: another process holds the SQLite database's write lock
// for longer than the worker's dead-after window, so its heartbeat cannot be
// written: Lost fires once the window has passed since its last heartbeat, not
// while it could still write.
func TestWorkerLostSQLite(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path, s, w := sqliteWorker(t, ctx)
	beat := waitHeartbeat(t, ctx, s, w, time.Time{}, testDeadAfter+testInterval)

	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(1000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	expectLost(t, w, cut, time.Time{})
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	expectStaysLost(t, ctx, s, w, beat)
}

// TestWorkerHeartbeatBesideQueuedWritesSQLite: the heartbeat of a worker on
// SQLite does not wait for the store's one write connection. While that
// connection stays taken (as when hundreds of the process's jobs queue their
// writes on a loaded host) for longer than the dead-after window, the heartbeat
// is still written, and the worker is not lost.
func TestWorkerHeartbeatBesideQueuedWritesSQLite(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path, s, w := sqliteWorker(t, ctx)
	other := jobstest.Open(t, ctx, path) // reads the worker's row: s's reads of it would wait too
	beat := waitHeartbeat(t, ctx, other, w, time.Time{}, testDeadAfter+testInterval)

	release, err := s.HoldWriteConn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	held := time.Now()
	beat = waitHeartbeat(t, ctx, other, w, beat, testDeadAfter)
	select {
	case <-w.Lost():
		t.Fatalf("the worker was lost %s after its store's write connection was taken", time.Since(held).Round(time.Millisecond))
	case <-time.After(time.Until(held.Add(testDeadAfter + 2*testInterval))):
	}
	waitHeartbeat(t, ctx, other, w, beat, testDeadAfter)
}

// TestWorkerLostPostgres: the worker's store reaches Postgres through a TCP
// proxy. Its connections killed by the server (pg_terminate_backend) are a blip
// it survives: the pool reconnects and the heartbeat goes on. A partition (the
// proxy stops passing bytes, in both directions, without closing anything)
// leaves it unable to write its heartbeat: Lost fires once its dead-after
// window has passed since its last heartbeat, and the worker stays dead after
// the partition heals.
func TestWorkerLostPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := testkit.PostgresURL(t)
	dsn := jobstest.Postgres().NewDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, u.Host)
	app := fmt.Sprintf("clade_lost_%d", time.Now().UnixNano())
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery, u.Host = q.Encode(), p.addr()
	s := jobstest.Open(t, ctx, u.String())
	direct := jobstest.Open(t, ctx, dsn)
	w := register(t, ctx, s)
	beat := waitHeartbeat(t, ctx, direct, w, time.Time{}, testDeadAfter+testInterval)

	// A blip: the server ends every connection of the worker's store.
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var killed int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k`, app).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("pg_terminate_backend: %d connections, %v; want some", killed, err)
	}
	beat = waitHeartbeat(t, ctx, direct, w, beat, testDeadAfter)
	if isClosed(w.Lost()) {
		t.Fatal("Lost after a blip the pool reconnects from")
	}

	// The last heartbeat written before the cut: on a loaded machine it may be
	// older than an interval, and the window runs from it.
	last := workerInfo(t, ctx, direct, w.ID()).HeartbeatAt
	p.cut(true)
	cut := time.Now()
	expectLost(t, w, cut, last)
	p.cut(false)
	expectStaysLost(t, ctx, direct, w, beat)
}

// waitHeartbeat waits for the worker's heartbeat to be written after after
// (the zero time: any), and returns it.
func waitHeartbeat(t *testing.T, ctx context.Context, s *jobs.Store, w *jobs.Worker, after time.Time, timeout time.Duration) time.Time {
	t.Helper()
	var beat time.Time
	waitFor(t, timeout, "the worker's heartbeat was not written", func() bool {
		beat = workerInfo(t, ctx, s, w.ID()).HeartbeatAt
		return beat.After(after) && !isClosed(w.Lost())
	})
	return beat
}

// expectLost checks that Lost fires within the dead-after window (and slack)
// after cut, and not before the window less one interval (the last heartbeat
// may have been written an interval before cut) from the last heartbeat written
// before it, when known (lastBeat), else from cut.
func expectLost(t *testing.T, w *jobs.Worker, cut, lastBeat time.Time) {
	t.Helper()
	select {
	case <-w.Lost():
	case <-time.After(testDeadAfter + testSlack):
		t.Fatalf("Lost did not fire %s after the heartbeat could no longer be written", testDeadAfter+testSlack)
	}
	took := time.Since(cut)
	from := took
	if !lastBeat.IsZero() && lastBeat.Before(cut) {
		from = time.Since(lastBeat)
	}
	if from < testDeadAfter-testInterval-100*time.Millisecond {
		t.Fatalf("Lost fired %s after the cut and %s after the last heartbeat before it, before the dead-after window (%s)", took, from, testDeadAfter)
	}
	t.Logf("Lost %s after the cut (dead after %s)", took.Round(time.Millisecond), testDeadAfter)
}

// expectStaysLost checks that a lost worker, its database reachable again,
// writes no more heartbeats, and is found dead within its window. A heartbeat
// in flight when it was lost may still land as the network comes back (a late
// delivery): it is no later than the first poll here, and the worker is found
// dead one window after it.
func expectStaysLost(t *testing.T, ctx context.Context, s *jobs.Store, w *jobs.Worker, lastBeat time.Time) {
	t.Helper()
	time.Sleep(2 * testInterval) // let a late delivery land
	before := workerInfo(t, ctx, s, w.ID()).HeartbeatAt
	if before.Before(lastBeat) {
		t.Fatalf("heartbeat %s went back from %s", before, lastBeat)
	}
	for until := time.Now().Add(3 * testInterval); time.Now().Before(until); time.Sleep(50 * time.Millisecond) {
		if got := workerInfo(t, ctx, s, w.ID()).HeartbeatAt; !got.Equal(before) {
			t.Fatalf("a lost worker wrote a heartbeat (%s, was %s)", got, before)
		}
	}
	waitFor(t, testDeadAfter+testSlack, "the lost worker was not found dead", func() bool {
		if _, err := s.ReleaseDead(ctx); err != nil {
			t.Fatal(err)
		}
		return workerInfo(t, ctx, s, w.ID()).Dead
	})
}

// TestRegisterRefusesBadHeartbeat: a heartbeat that is not positive, or a
// dead-after window under three intervals, is an error, not replaced.
func TestRegisterRefusesBadHeartbeat(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := jobstest.Open(t, ctx, jobstest.SQLite().NewDSN(t))
	for _, tt := range []struct {
		name                string
		interval, deadAfter time.Duration
	}{
		{name: "zero interval", interval: 0, deadAfter: time.Second},
		{name: "negative interval", interval: -time.Second, deadAfter: time.Second},
		{name: "window under three intervals", interval: time.Second, deadAfter: 2 * time.Second},
	} {
		if w, err := s.Register(ctx, jobs.WithHeartbeat(tt.interval, tt.deadAfter)); err == nil {
			w.Close()
			t.Errorf("%s: Register(WithHeartbeat(%s, %s)) = nil error, want one", tt.name, tt.interval, tt.deadAfter)
		}
	}
	if ws, err := s.Workers(ctx); err != nil || len(ws) != 0 {
		t.Fatalf("Workers() = %v, %v; want none registered", ws, err)
	}
}

// proxy passes TCP connections to target until cut, when it stops passing
// bytes (and new connections) in both directions without closing anything, as
// a network partition does.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	isCut  bool
	closed bool
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) cut(v bool) {
	p.mu.Lock()
	p.isCut = v
	p.cond.Broadcast()
	p.mu.Unlock()
}

// pass blocks while the proxy is cut; false once it is closed.
func (p *proxy) pass() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.isCut && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *proxy) serve(c net.Conn) {
	if !p.track(c) || !p.pass() {
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(up) {
		c.Close()
		return
	}
	go p.pipe(up, c)
	p.pipe(c, up)
}

func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass() {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	conns := p.conns
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
}

// TestWorkerReleasesItsOrphans: jobs the store records as running under a live
// worker that its client is not working (a fetch whose answer the network lost)
// come back after the worker's orphan grace, not before; the run can then end.
func TestWorkerReleasesItsOrphans(t *testing.T) {
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := jobstest.Open(t, ctx, b.NewDSN(t))
			jobstest.Import(t, ctx, s, jobs.ImportOptions{Path: jobstest.WriteInput(t, 5)})
			const grace = time.Second
			w, err := s.Register(ctx, jobs.WithHeartbeat(testInterval, testDeadAfter), jobs.WithOrphanGrace(grace))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if n, err := s.MarkRunningBy(ctx, 3, w.ID()); err != nil || n != 3 {
				t.Fatalf("MarkRunningBy = %d, %v; want 3", n, err)
			}
			marked := time.Now()
			waitFor(t, grace+3*testInterval+testSlack, "the orphans did not come back", func() bool {
				by, err := s.RunningBy(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if by[w.ID()] > 0 {
					return false
				}
				if d := time.Since(marked); d < grace {
					t.Fatalf("orphans released %v after they were marked, before the grace (%v)", d, grace)
				}
				return true
			})
			if n, err := s.Released(ctx); err != nil || n != 3 {
				t.Errorf("Released = %d, %v; want the 3 orphans", n, err)
			}
			if isClosed(w.Lost()) {
				t.Error("the worker releasing its orphans was lost")
			}
		})
	}
}
