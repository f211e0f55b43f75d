package jobs_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// bigEnv enables TestImportMillionLines, which takes minutes: go test
// -run TestImportMillionLines -v ./internal/jobs with CLADE_TEST_BIG=1.
const bigEnv = "CLADE_TEST_BIG"

// TestImportMillionLines imports a generated 1,000,000-line file into SQLite (and
// Postgres when configured) and reports throughput and peak memory: heap in use
// sampled every 20 ms, and the process's peak RSS. Import streams, so the peak
// heap must stay far below the file size.
func TestImportMillionLines(t *testing.T) {
	if os.Getenv(bigEnv) == "" {
		t.Skipf("set %s=1 to import a 1,000,000-line file (minutes)", bigEnv)
	}
	lines := 1_000_000
	if n, err := strconv.Atoi(os.Getenv(bigEnv)); err == nil && n > 1 {
		lines = n // CLADE_TEST_BIG=N imports N lines instead
	}
	path := filepath.Join(t.TempDir(), "big.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := jobstest.GenerateInput(f, lines); err != nil {
		t.Fatal(err)
	}
	f.Close()
	fi, _ := os.Stat(path)
	for _, be := range jobstest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			s := jobstest.Open(t, ctx, be.NewDSN(t))
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)

			var peak uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			})
			start, cpu0 := time.Now(), processCPU()
			run, st, err := s.Import(ctx, jobs.ImportOptions{Path: path})
			cpu := processCPU() - cpu0
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			var ru syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
			t.Logf("%s: %d lines (%d MiB) in %s: %.0f rows/s, %.1f µs CPU/row; peak heap in use %d MiB (%d MiB before); process max RSS %d MiB",
				be.Name, st.Lines, fi.Size()>>20, elapsed.Round(time.Millisecond), float64(run.Requests)/elapsed.Seconds(),
				float64(cpu)/1e3/float64(run.Requests),
				peak>>20, base.HeapInuse>>20, ru.Maxrss>>10)
			if run.Requests != int64(lines) {
				t.Errorf("imported %d requests, want %d", run.Requests, lines)
			}
			if peak > 256<<20 {
				t.Errorf("peak heap in use %d MiB: import does not stream", peak>>20)
			}
		})
	}
}
