package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestSeveralProcessesOneRun runs three `clade run` processes of one input on one
// Postgres store and one Redis, each with its own -o, as three hosts would: the
// work splits, nothing is paid twice, and every process's results file holds every
// custom_id exactly once when it exits. Started at once; staggered; and with one
// process SIGKILLed at 40 %, whose work the others take and finish.
func TestSeveralProcessesOneRun(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test: skipped with -short")
	}
	t.Parallel()
	for _, mode := range []string{"at once", "staggered", "one killed"} {
		t.Run(mode, func(t *testing.T) {
			const n, procs, conc = 600, 3, 16
			// Each process opens its own pool: keep three of them (and the
			// other tests') within the server's max_connections.
			dsn := jobstest.Postgres().NewDSN(t) + "&pool_max_conns=8"
			redisURL := testkit.RedisURL(t)
			var b [6]byte
			rand.Read(b[:])
			ns := "clade-test-hosts-" + hex.EncodeToString(b[:])
			t.Cleanup(func() { deleteKeys(t, redisURL, "clade:ratelimit:"+ns+":*") })
			const key = "sk-ant-test-hosts"
			reg := prometheus.NewRegistry()
			em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, LatencyScale: 0.3, Registry: reg})
			dir := t.TempDir()
			input := filepath.Join(dir, "in.jsonl")
			writeWorkload(t, input, n)

			cmds := make([]*exec.Cmd, procs)
			outs := make([]string, procs)
			for i := range procs {
				outs[i] = filepath.Join(dir, fmt.Sprintf("host%d", i), "out.jsonl")
				cmds[i] = cladeCmd(key, "run", input, "-o", outs[i], "--db", dsn, "--base-url", em.URL, "--tier", "tier-4",
					"-q", "--concurrency", fmt.Sprint(conc), "--limits-redis", redisURL, "--limits-namespace", ns)
				cmds[i].Dir = filepath.Dir(outs[i])
				if err := os.MkdirAll(cmds[i].Dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			store := jobstest.Open(t, context.Background(), dsn)
			outputs := make([][]byte, procs)
			errs := make([]error, procs)
			var wg sync.WaitGroup
			start := func(i int) {
				var buf testkit.Buffer
				cmds[i].Stdout, cmds[i].Stderr = &buf, &buf
				if err := cmds[i].Start(); err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					errs[i] = cmds[i].Wait()
					outputs[i] = []byte(buf.String())
				})
			}
			killed := -1
			var killedAt time.Time
			switch mode {
			case "at once":
				for i := range procs {
					start(i)
				}
			case "staggered":
				start(0)
				waitResults(t, store, n/5)
				start(1)
				waitResults(t, store, 2*n/5)
				start(2)
			case "one killed":
				for i := range procs {
					start(i)
				}
				waitResults(t, store, 2*n/5)
				killed, killedAt = 0, time.Now()
				if err := cmds[0].Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			wg.Wait()
			for i := range procs {
				if i == killed {
					continue
				}
				if errs[i] != nil {
					t.Errorf("process %d: %v\n%s", i, errs[i], outputs[i])
					continue
				}
				wantEachOnce(t, outs[i], n)
			}
			if killed >= 0 {
				if d := time.Since(killedAt); d > time.Minute {
					t.Errorf("the run finished %v after the kill, want within a minute", d.Round(time.Second))
				}
			}
			answered := testkit.MetricSum(t, reg, "clade_emulator_responses_total", map[string]string{"endpoint": "messages", "code": "200"})
			n429 := testkit.MetricSum(t, reg, "clade_emulator_rate_limited_total", nil)
			t.Logf("%s: %v answers for %d requests, %v 429s", mode, answered, n, n429)
			limit := float64(n)
			if killed >= 0 {
				limit += conc // what the killed process had in flight
			}
			if answered < float64(n) || answered > limit {
				t.Errorf("the emulator answered %v calls with 200 for %d requests; want %d to %v: no process may send another's work", answered, n, n, limit)
			}
			if n429 > 0 {
				t.Errorf("%v calls answered 429: the processes share one organisation's limits", n429)
			}
		})
	}
}

// waitResults waits until the store's only run has at least n results.
func waitResults(t *testing.T, st *jobs.Store, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if s, err := st.Status(context.Background(), 1); err == nil && s.Requests-s.Pending >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the run did not reach %d results in 2 minutes", n)
}
