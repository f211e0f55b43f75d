package cli_test

import (
	"bytes"
	"cmp"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/cli"
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

// TestRunDashboardInChromium runs clade run --dashboard 127.0.0.1:0 against the
// emulator at tier-1 (50 requests a minute, so 80 requests take half a minute)
// and opens the page in a real headless Chromium (testdata/node/dashboard.mjs):
// the progress chart gains points as results come in, the ETA of the run's
// display appears, the requests chart shows the tier's limit, no overflow at 420 px.
func TestRunDashboardInChromium(t *testing.T) {
	t.Parallel()
	node := testkit.NodeClients(t)
	chromium := testkit.Chromium(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeWorkload(t, in, 80)
	var stdout bytes.Buffer
	stderr := &lockedBuffer{}
	args := []string{"run", in, "-o", out, "--emulate", "tier-1", "--dashboard", "127.0.0.1:0"}
	code := make(chan int, 1)
	go func() { code <- cli.Run(context.Background(), args, strings.NewReader(""), &stdout, stderr) }()
	addr := regexp.MustCompile(`dashboard on (http://127\.0\.0\.1:\d+/)`)
	var url string
	for end := time.Now().Add(30 * time.Second); url == "" && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if m := addr.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		}
	}
	if url == "" {
		t.Fatalf("clade run printed no dashboard address on 127.0.0.1:\n%s", stderr.String())
	}
	cmd := node.Command("dashboard.mjs")
	cmd.Env = append(os.Environ(), "DASHBOARD_URL="+url, "DASHBOARD_KIND=run", "CHROMIUM="+chromium,
		"USER_DATA_DIR="+t.TempDir(), "SCREENSHOT="+filepath.Join(cmp.Or(os.Getenv("CLADE_RUN_SCREENSHOT_DIR"), t.TempDir()), "run.png"))
	report, err := cmd.CombinedOutput()
	t.Logf("dashboard.mjs:\n%s", report)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(report)), "OK") {
		t.Errorf("dashboard.mjs: %v", err)
	}
	if c := <-code; c != cli.ExitOK {
		t.Fatalf("clade %s = exit %d, want 0; stderr:\n%s", strings.Join(args, " "), c, stderr.String())
	}
}
