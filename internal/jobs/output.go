package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Output is a run's results file. Opening it rewrites it from the store (every
// result so far, each once); results are then appended as their transactions
// commit. A crash between a commit and its append loses nothing: the next open
// rewrites the file. With ordered, nothing is appended; ExportOrdered writes the
// file in input order at the end. An Output is safe for concurrent use, so realtime
// workers and batch ingestion of one run can share it. Methods on a nil *Output do
// nothing.
type Output struct {
	path    string
	ordered bool
	mu      sync.Mutex
	f       *os.File
	err     error
	lines   int64 // result lines in the file
}

// OutputError is a failure to write a run's results file (a full disk, say). The
// results are safe in the store: opening the file again rewrites it.
type OutputError struct {
	Path string
	Err  error
}

func (e *OutputError) Error() string { return fmt.Sprintf("write results %s: %v", e.Path, e.Err) }
func (e *OutputError) Unwrap() error { return e.Err }

// OpenOutput creates or truncates path and writes the run's results so far to it.
// Callers check first that path is not a file they must keep (CheckPaths,
// Store.ClaimOutput). Its errors are *OutputError.
func OpenOutput(ctx context.Context, st *Store, runID int64, path string, ordered bool) (*Output, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, &OutputError{path, err}
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, &OutputError{path, err}
	}
	n, err := st.Export(ctx, runID, f, ordered)
	if err != nil {
		f.Close()
		return nil, &OutputError{path, err}
	}
	return &Output{path: path, ordered: ordered, f: f, lines: n}, nil
}

// Path is the file's path.
func (o *Output) Path() string {
	if o == nil {
		return ""
	}
	return o.path
}

// AppendResult writes one committed result's line.
func (o *Output) AppendResult(customID string, res Result) {
	if o == nil || o.ordered {
		return
	}
	line, err := res.ResultLine(customID)
	if err != nil {
		o.fail(err)
		return
	}
	o.write(append(line, '\n'), 1)
}

// AppendBatch writes the lines of batch results just committed, in one write.
func (o *Output) AppendBatch(rs []BatchResult) {
	if o == nil || o.ordered || len(rs) == 0 {
		return
	}
	var buf []byte
	for _, r := range rs {
		buf = append(buf, r.Line...)
		buf = append(buf, '\n')
	}
	o.write(buf, int64(len(rs)))
}

// write appends b, which holds lines result lines.
func (o *Output) write(b []byte, lines int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return
	}
	if _, err := o.f.Write(b); err != nil {
		o.err = err
		return
	}
	o.lines += lines
}

// Lines is how many result lines the file holds: those written when it was
// opened or last exported, and those appended since. Results other processes
// committed to the store (several hosts on one run) are not among them until
// Export.
func (o *Output) Lines() int64 {
	if o == nil {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lines
}

func (o *Output) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = err
	}
}

// Err returns the first failed append, as an *OutputError, or nil. The run goes on
// (its results are in the store) and Close reports it again.
func (o *Output) Err() error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return &OutputError{o.path, o.err}
	}
	return nil
}

// ExportOrdered rewrites the file in input order.
func (o *Output) ExportOrdered(ctx context.Context, st *Store, runID int64) error {
	return o.Export(ctx, st, runID, true)
}

// Export rewrites the file from the store: every result of the run once, in
// input order when ordered, else in the store's order.
func (o *Output) Export(ctx context.Context, st *Store, runID int64, ordered bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.f.Truncate(0); err != nil {
		return &OutputError{o.path, err}
	}
	if _, err := o.f.Seek(0, 0); err != nil {
		return &OutputError{o.path, err}
	}
	n, err := st.Export(ctx, runID, o.f, ordered)
	if err != nil {
		return &OutputError{o.path, err}
	}
	o.lines = n
	return nil
}

// Close syncs and closes the file, and reports the first failed append (or the
// failed sync or close), as an *OutputError.
func (o *Output) Close() error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.err
	if serr := o.f.Sync(); err == nil && serr != nil && !errors.Is(serr, syscall.EINVAL) {
		err = serr // EINVAL: a file that cannot be synced (a pipe, /dev/stdout)
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &OutputError{o.path, err}
	}
	return nil
}
