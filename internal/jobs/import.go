package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clade-dev/clade/internal/intake"
)

// ErrInputChanged is returned by Import when a run already exists under the name
// and its input file no longer has the fingerprint it was imported with. Resuming
// would mix two inputs; ImportOptions.Force starts the run over instead.
var ErrInputChanged = errors.New("input changed since the run was imported")

// ErrBadLines is returned by run, batch and hybrid dispatch when the input has bad
// lines and they were asked to be strict about it.
var ErrBadLines = errors.New("input has bad lines")

// ErrConcurrentImport is returned by Import when another process imports the same
// run at the same time.
var ErrConcurrentImport = errors.New("another process is importing this run")

// Import defaults.
const (
	DefaultMaxAttempts = 10
	DefaultBatchLines  = 2000
	batchBytes         = 8 << 20 // a batch also ends when its params reach this size
)

// Run is one input file imported into the store.
type Run struct {
	ID          int64
	Name        string
	InputPath   string
	Fingerprint intake.Fingerprint
	CreatedAt   time.Time
	// Options is what the caller stored with the run (e.g. the CLI flags), as given.
	Options json.RawMessage
	// Imported is set once the whole file has been read, at ImportedAt.
	Imported   bool
	ImportedAt time.Time
	// Requests and Problems count the imported lines so far.
	Requests int64
	Problems int64
}

// ImportOptions say what to import and how.
type ImportOptions struct {
	// Path is the input JSONL file.
	Path string
	// Name identifies the run in the store. Defaults to Path made absolute, so
	// importing the same file again resumes its run.
	Name string
	// Options is stored with a new run (and replaced on Force); opaque to the store.
	Options json.RawMessage
	// Force re-imports a run whose input changed: its requests, jobs, results and
	// problems are deleted first. No Client may be working the run meanwhile.
	Force bool
	// NoJobs records the requests without River jobs: batch mode owns their
	// dispatch, and enqueuing jobs it would then delete (DropRequestJobs) costs
	// about as much as storing the requests. A run imported this way has nothing
	// for a realtime Client to work until its pending requests are enqueued.
	NoJobs bool
	// MaxAttempts is how many times a request's job may run before its last error
	// becomes an errored result. Defaults to DefaultMaxAttempts (10). Unused with
	// NoJobs.
	MaxAttempts int
	// BatchLines is how many lines each transaction imports. Defaults to
	// DefaultBatchLines (2,000).
	BatchLines int
	// OnProblem, when set, is called for each rejected line, after the
	// transaction that recorded it commits.
	OnProblem func(intake.Problem)
	// AutoCacheBreakpoints, when set, adds a prompt-cache breakpoint to the lines
	// without cache_control whose leading part other lines share
	// (intake.AutoCache; clade run --cache-breakpoints auto): the input file is
	// read once more first, and the stored params carry the breakpoint. It returns
	// a model's min_cache_tokens. Nil: lines are stored as written.
	AutoCacheBreakpoints intake.MinCacheTokens
	// OnRun, when set, is called with the run before its lines are imported (not
	// for a run already fully imported): from then on the run's rows appear as
	// each transaction commits, so a caller can start on them while Import goes on.
	OnRun func(*Run)
}

// ImportStats report what one Import call did.
type ImportStats struct {
	Lines      int64 // lines read by this call
	Bytes      int64 // bytes read by this call
	Requests   int64 // requests stored (and enqueued, without NoJobs) by this call
	Problems   int64 // lines rejected by this call, duplicates included
	Duplicates int64 // of Problems, duplicate custom_ids
	Resumed    bool  // the call continued an interrupted import
	NoOp       bool  // the run was already fully imported with the same input
	Reset      bool  // Force deleted a previous import of another input
	Elapsed    time.Duration
	// AutoBreakpoints is how many lines this call gave an automatic cache
	// breakpoint (ImportOptions.AutoCacheBreakpoints), ending AutoPrefixes
	// distinct prefixes.
	AutoBreakpoints int64
	AutoPrefixes    int
}

// Import reads the input file into the store as a run, enqueuing one River job per
// valid request (none with opt.NoJobs), in transactions of BatchLines lines. It is
// idempotent: for a run already imported from the same bytes it does nothing, and an
// import that was interrupted continues after its last committed line. A run whose
// input changed fails with ErrInputChanged unless opt.Force is set.
//
// Duplicate custom_ids are found by the store's unique index (constant memory) and
// recorded as Problems naming both lines; the first line wins.
func (s *Store) Import(ctx context.Context, opt ImportOptions) (*Run, ImportStats, error) {
	start := time.Now()
	var st ImportStats
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = DefaultMaxAttempts
	}
	if opt.BatchLines <= 0 {
		opt.BatchLines = DefaultBatchLines
	}
	if opt.Name == "" {
		abs, err := filepath.Abs(opt.Path)
		if err != nil {
			return nil, st, err
		}
		opt.Name = abs
	}
	fp, err := intake.FileFingerprint(opt.Path)
	if err != nil {
		return nil, st, fmt.Errorf("import %s: %w", opt.Path, err)
	}

	run, err := s.RunByName(ctx, opt.Name)
	switch {
	case errors.Is(err, ErrNoRun):
		run, err = s.createRun(ctx, opt, fp)
		if err != nil {
			return nil, st, fmt.Errorf("import %s: create run: %w", opt.Path, err)
		}
	case err != nil:
		return nil, st, fmt.Errorf("import %s: %w", opt.Path, err)
	case run.Fingerprint != fp && !opt.Force:
		return run, st, fmt.Errorf("import %s: %w: run %q was imported from %s (%d bytes), the file is now %s (%d bytes); use --force to start the run over",
			opt.Path, ErrInputChanged, run.Name, run.Fingerprint.Hex()[:12], run.Fingerprint.Size, fp.Hex()[:12], fp.Size)
	case run.Fingerprint != fp:
		if err := s.resetRun(ctx, run.ID, opt, fp); err != nil {
			return nil, st, fmt.Errorf("import %s: reset run: %w", opt.Path, err)
		}
		st.Reset = true
		if run, err = s.RunByID(ctx, run.ID); err != nil {
			return nil, st, err
		}
	case run.Imported:
		st.NoOp = true
		st.Elapsed = time.Since(start)
		return run, st, s.checkRequests(ctx, run, opt.Path)
	}

	var offset, line int64
	if err := s.b.queryRow(ctx, `SELECT import_offset, import_line FROM clade_run WHERE id = $1`, run.ID).Scan(&offset, &line); err != nil {
		return nil, st, err
	}
	st.Resumed = offset > 0
	if opt.OnRun != nil {
		opt.OnRun(run)
	}
	if err := s.importFrom(ctx, run, opt, fp, offset, line, &st); err != nil {
		return nil, st, fmt.Errorf("import %s: %w", opt.Path, err)
	}
	run, err = s.RunByID(ctx, run.ID)
	st.Elapsed = time.Since(start)
	if err != nil {
		return nil, st, err
	}
	return run, st, s.checkRequests(ctx, run, opt.Path)
}

// NoRequestsError is returned by Import, with the run, when the input holds no
// valid request: the file is empty, or every line of it is bad. Nothing is sent for
// such a run; its problems are kept in the store like any run's.
type NoRequestsError struct {
	Path     string
	Problems int64            // bad lines (0: the file has no line)
	First    []intake.Problem // the first few of them
}

// firstProblems is how many bad lines a NoRequestsError quotes.
const firstProblems = 5

func (e *NoRequestsError) Error() string {
	if e.Problems == 0 {
		return fmt.Sprintf("%s is empty: it has no request line", e.Path)
	}
	var b strings.Builder
	if e.Problems == 1 {
		fmt.Fprintf(&b, "%s has no valid request: its one line is bad", e.Path)
	} else {
		fmt.Fprintf(&b, "%s has no valid request: all %d of its lines are bad", e.Path, e.Problems)
	}
	for _, p := range e.First {
		fmt.Fprintf(&b, "\n  %s", p.Format(e.Path))
	}
	if more := e.Problems - int64(len(e.First)); more > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", more)
	}
	return b.String()
}

// checkRequests returns a *NoRequestsError for a fully imported run with no
// request.
func (s *Store) checkRequests(ctx context.Context, run *Run, path string) error {
	if !run.Imported || run.Requests > 0 {
		return nil
	}
	e := &NoRequestsError{Path: path, Problems: run.Problems}
	errEnough := errors.New("enough")
	err := s.Problems(ctx, run.ID, func(p intake.Problem) error {
		e.First = append(e.First, p)
		if len(e.First) == firstProblems {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return fmt.Errorf("import %s: %w", path, err)
	}
	return e
}

func (s *Store) createRun(ctx context.Context, opt ImportOptions, fp intake.Fingerprint) (*Run, error) {
	var id int64
	err := s.b.queryRow(ctx, `INSERT INTO clade_run (name, input_path, input_size, input_sha256, created_at, options)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING id`,
		opt.Name, opt.Path, fp.Size, fp.Hex(), s.now().UnixMicro(), nullBytes(opt.Options)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) { // pgx.ErrNoRows is one too
		// Another process created it at the same moment (several hosts started
		// at once): the run is theirs and ours.
		return s.RunByName(ctx, opt.Name)
	}
	if err != nil {
		return nil, err
	}
	return s.RunByID(ctx, id)
}

// resetRun deletes everything of a run but its row, for a forced re-import.
func (s *Store) resetRun(ctx context.Context, runID int64, opt ImportOptions, fp intake.Fingerprint) error {
	return s.inTx(ctx, func(tx txn) error {
		for _, q := range []string{
			`DELETE FROM river_job WHERE kind = '` + JobKind + `' AND ` + s.b.runOfJob() + ` = $1`,
			`DELETE FROM clade_result WHERE run_id = $1`,
			`DELETE FROM clade_problem WHERE run_id = $1`,
			`DELETE FROM clade_request WHERE run_id = $1`,
		} {
			if _, err := tx.exec(ctx, q, runID); err != nil {
				return err
			}
		}
		_, err := tx.exec(ctx, `UPDATE clade_run SET input_path = $2, input_size = $3, input_sha256 = $4, options = $5,
			import_offset = 0, import_line = 0, imported_at = NULL, requests = 0, problems = 0 WHERE id = $1`,
			runID, opt.Path, fp.Size, fp.Hex(), nullBytes(opt.Options))
		return err
	})
}

// importFrom reads the input from a committed offset and line to its end.
func (s *Store) importFrom(ctx context.Context, run *Run, opt ImportOptions, fp intake.Fingerprint, offset, line int64, st *ImportStats) error {
	f, err := os.Open(opt.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	var auto *intake.AutoCache
	if opt.AutoCacheBreakpoints != nil {
		// The whole file, also on a resume: sharing is counted over every line.
		if auto, err = intake.PlanAutoCache(f, opt.AutoCacheBreakpoints); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	var in io.Reader = f
	var h hash.Hash
	if offset == 0 {
		// Hash while reading so a file that changes during the import is caught.
		h = sha256.New()
		in = io.TeeReader(f, h)
	} else if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	rd := intake.NewReader(in, intake.Options{FirstLine: int(line) + 1})
	b := &importBatch{runID: run.ID, maxAttempts: opt.MaxAttempts, noJobs: opt.NoJobs}
	committed := offset
	flush := func() error {
		newOffset := offset + rd.Offset()
		if err := s.flushBatch(ctx, b, committed, newOffset, int64(rd.Line()), st, opt.OnProblem); err != nil {
			return err
		}
		st.Bytes += newOffset - committed
		committed = newOffset
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		req, prob, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		st.Lines++
		if req != nil {
			if auto != nil {
				auto.Apply(req)
			}
			b.reqs = append(b.reqs, req)
			b.bytes += len(req.Params)
		} else {
			b.probs = append(b.probs, *prob)
		}
		if len(b.reqs)+len(b.probs) >= opt.BatchLines || b.bytes >= batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if h != nil {
		var sum [sha256.Size]byte
		h.Sum(sum[:0])
		if rd.Offset() != fp.Size || !bytes.Equal(sum[:], fp.SHA256[:]) {
			return fmt.Errorf("%w: the file changed while it was being imported", ErrInputChanged)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if auto != nil {
		st.AutoBreakpoints, st.AutoPrefixes = auto.Added()
	}
	_, err = s.b.exec(ctx, `UPDATE clade_run SET imported_at = $2 WHERE id = $1`, run.ID, s.now().UnixMicro())
	return err
}

type importBatch struct {
	runID       int64
	maxAttempts int
	noJobs      bool // store the requests without River jobs
	reqs        []*intake.Request
	probs       []intake.Problem
	bytes       int
	enqueued    int64 // requests stored by the last flush
}

// flushBatch stores one batch of lines and moves the run's import position from
// oldOffset to newOffset in the same transaction.
func (s *Store) flushBatch(ctx context.Context, b *importBatch, oldOffset, newOffset, line int64, st *ImportStats, onProblem func(intake.Problem)) error {
	var probs []intake.Problem
	var dups int64
	groupByPrefix(b.reqs)
	err := s.inTx(ctx, func(tx txn) error {
		probs, dups = b.probs, 0
		var ids []int64
		if len(b.reqs) > 0 {
			var err error
			if ids, err = tx.insertRequests(ctx, b.runID, b.reqs); err != nil {
				return fmt.Errorf("insert requests: %w", err)
			}
		}
		b.enqueued = 0
		for i, id := range ids {
			if id != 0 {
				b.enqueued++
				continue
			}
			r := b.reqs[i]
			var first int64
			if err := tx.queryRow(ctx, `SELECT line FROM clade_request WHERE run_id = $1 AND custom_id = $2`, b.runID, r.CustomID).Scan(&first); err != nil {
				return fmt.Errorf("find duplicate of %s: %w", r.CustomID, err)
			}
			probs = append(probs, intake.Problem{Line: r.Line, CustomID: r.CustomID, Field: "custom_id",
				Reason: fmt.Sprintf("duplicate of line %d", first)})
			dups++
		}
		for _, p := range probs {
			if _, err := tx.exec(ctx, `INSERT INTO clade_problem (run_id, line, custom_id, field, reason) VALUES ($1, $2, $3, $4, $5)`,
				b.runID, p.Line, p.CustomID, p.Field, p.Reason); err != nil {
				return fmt.Errorf("insert problem: %w", err)
			}
		}
		if b.enqueued > 0 && !b.noJobs {
			if err := tx.insertJobs(ctx, b.runID, ids, b.maxAttempts); err != nil {
				return fmt.Errorf("enqueue jobs: %w", err)
			}
		}
		n, err := tx.exec(ctx, `UPDATE clade_run SET import_offset = $3, import_line = $4,
				requests = requests + $5, problems = problems + $6
			WHERE id = $1 AND import_offset = $2`,
			b.runID, oldOffset, newOffset, line, b.enqueued, int64(len(probs)))
		if err != nil {
			return err
		}
		if n != 1 {
			return ErrConcurrentImport
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.Requests += b.enqueued
	st.Problems += int64(len(probs))
	st.Duplicates += dups
	if onProblem != nil {
		for _, p := range probs {
			onProblem(p)
		}
	}
	clear(b.reqs)
	b.reqs, b.probs, b.bytes = b.reqs[:0], probs[:0], 0
	return nil
}

// ErrNoRun is returned when a run does not exist.
var ErrNoRun = errors.New("no such run")

const runColumns = `id, name, input_path, input_size, input_sha256, created_at, options, imported_at, requests, problems`

// RunByName returns the run named name, or ErrNoRun.
func (s *Store) RunByName(ctx context.Context, name string) (*Run, error) {
	return s.scanRun(s.b.reader().queryRow(ctx, `SELECT `+runColumns+` FROM clade_run WHERE name = $1`, name))
}

// RunByID returns the run with the id, or ErrNoRun.
func (s *Store) RunByID(ctx context.Context, id int64) (*Run, error) {
	return s.scanRun(s.b.reader().queryRow(ctx, `SELECT `+runColumns+` FROM clade_run WHERE id = $1`, id))
}

// Runs lists the runs of the store, oldest first.
func (s *Store) Runs(ctx context.Context) ([]*Run, error) {
	rs, err := s.b.reader().query(ctx, `SELECT `+runColumns+` FROM clade_run ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var runs []*Run
	for rs.Next() {
		r, err := s.scanRun(rs)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, rs.Err()
}

func (s *Store) scanRun(r row) (*Run, error) {
	var run Run
	var sha string
	var created int64
	var imported sql.NullInt64
	var options []byte
	err := r.Scan(&run.ID, &run.Name, &run.InputPath, &run.Fingerprint.Size, &sha, &created, &options, &imported, &run.Requests, &run.Problems)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoRun
	}
	if err != nil {
		return nil, err
	}
	if sum, err := hex.DecodeString(sha); err == nil && len(sum) == sha256.Size {
		copy(run.Fingerprint.SHA256[:], sum)
	}
	run.CreatedAt = time.UnixMicro(created).UTC()
	run.Imported = imported.Valid
	if imported.Valid {
		run.ImportedAt = time.UnixMicro(imported.Int64).UTC()
	}
	if len(options) > 0 {
		run.Options = json.RawMessage(options)
	}
	return &run, nil
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

// maxReported is how many bad lines ImportReporting writes; `clade status` lists all.
const maxReported = 1000

// ImportReporting is Import that also writes the bad lines it rejected to w (nil:
// none), one "skipped FILE:LINE: ..." line each (intake.Problem.Format), at most
// maxReported and then a count. opt.OnProblem must be nil.
func (s *Store) ImportReporting(ctx context.Context, opt ImportOptions, w io.Writer) (*Run, ImportStats, error) {
	var problems []intake.Problem
	opt.OnProblem = func(p intake.Problem) {
		if len(problems) < maxReported {
			problems = append(problems, p)
		}
	}
	run, st, err := s.Import(ctx, opt)
	if err != nil || w == nil {
		return run, st, err
	}
	for _, p := range problems {
		fmt.Fprintf(w, "skipped %s\n", p.Format(opt.Path))
	}
	if opt.AutoCacheBreakpoints != nil && !st.NoOp {
		fmt.Fprintf(w, "cache breakpoints: added to %d lines, %d distinct prefixes (--cache-breakpoints auto)\n", st.AutoBreakpoints, st.AutoPrefixes)
	}
	if run.Problems > int64(len(problems)) && len(problems) > 0 {
		fmt.Fprintf(w, "… %d bad lines in all; `clade status` lists them\n", run.Problems)
	}
	return run, st, nil
}
