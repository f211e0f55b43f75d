package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
)

// emulatorMessages is how many Messages calls the emulator has answered.
func emulatorMessages(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "clade_emulator_responses_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "endpoint" && l.GetValue() == "messages" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// TestBatchCacheWarmSurvivesSIGKILL kills `clade batch --cache-warm realtime`
// (its store SQLite, then Postgres) with SIGKILL inside its first create call
// (held before it reaches the API),
// after the warm calls of its 3 prefixes (8 lines each) were answered, then
// resumes it: the warm lines were sent once (3 Messages calls in all, none after
// the resume), are in no batch, and every custom_id has exactly one result.
func TestBatchCacheWarmSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			testBatchCacheWarmSurvivesSIGKILL(t, b)
		})
	}
}

func testBatchCacheWarmSurvivesSIGKILL(t *testing.T, b jobstest.Backend) {
	const prefixes, per = 3, 8
	key := "sk-ant-crash-" + strings.Repeat("w", 24)
	reg := prometheus.NewRegistry()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1000, Registry: reg})
	gate := startCreateGate(t, em.URL)
	dir := t.TempDir()
	input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	var lines []string
	for p := range prefixes {
		doc := strings.Repeat(fmt.Sprintf("document %d. ", p), 20000/12)
		for q := range per {
			lines = append(lines, fmt.Sprintf(`{"custom_id":"d%d-q%d","params":{"model":"claude-haiku-4-5","max_tokens":16,"system":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"Question %d?"}]}}`, p, q, doc, q))
		}
	}
	if err := os.WriteFile(input, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	db := out + ".clade.db"
	if b.Name != "sqlite" {
		db = b.NewDSN(t)
	}
	args := []string{"batch", input, "-o", out, "--db", db, "--base-url", gate.URL, "--tier", "tier-4", "--poll", "10ms", "--cache-warm", "realtime"}

	held := gate.arm(1, false)
	c := startChild(t, key, args...)
	select {
	case <-held:
	case <-c.done:
		t.Fatalf("clade batch exited (%v) before its create call was held:\n%s", c.err, tail(c.stderr(), 3000))
	case <-time.After(60 * time.Second):
		t.Fatalf("timed out waiting for the create call:\n%s", tail(c.stderr(), 3000))
	}
	c.kill()
	// Precondition: killed between the warm calls and the batch.
	if n := emulatorMessages(t, reg); n != prefixes {
		t.Fatalf("at the kill the emulator answered %v Messages calls, want %d (one warm call per prefix)", n, prefixes)
	}
	bs, st := storeBatches(t, db)
	if len(bs) != 1 || bs[0].State != jobs.BatchIntent || st.Requests-st.Pending != prefixes {
		t.Fatalf("at the kill the store has %d batches (%v), %d of %d requests done; want 1 intent and the %d warm lines done",
			len(bs), bs, st.Requests-st.Pending, st.Requests, prefixes)
	}

	c = startChild(t, key, args...)
	if code := c.exitCode(t); code != cli.ExitOK {
		t.Fatalf("resumed run: exit %d, want 0\n%s", code, tail(c.stderr(), 3000))
	}
	seen := countResults(t, out)
	for _, l := range lines {
		id := l[len(`{"custom_id":"`):strings.Index(l, `","params"`)]
		if seen[id] != 1 {
			t.Errorf("%s appears %d times in the output, want exactly once", id, seen[id])
		}
	}
	if n := emulatorMessages(t, reg); n != prefixes {
		t.Errorf("after the resume the emulator answered %v Messages calls, want %d: a warm line was sent again", n, prefixes)
	}
	if got := apiRequests(apiBatches(t, em.URL, key)); got != prefixes*(per-1) {
		t.Errorf("the emulator's batches hold %d requests, want %d (every line but the warm ones, once)", got, prefixes*(per-1))
	}
}
