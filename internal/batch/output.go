package batch

import "github.com/clade-dev/clade/internal/jobs"

// outputFile is the run's results file (jobs.Output); append writes the lines of
// batch results just committed. A nil outputFile writes nothing.
type outputFile struct{ o *jobs.Output }

func (f *outputFile) append(rs []jobs.BatchResult) {
	if f != nil {
		f.o.AppendBatch(rs)
	}
}
