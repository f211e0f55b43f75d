package serve_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/dashboard"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/testkit"
)

// Client keys of the dashboard tests' teams.
const (
	dashKeyA = "ck-dash-research-0001"
	dashKeyB = "ck-dash-ops-0001"
)

// dashGateway is a gateway of two teams with budgets on a tier of 30 requests a
// minute in full-minute buckets (research capped at half), its dashboard sampling
// every 2 s.
func dashGateway(t *testing.T) *gateway {
	t.Helper()
	keys := "teams:\n  research: {budget: {day: 1}, cap: 0.5}\n  ops: {budget: {day: 0.004}}\nkeys:\n  " +
		dashKeyA + ": research\n  " + dashKeyB + ": ops\n"
	gw := startGateway(t, setup{cat: tinyTier(t, 30), tier: "tiny", keys: keys, maxWait: 2 * time.Minute,
		spend: openSpend(t, jobstest.SQLite().NewDSN(t))})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { gw.G.RunDashboard(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return gw
}

// traffic sends n calls of team key at once, and bad calls of an unknown model,
// and returns when all are answered.
func traffic(gw *gateway, key string, n, bad int) {
	c := v2(gw.URL, key)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c.Messages.New(context.Background(), hello("claude-haiku-4-5", 32, fmt.Sprintf("dashboard call %d", i)))
		})
	}
	for range bad {
		wg.Go(func() { c.Messages.New(context.Background(), hello("claude-nonexistent-1", 32, "no such model")) })
	}
	wg.Wait()
}

func getSeries(t *testing.T, url string) dashboard.Series {
	t.Helper()
	resp, err := http.Get(url + dashboard.SeriesPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, secret := range []string{orgKey, dashKeyA, dashKeyB} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("the dashboard's series holds the key %s", secret)
		}
	}
	var s dashboard.Series
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("series %s: %v", b, err)
	}
	return s
}

// TestDashboardSeries drives calls of two teams through a gateway over its tier's
// limits: the dashboard's samples show the class over its request limit, the
// teams' queues and waits, the errors and the budgets.
func TestDashboardSeries(t *testing.T) {
	t.Parallel()
	gw := dashGateway(t)
	var wg sync.WaitGroup
	wg.Go(func() { traffic(gw, dashKeyA, 36, 2) })
	wg.Go(func() { traffic(gw, dashKeyB, 4, 0) })
	wg.Wait()
	// The waits ended by now; the next sample has the last ones.
	deadline := time.Now().Add(30 * time.Second)
	var over, waited, errs, budgets bool
	for time.Now().Before(deadline) && !(over && waited && errs && budgets) {
		for _, s := range getSeries(t, gw.URL).Samples {
			for _, c := range s.Classes {
				over = over || (c.Name == "haiku-4-5" && c.Requests.PerMin > c.Requests.Limit && c.Requests.Limit == 30)
			}
			for _, tm := range s.Teams {
				waited = waited || (tm.Name == "research" && tm.WaitP99 != nil && *tm.WaitP99 > 1)
				errs = errs || (tm.Name == "research" && tm.ErrorsPerMin >= 2)
			}
			for _, b := range s.Budgets {
				budgets = budgets || (b.Team == "research" && b.SpentUSD > 0 && b.LimitUSD == 1)
			}
		}
		time.Sleep(500 * time.Millisecond) // the sampler's next point
	}
	if !over || !waited || !errs || !budgets {
		ss := getSeries(t, gw.URL).Samples
		b, _ := json.Marshal(ss[len(ss)-1])
		t.Logf("last sample: %s", b)
		t.Errorf("samples: haiku over its 30 rpm %v, research waited over 1 s %v, research's errors %v, research's spend %v; want all",
			over, waited, errs, budgets)
	}
}

// TestDashboardInChromium opens the gateway's page in a real headless Chromium
// (Playwright, testdata/node/dashboard.mjs) while calls flow: the charts draw
// their points, gain points and change values as more calls pass, show the class
// over its request limit in the over colour, do not overflow at 420 px, fetch
// nothing from elsewhere; the screenshot at 1,600 px is docs/dashboard.png.
func TestDashboardInChromium(t *testing.T) {
	t.Parallel()
	node := testkit.NodeClients(t)
	chromium := testkit.Chromium(t)
	gw := dashGateway(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { traffic(gw, dashKeyA, 40, 3) })
	wg.Go(func() { traffic(gw, dashKeyB, 8, 0) })
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("CLADE_UPDATE_SCREENSHOT") != "" {
		shot, _ = filepath.Abs(filepath.Join("..", "..", "docs", "dashboard.png"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := node.Command("dashboard.mjs")
	cmd.Env = append(os.Environ(), "DASHBOARD_URL="+gw.URL+"/", "CHROMIUM="+chromium,
		"USER_DATA_DIR="+t.TempDir(), "SCREENSHOT="+shot)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		cmd.Process.Kill()
	}()
	lines := bufio.NewScanner(stdout)
	var report []string
	for lines.Scan() {
		line := lines.Text()
		report = append(report, line)
		t.Log("dashboard.mjs: " + line)
		if line == "MORE" {
			// The page has drawn the first points: more calls, then tell it.
			traffic(gw, dashKeyB, 6, 2)
			fmt.Fprintln(stdin, "SENT")
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dashboard.mjs: %v\n%s", err, stderr.String())
	}
	if len(report) == 0 || report[len(report)-1] != "OK" {
		t.Fatalf("dashboard.mjs did not report OK:\n%s\n%s", strings.Join(report, "\n"), stderr.String())
	}
	if fi, err := os.Stat(shot); err != nil {
		t.Errorf("screenshot: %v", err)
	} else if fi.Size() < 10000 {
		t.Errorf("screenshot %s: %d bytes, want a PNG of the page", shot, fi.Size())
	}
}
