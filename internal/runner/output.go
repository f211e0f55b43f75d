package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/clade-dev/clade/internal/jobs"
)

// outputFile is the results file. At start it is rewritten from the store (every
// result finished so far, each once), then results are appended as they commit. With
// ordered, nothing is appended; the file is written in input order when the run ends.
type outputFile struct {
	path    string
	ordered bool
	mu      sync.Mutex
	f       *os.File
	err     error
}

func openOutput(ctx context.Context, st *jobs.Store, runID int64, path string, ordered bool) (*outputFile, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("output: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	o := &outputFile{path: path, ordered: ordered, f: f}
	if _, err := st.Export(ctx, runID, f, ordered); err != nil {
		f.Close()
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	return o, nil
}

// appendResult writes one committed result's line.
func (o *outputFile) appendResult(job *jobs.Job, res jobs.Result) {
	if o == nil || o.ordered {
		return
	}
	line, err := res.ResultLine(job.Request.CustomID)
	if err != nil {
		return
	}
	line = append(line, '\n')
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return
	}
	if _, err := o.f.Write(line); err != nil {
		o.err = err
	}
}

// exportOrdered rewrites the file in input order.
func (o *outputFile) exportOrdered(ctx context.Context, st *jobs.Store, runID int64) error {
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

func (o *outputFile) close() error {
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
