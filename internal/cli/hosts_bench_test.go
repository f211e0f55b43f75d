package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// BenchmarkHostsCompletions runs one input through 1, 2 and 3 `clade run`
// processes on one Postgres store, against the emulator at the tier `unlimited`
// with its latency model on, and reports completions per second from the first
// start to the last exit (imports and process start-up included). Each process
// has its own -o and the default concurrency. Run it once per size:
//
//	CLADE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench BenchmarkHostsCompletions -benchtime 1x ./internal/cli
func BenchmarkHostsCompletions(b *testing.B) {
	const n = 6000
	for _, procs := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			for range b.N {
				const key = "sk-ant-bench-hosts"
				em := emulator.StartTB(b, emulator.Config{Tier: "unlimited", APIKeys: []string{key}, LatencyScale: 1})
				dsn := jobstest.Postgres().NewDSN(b) + "&pool_max_conns=16"
				dir := b.TempDir()
				input := filepath.Join(dir, "in.jsonl")
				workload.Write(b, input, n)
				var wg sync.WaitGroup
				start := time.Now()
				for i := range procs {
					out := filepath.Join(dir, fmt.Sprintf("host%d", i), "out.jsonl")
					if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
						b.Fatal(err)
					}
					cmd := cladeCmd(key, "run", input, "-o", out, "--db", dsn, "--base-url", em.URL, "--tier", "unlimited", "-q")
					wg.Go(func() {
						if o, err := cmd.CombinedOutput(); err != nil {
							b.Errorf("process %d: %v\n%s", i, err, o)
						}
					})
				}
				wg.Wait()
				el := time.Since(start)
				b.ReportMetric(float64(n)/el.Seconds(), "completions/s")
				b.ReportMetric(el.Seconds(), "s/run")
			}
		})
	}
}
