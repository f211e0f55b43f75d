package runner_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

// recorder is an http.RoundTripper that logs when each Messages request is sent and
// when each 429 arrives with its retry-after.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	sent []time.Time
	lim  []pause
	n429 int
}

type pause struct{ from, until time.Time }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	now := time.Now()
	r.mu.Lock()
	r.sent = append(r.sent, now)
	r.mu.Unlock()
	resp, err := r.next.RoundTrip(req)
	if err == nil && resp.StatusCode == 429 {
		at := time.Now()
		if ra, perr := strconv.Atoi(resp.Header.Get("retry-after")); perr == nil {
			r.mu.Lock()
			r.lim = append(r.lim, pause{from: at, until: at.Add(time.Duration(ra) * time.Second)})
			r.n429++
			r.mu.Unlock()
		}
	}
	return resp, err
}

func TestRunUnderFaults(t *testing.T) {
	t.Parallel()
	// The emulator enforces 6,000 RPM per second (a bucket of 100 requests) and sends
	// ramp 429s with a retry-after of 1 s, on top of 529 bursts, 500s, 504s and dropped
	// connections. Every request must succeed, and none may be sent inside a
	// retry-after.
	cat, err := catalog.Overlay(catalog.Default(), []byte("tiers:\n  faulty:\n    batch: {rpm: 100, queue: 1000, max_requests: 1000}\n    limits:\n      default: {rpm: 6000, itpm: 10000000, otpm: 10000000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	faults, err := emulator.ParseFaults("burst=1s/300ms,server_error=0.05,timeout=0.03,drop=0.03,ramp=0.04:1s")
	if err != nil {
		t.Fatal(err)
	}
	em := emulator.StartTB(t, emulator.Config{Catalog: cat, Tier: "faulty", BurstFraction: 1.0 / 60, Faults: faults, Seed: 3})
	rec := &recorder{next: http.DefaultTransport.(*http.Transport).Clone()}
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(testKey), HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := jobs.Open(context.Background(), filepath.Join(dir, "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	input := writeInput(t, dir, 120)
	out := filepath.Join(dir, "results.jsonl")
	sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Catalog: cat, Input: input, Output: out, Tier: "tier-4"}, MaxConcurrency: 32})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := testkit.ResultTypes(t, out)
	for id, typ := range got {
		if typ != "succeeded" {
			t.Errorf("%s ended %s, want succeeded despite retryable faults", id, typ)
		}
	}
	if len(got) != 120 {
		t.Errorf("%d results, want 120", len(got))
	}
	if sum.Retried == 0 || sum.Overloaded == 0 {
		t.Errorf("summary %+v: the faults were not exercised", sum)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.n429 == 0 {
		t.Fatalf("no 429 seen: the test does not exercise retry-after")
	}
	// No request leaves after a 429 arrived and before its retry-after passed. A
	// request admitted before the runner had read the 429 may still leave just after
	// it: under -race on a loaded two-core machine that gap has been seen above 5 ms.
	// 100 ms is a tenth of the retry-after, so a client that ignored it (with 32
	// workers sending all the time) would still be caught in the other 900 ms.
	const inTransit = 100 * time.Millisecond
	for _, p := range rec.lim {
		for _, s := range rec.sent {
			if s.After(p.from.Add(inTransit)) && s.Before(p.until) {
				t.Errorf("a request was sent %v after a 429 whose retry-after was %v", s.Sub(p.from), p.until.Sub(p.from))
				return
			}
		}
	}
	t.Logf("120 requests: %d calls, %d 429s, %d 529s, %d retries", sum.Sent, rec.n429, sum.Overloaded, sum.Retried)
}
