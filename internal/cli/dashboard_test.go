package cli_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/testkit"
)

// lockedBuffer is a buffer safe for a command writing while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDashboardsInChromium runs clade run, clade batch and a hybrid run (clade run
// --deadline) at once, each with --dashboard 127.0.0.1:0, and follows their pages
// from the start of each run to its end in one real headless Chromium
// (testdata/node/dashboard.mjs, launched first, so every page opens as its run
// starts). On each page the progress chart gains points up to 100 % (done), the
// cost and in-flight charts have points, and nothing overflows at 420 px; each
// command exits 0. Per kind:
//
//   - run: tier-1 (50 requests a minute; 64 requests take about 17 s): the ETA of
//     the run's display, the requests chart against the tier's 50 rpm.
//   - batch: 4 batches of 15, which the emulator ends 3 s apart: the ETA from the
//     results' rate, the batches running and ended, the requests in batches in
//     flight; no realtime limit chart.
//   - hybrid: batches of 10 that end 5 s apart, against a 25 s deadline, so the
//     run spills after three or four (realtime, at 600 requests a minute, takes the
//     rest in a second; the 25 s leave a loaded machine seconds of start-up before
//     the first batch ends): the page shows the batches' progress and ETA, then
//     realtime's, with its requests chart against the tier's 600 rpm.
//
// CLADE_RUN_SCREENSHOT_DIR, when set, gets run.png, batch.png and hybrid.png (1,600
// px, at the run's end) and the 420 px ones (KIND-420.png).
func TestDashboardsInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end runs in a browser: skipped with -short")
	}
	t.Parallel()
	node := testkit.NodeClients(t)
	chromium := testkit.Chromium(t)
	browser := node.Command("dashboard.mjs")
	browser.Env = append(os.Environ(), "DASHBOARD_KINDS=run,batch,hybrid", "CHROMIUM="+chromium, "USER_DATA_DIR="+t.TempDir())
	if dir := os.Getenv("CLADE_RUN_SCREENSHOT_DIR"); dir != "" {
		browser.Env = append(browser.Env, "SCREENSHOT_DIR="+dir)
	}
	toBrowser, err := browser.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	report := &lockedBuffer{}
	browser.Stdout, browser.Stderr = report, report
	if err := browser.Start(); err != nil {
		t.Fatal(err)
	}
	browserDone := make(chan error, 1)
	go func() { browserDone <- browser.Wait() }()
	select {
	case err := <-browserDone:
		t.Fatalf("dashboard.mjs exited (%v) before the browser was ready:\n%s", err, report.String())
	case <-waitFor(report, "READY\n", 60*time.Second):
	}

	runs := []*dashboardRun{startRunDashboard(t), startBatchDashboard(t), startHybridDashboard(t)}
	var mu sync.Mutex // one line at a time to the browser
	for _, r := range runs {
		go func() {
			select {
			case <-waitFor(r.log, "dashboard on http://127.0.0.1:", 60*time.Second):
			case <-r.done:
			}
			m := regexp.MustCompile(`dashboard on (http://127\.0\.0\.1:\d+/)`).FindStringSubmatch(r.log.String())
			if m == nil {
				return // reported below, with the command's output
			}
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(toBrowser, "%s %s\n", r.kind, m[1])
		}()
	}
	for _, r := range runs {
		<-r.done
		if r.err != nil || !strings.Contains(r.log.String(), "dashboard on http://127.0.0.1:") {
			t.Errorf("clade %s (%s): %v, want exit 0 after serving its dashboard on 127.0.0.1; output:\n%s",
				strings.Join(r.args, " "), r.kind, r.err, tail(r.log.String(), 3000))
		}
	}
	toBrowser.Close()
	err = <-browserDone
	t.Logf("dashboard.mjs:\n%s", report.String())
	if err != nil || !strings.HasSuffix(strings.TrimSpace(report.String()), "OK") {
		t.Errorf("dashboard.mjs: %v", err)
	}
}

// dashboardRun is a clade command serving its dashboard, as a child process.
type dashboardRun struct {
	kind string
	args []string
	log  *lockedBuffer // its stdout and stderr
	done chan struct{} // closed when it has exited; err is then its error
	err  error
}

func startDashboard(t *testing.T, kind, key string, args ...string) *dashboardRun {
	t.Helper()
	r := &dashboardRun{kind: kind, args: append(args, "--dashboard", "127.0.0.1:0"), log: &lockedBuffer{}, done: make(chan struct{})}
	cmd := cladeCmd(key, r.args...)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		r.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
	})
	return r
}

func startRunDashboard(t *testing.T) *dashboardRun {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, in, 64)
	return startDashboard(t, "run", "", "run", in, "-o", filepath.Join(dir, "out.jsonl"), "--emulate", "tier-1")
}

func startBatchDashboard(t *testing.T) *dashboardRun {
	key := "sk-ant-dashboard-batch-" + strings.Repeat("b", 24)
	// 5 requests a second: the batches of 15 end 3 s apart.
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1, BatchProcessingRate: 5})
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, in, 60)
	return startDashboard(t, "batch", key, "batch", in, "-o", filepath.Join(dir, "out.jsonl"), "--base-url", em.URL,
		"--tier", "tier-4", "--max-requests", "15", "--poll", "50ms")
}

func startHybridDashboard(t *testing.T) *dashboardRun {
	key := "sk-ant-dashboard-hybrid-" + strings.Repeat("h", 24)
	overlay := []byte("tiers:\n  paced:\n    batch: {rpm: 1000, queue: 100000, max_requests: 100000}\n    limits:\n      default: {rpm: 600, itpm: 10000000, otpm: 10000000}\n")
	cat, err := catalog.Overlay(catalog.Default(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	// 2 requests a second: the batches of 10 end 5 s apart, and all would take 30 s.
	em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "paced", APIKeys: []string{key}, ClockSpeed: 1, BatchProcessingRate: 2})
	dir := t.TempDir()
	in, catPath := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "catalog.yaml")
	writeWorkload(t, in, 60)
	if err := os.WriteFile(catPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	return startDashboard(t, "hybrid", key, "run", in, "-o", filepath.Join(dir, "out.jsonl"), "--base-url", em.URL, "--catalog", catPath,
		"--tier", "paced", "--deadline", "25s", "--max-batch-requests", "10", "--poll", "50ms")
}

// waitFor returns a channel closed once s is in b, or after timeout.
func waitFor(b interface{ String() string }, s string, timeout time.Duration) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		defer close(c)
		for end := time.Now().Add(timeout); !strings.Contains(b.String(), s) && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		}
	}()
	return c
}
