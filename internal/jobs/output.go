package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
}

// OpenOutput creates or truncates path and writes the run's results so far to it.
func OpenOutput(ctx context.Context, st *Store, runID int64, path string, ordered bool) (*Output, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	if _, err := st.Export(ctx, runID, f, ordered); err != nil {
		f.Close()
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	return &Output{path: path, ordered: ordered, f: f}, nil
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
		return
	}
	o.write(append(line, '\n'))
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
	o.write(buf)
}

func (o *Output) write(b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return
	}
	if _, err := o.f.Write(b); err != nil {
		o.err = err
	}
}

// ExportOrdered rewrites the file in input order.
func (o *Output) ExportOrdered(ctx context.Context, st *Store, runID int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.f.Truncate(0); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if _, err := o.f.Seek(0, 0); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if _, err := st.Export(ctx, runID, o.f, true); err != nil {
		return fmt.Errorf("output %s: %w", o.path, err)
	}
	return nil
}

// Close syncs and closes the file, and reports the first failed append.
func (o *Output) Close() error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.f.Sync()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if o.err != nil {
		return fmt.Errorf("output %s: %w", o.path, o.err)
	}
	return err
}
