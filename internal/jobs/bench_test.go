package jobs_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// benchBackends runs fn on every backend; the Postgres one skips (its NewDSN)
// when CLADE_TEST_POSTGRES_URL is not set.
func benchBackends(b *testing.B, fn func(b *testing.B, be jobstest.Backend)) {
	for _, be := range jobstest.Backends() {
		b.Run(be.Name, func(b *testing.B) { fn(b, be) })
	}
}

// processCPU is this process's user+system CPU time: a figure that does not
// depend on how busy the machine is (a database server's CPU is not included).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkImport imports a 20,000-line file per op into a new run: rows/s
// counts stored requests, each with its River job.
func BenchmarkImport(b *testing.B) {
	benchBackends(b, func(b *testing.B, be jobstest.Backend) {
		const lines = 20000
		ctx := context.Background()
		s := jobstest.Open(b, ctx, be.NewDSN(b))
		path := jobstest.WriteInput(b, lines)
		b.ReportAllocs()
		i := 0
		cpu0 := processCPU()
		for b.Loop() {
			i++
			if _, _, err := s.Import(ctx, jobs.ImportOptions{Path: path, Name: fmt.Sprintf("run-%d", i)}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(lines*i)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(float64(processCPU()-cpu0)/1e3/float64(lines*i), "cpu-µs/row")
	})
}

// BenchmarkStoreComplete measures job completions per second: each op imports
// 2,000 requests (untimed), then times a client with 50 workers and an instant
// WorkFunc until every request has its result (result row + JobCompleteTx in one
// transaction each).
func BenchmarkStoreComplete(b *testing.B) {
	benchBackends(b, func(b *testing.B, be jobstest.Backend) {
		const round = 2000
		ctx := context.Background()
		s := jobstest.Open(b, ctx, be.NewDSN(b))
		path := jobstest.WriteInput(b, round)
		var worked, cpu time.Duration
		i := 0
		for b.Loop() {
			b.StopTimer()
			i++
			run, _, err := s.Import(ctx, jobs.ImportOptions{Path: path, Name: fmt.Sprintf("run-%d", i)})
			if err != nil {
				b.Fatal(err)
			}
			c, err := jobs.NewClient(s, jobstest.Echo, jobs.ClientConfig{MaxWorkers: 50, TestOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start, cpu0 := time.Now(), processCPU()
			if err := c.Start(ctx); err != nil {
				b.Fatal(err)
			}
			if err := s.Wait(ctx, run.ID, 5*time.Millisecond); err != nil {
				b.Fatal(err)
			}
			worked += time.Since(start)
			cpu += processCPU() - cpu0
			b.StopTimer()
			if err := c.Stop(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(round*i)/worked.Seconds(), "completions/s")
		b.ReportMetric(float64(cpu)/1e3/float64(round*i), "cpu-µs/completion")
	})
}
