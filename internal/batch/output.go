package batch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/clade-dev/clade/internal/jobs"
)

// outputFile is the results file: rewritten from the store at start (every result
// so far, each once), then appended to as results are written. A crash between a
// store commit and the append loses nothing: the next start rewrites the file.
type outputFile struct {
	path string
	f    *os.File
	err  error
}

func openOutput(ctx context.Context, st *jobs.Store, runID int64, path string) (*outputFile, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	if _, err := st.Export(ctx, runID, f, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	return &outputFile{path: path, f: f}, nil
}

// append writes the lines of results just committed. The dispatcher is one
// goroutine, so no lock is needed.
func (o *outputFile) append(rs []jobs.BatchResult) {
	if o == nil || o.err != nil || len(rs) == 0 {
		return
	}
	var buf []byte
	for _, r := range rs {
		buf = append(buf, r.Line...)
		buf = append(buf, '\n')
	}
	if _, err := o.f.Write(buf); err != nil {
		o.err = err
	}
}

func (o *outputFile) close() error {
	err := o.f.Sync()
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if o.err != nil {
		return fmt.Errorf("output %s: %w", o.path, o.err)
	}
	return err
}
