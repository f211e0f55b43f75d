package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"modernc.org/sqlite"

	"github.com/clade-dev/clade/internal/intake"
)

// SQLite settings. WAL lets readers run beside the one writer; synchronous=NORMAL
// in WAL mode loses no committed transaction on a process crash (only, possibly,
// the last ones on power loss); busy_timeout makes another process's writer wait
// instead of failing; _txlock=immediate takes the write lock at BEGIN, so two
// processes never deadlock upgrading a read transaction.
const (
	sqliteBusyTimeoutMS = 10000
	sqliteReadConns     = 4
)

type sqliteBackend struct {
	db   *sql.DB // one connection: all writes, and River
	ro   *sql.DB // read-only pool for long reads
	beat *sql.DB // one connection: the worker heartbeat (see heartbeat)
	path string
}

func sqliteDSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS))
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	// Statement journals (multi-row INSERT ... ON CONFLICT) in memory, not in temp
	// files: they were half the writes of reading batch results.
	q.Add("_pragma", "temp_store(MEMORY)")
	if readOnly {
		q.Add("_pragma", "query_only(ON)")
	} else {
		q.Set("_txlock", "immediate")
		// A 16 MB page cache for the one writer (SQLite's default is 2 MB): writing
		// results rereads fewer pages (docs/benchmarks.md, batch mode at scale).
		q.Add("_pragma", "cache_size(-16384)")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// openSQLiteDB opens a pool whose connections cache prepared statements (see
// stmtCacheConn).
func openSQLiteDB(dsn string) (*sql.DB, error) {
	base, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(stmtCacheConnector{base}), nil
}

func openSQLite(ctx context.Context, path string) (*sqliteBackend, error) {
	writer := sqliteDSN(path, false)
	db, err := openSQLiteDB(writer)
	if err != nil {
		return nil, err
	}
	// River's SQLite driver needs one connection: SQLite allows one writer, and
	// River runs work in parallel that would otherwise fail with SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	ro, err := openSQLiteDB(sqliteDSN(path, true))
	if err != nil {
		db.Close()
		return nil, err
	}
	ro.SetMaxOpenConns(sqliteReadConns)
	beat, err := openSQLiteDB(writer)
	if err != nil {
		ro.Close()
		db.Close()
		return nil, err
	}
	beat.SetMaxOpenConns(1)
	return &sqliteBackend{db: db, ro: ro, beat: beat, path: path}, nil
}

func (b *sqliteBackend) kind() string     { return "sqlite" }
func (b *sqliteBackend) runOfJob() string { return "json_extract(args, '$.run')" }
func (b *sqliteBackend) requestOfJob() string {
	return "json_extract(args, '$.req')"
}
func (b *sqliteBackend) greatest() string { return "max" }
func (b *sqliteBackend) reader() querier  { return sqlQuerier{b.ro} }

// heartbeat is a write connection of its own. On the one connection a beat
// would wait for every statement queued before it, and longer: database/sql
// hands a freed connection to a random waiter, so with hundreds of jobs writing
// on a loaded host a beat could miss the worker's dead-after window and the
// process count as lost while it works. On its own connection a beat waits only
// for the write lock between two statements, as another process's would
// (busy_timeout).
func (b *sqliteBackend) heartbeat() querier { return sqlQuerier{b.beat} }

func (b *sqliteBackend) close() error {
	return errors.Join(b.beat.Close(), b.ro.Close(), b.db.Close())
}

func (b *sqliteBackend) exec(ctx context.Context, q string, args ...any) (int64, error) {
	return sqlQuerier{b.db}.exec(ctx, q, args...)
}

func (b *sqliteBackend) query(ctx context.Context, q string, args ...any) (rows, error) {
	return sqlQuerier{b.db}.query(ctx, q, args...)
}

func (b *sqliteBackend) queryRow(ctx context.Context, q string, args ...any) row {
	return sqlQuerier{b.db}.queryRow(ctx, q, args...)
}

func (b *sqliteBackend) migrateRiver(ctx context.Context) error {
	m, err := rivermigrate.New(riversqlite.New(b.db), &rivermigrate.Config{Logger: discardLogger})
	if err != nil {
		return err
	}
	_, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	return err
}

// migrateLock is a no-op: each migration runs in a BEGIN IMMEDIATE transaction,
// which SQLite serialises between processes.
func (b *sqliteBackend) migrateLock(context.Context) (func(), error) { return func() {}, nil }

func (b *sqliteBackend) newClient(cfg *river.Config) (riverClient, error) {
	return river.NewClient(riversqlite.New(b.db), cfg)
}

func (b *sqliteBackend) begin(ctx context.Context) (txn, error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqliteTx{sqlQuerier: sqlQuerier{tx}, tx: tx, b: b}, nil
}

type sqliteTx struct {
	sqlQuerier
	tx *sql.Tx
	b  *sqliteBackend
}

func (t *sqliteTx) commit(context.Context) error   { return t.tx.Commit() }
func (t *sqliteTx) rollback(context.Context) error { return t.tx.Rollback() }

// insertRequests inserts reqs in multi-row INSERT statements of up to
// sqliteRowsPerInsert rows: about 4× less CPU than one statement per row.
func (t *sqliteTx) insertRequests(ctx context.Context, runID int64, reqs []*intake.Request) ([]int64, error) {
	ids := make([]int64, len(reqs))
	at := make(map[int64]int, len(reqs)) // line → index
	args := make([]any, 0, 10*min(len(reqs), sqliteRowsPerInsert))
	var q strings.Builder
	for start := 0; start < len(reqs); start += sqliteRowsPerInsert {
		chunk := reqs[start:min(start+sqliteRowsPerInsert, len(reqs))]
		q.Reset()
		// The cache columns are written only by a chunk that has a prefix.
		cached := anyPrefix(chunk)
		if cached {
			q.WriteString(`INSERT INTO clade_request (run_id, custom_id, line, model, max_tokens, est_input_tokens, params,
				cache_prefix, cache_prefix_tokens, cache_ttl) VALUES `)
		} else {
			q.WriteString(`INSERT INTO clade_request (run_id, custom_id, line, model, max_tokens, est_input_tokens, params) VALUES `)
		}
		args = args[:0]
		for i, r := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			args = append(args, runID, r.CustomID, r.Line, r.Model, r.MaxTokens, r.EstInputTokens, []byte(r.Params))
			if cached {
				q.WriteString("(?,?,?,?,?,?,?,?,?,?)")
				key, tokens, ttl := prefixColumns(r.Cache)
				args = append(args, key, tokens, ttl)
			} else {
				q.WriteString("(?,?,?,?,?,?,?)")
			}
			at[int64(r.Line)] = start + i
		}
		// The first of two equal custom_ids in one statement is inserted (rows go
		// in VALUES order); later ones are skipped and get no id.
		q.WriteString(` ON CONFLICT (run_id, custom_id) DO NOTHING RETURNING id, line`)
		rs, err := t.tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return nil, err
		}
		for rs.Next() {
			var id, line int64
			if err := rs.Scan(&id, &line); err != nil {
				rs.Close()
				return nil, err
			}
			ids[at[line]] = id
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// sqliteRowsPerInsert × 10 parameters stays under SQLite's 32,766 limit.
const sqliteRowsPerInsert = 500

// insertJobs enqueues one River job per new request with one INSERT … SELECT
// from clade_request, instead of River's InsertManyFastTx: River's SQLite driver
// encodes every job into a JSON array and takes each column back out with
// json_extract, which measured 46 µs CPU per job against 9 µs for this statement
// (2,000-job batches, modernc.org/sqlite). The row is the one River's fast insert
// writes (its column defaults, datetime('now', 'subsec') times); TestSQLiteJobRow
// compares the two. No insert notification is sent: a running client finds the
// jobs on its next poll (FetchPollInterval).
func (t *sqliteTx) insertJobs(ctx context.Context, runID int64, ids []int64, maxAttempts int) error {
	lo, hi := int64(0), int64(0)
	for _, id := range ids {
		if id == 0 {
			continue
		}
		if lo == 0 || id < lo {
			lo = id
		}
		hi = max(hi, id)
	}
	if lo == 0 {
		return nil
	}
	// ids are this transaction's inserts: AUTOINCREMENT ids only grow and the
	// write lock is ours, so every row of the run in [lo, hi] is one of them.
	// "+run_id" keeps SQLite on the rowid range: through the (run_id, …)
	// indexes it would scan the whole run for every batch (quadratic import).
	_, err := t.exec(ctx, `INSERT INTO river_job (args, created_at, kind, max_attempts, priority, queue, scheduled_at, state)
		SELECT jsonb_object('run', run_id, 'req', id), datetime('now', 'subsec'), '`+JobKind+`', $4, 1, '`+river.QueueDefault+`',
			datetime('now', 'subsec'), 'available'
		FROM clade_request WHERE id BETWEEN $2 AND $3 AND +run_id = $1 ORDER BY id`, runID, lo, hi, maxAttempts)
	return err
}

func (t *sqliteTx) completeJob(ctx context.Context, job *river.Job[requestArgs]) error {
	_, err := river.JobCompleteTx[*riversqlite.Driver](ctx, t.tx, job)
	return err
}

// sqlQuerier runs Postgres-style SQL on database/sql with SQLite placeholders.
type sqlQuerier struct {
	db interface {
		ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
		QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
		QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	}
}

var pgPlaceholder = regexp.MustCompile(`\$(\d+)`)

// sqliteQuery is a Postgres-style query ($1, $2, … placeholders) rewritten for
// SQLite with anonymous ? placeholders, and which argument each one takes.
//
// Why not ?NNN: SQLite keeps numbered and named parameters in a list that
// sqlite3_bind_parameter_name searches from the start, and modernc.org/sqlite
// asks it for every parameter it binds, so binding a statement of n numbered
// parameters costs O(n²). A 100-row INSERT of batch results (1,400 parameters)
// spent a fifth of a whole clade batch run's CPU there. Anonymous ? parameters
// are not in that list.
type sqliteQuery struct {
	text string
	// order[i] is the index of the argument the i-th ? takes; nil when the
	// placeholders are $1, $2, … in order, each once.
	order []int
}

var sqliteQueries sync.Map // Postgres-style query → sqliteQuery

func toSQLite(q string) sqliteQuery {
	if v, ok := sqliteQueries.Load(q); ok {
		return v.(sqliteQuery)
	}
	var order []int
	text := pgPlaceholder.ReplaceAllStringFunc(q, func(m string) string {
		n, _ := strconv.Atoi(m[1:])
		order = append(order, n-1)
		return "?"
	})
	sq := sqliteQuery{text: text, order: order}
	if slices.Equal(order, seq(len(order))) {
		sq.order = nil
	}
	sqliteQueries.Store(q, sq)
	return sq
}

// seq returns 0, 1, …, n-1.
func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// args returns the arguments in placeholder order. An argument a placeholder does
// not name cannot be bound: it is an error, as it was for a $N query.
func (sq sqliteQuery) args(args []any) ([]any, error) {
	if sq.order == nil {
		return args, nil
	}
	out := make([]any, len(sq.order))
	for i, o := range sq.order {
		if o < 0 || o >= len(args) {
			return nil, fmt.Errorf("sqlite query: placeholder $%d without an argument (%d given)", o+1, len(args))
		}
		out[i] = args[o]
	}
	return out, nil
}

func (s sqlQuerier) exec(ctx context.Context, q string, args ...any) (int64, error) {
	sq := toSQLite(q)
	args, err := sq.args(args)
	if err != nil {
		return 0, err
	}
	res, err := s.db.ExecContext(ctx, sq.text, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQuerier) query(ctx context.Context, q string, args ...any) (rows, error) {
	sq := toSQLite(q)
	args, err := sq.args(args)
	if err != nil {
		return nil, err
	}
	r, err := s.db.QueryContext(ctx, sq.text, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (s sqlQuerier) queryRow(ctx context.Context, q string, args ...any) row {
	sq := toSQLite(q)
	args, err := sq.args(args)
	if err != nil {
		return errRow{err}
	}
	return s.db.QueryRowContext(ctx, sq.text, args...)
}

// errRow is a row whose Scan returns err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }
