package loadgen_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/loadgen"
)

// TestOpenLoopKeepsTheRate: requests leave on schedule against a server that
// answers at once: Duration × Rate of them, all answered, at about Rate.
func TestOpenLoopKeepsTheRate(t *testing.T) {
	t.Parallel()
	var got atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
		w.Write([]byte("ok"))
	}))
	defer ts.Close()
	const rate, d = 400, 500 * time.Millisecond
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: ts.URL, Rate: rate, Duration: d})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Requests != 200 || res.Status[200] != 200 || res.Errors != 0 || got.Load() != 200 {
		t.Errorf("Run(Rate %d, %v) = %v (server saw %d), want 200 × 200", rate, d, res, got.Load())
	}
	if res.Scheduled < d*9/10 || res.Elapsed < res.Scheduled {
		t.Errorf("Run(Rate %d, %v) scheduled over %v, elapsed %v, want about %v", rate, d, res.Scheduled, res.Elapsed, d)
	}
	// The schedule is the property (checked above: 200 due over the 500 ms); what
	// was achieved also counts the last answers, which a loaded machine (-race, 2
	// cores) delays, so only its upper side is fixed.
	if want := float64(res.Requests) / res.Elapsed.Seconds(); res.AchievedRate > rate*1.2 || res.AchievedRate < want*0.9 || res.AchievedRate > want*1.1 {
		t.Errorf("Run(Rate %d) achieved %.0f req/s (%d in %v), want at most about %d and requests ÷ elapsed", rate, res.AchievedRate, res.Requests, res.Elapsed, rate)
	}
	if res.Rate != rate || res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.P999 ||
		res.Latency.P999 > res.Latency.Max {
		t.Errorf("Run = %+v, want Rate %d and 0 < p50 ≤ p99 ≤ p99.9 ≤ max", res, rate)
	}
}

// TestOpenLoopDoesNotWaitForAnswers: a server that answers nothing until every
// request of the run has arrived still gets them all, each from a sender of its
// own: the schedule does not wait for answers.
func TestOpenLoopDoesNotWaitForAnswers(t *testing.T) {
	t.Parallel()
	const n = 40
	var (
		arrived atomic.Int64
		all     = make(chan struct{})
		once    sync.Once
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if arrived.Add(1) == n {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
		case <-r.Context().Done():
			return
		}
		w.Write([]byte("ok"))
	}))
	defer ts.Close()
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: ts.URL, Rate: 1000, Requests: n, Drain: 10 * time.Second})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Status[200] != n || res.Errors != 0 || res.Senders != n {
		t.Errorf("Run = %v with %d senders, want %d × 200 from %d senders", res, res.Senders, n, n)
	}
}

// TestOpenLoopCountsFromSchedule: against a server that takes 20 ms per request
// and one sender (Concurrency 1), requests due every 5 ms leave later and later;
// their latency counts from when they were due, so it grows far beyond the 20 ms a
// closed loop would report (coordinated omission), and the achieved rate shows the
// server could not keep up.
func TestOpenLoopCountsFromSchedule(t *testing.T) {
	t.Parallel()
	const service = 20 * time.Millisecond
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(service): // a slow server
		case <-r.Context().Done():
			return
		}
		w.Write([]byte("ok"))
	}))
	defer ts.Close()
	const n = 20
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: ts.URL, Rate: 200, Requests: n, Concurrency: 1})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Status[200] != n || res.Senders != 1 {
		t.Fatalf("Run = %v with %d senders, want %d × 200 from one sender", res, res.Senders, n)
	}
	// The last request was due at 19 × 5 ms and answered after 20 × 20 ms.
	if res.Latency.Max < 250*time.Millisecond || res.SendLag.Max < 200*time.Millisecond {
		t.Errorf("latency max %v, send lag max %v, want ≥ 250 ms and ≥ 200 ms: latency must count from the schedule",
			res.Latency.Max, res.SendLag.Max)
	}
	if res.AchievedRate > 60 {
		t.Errorf("achieved %.0f req/s against a server of 50 req/s, want ≤ 60", res.AchievedRate)
	}
}

// TestOpenLoopDrainCutsOff: requests still unanswered Drain after the last was due
// are cancelled and counted as errors, and the run ends.
func TestOpenLoopDrainCutsOff(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done() // never answers
	}))
	defer ts.Close()
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: ts.URL, Rate: 100, Requests: 5, Drain: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Errors != 5 || res.Requests != 0 || res.Elapsed > 5*time.Second {
		t.Errorf("Run against a server that never answers = %v, want 5 errors, no responses, ended by the drain", res)
	}
}

// TestOpenLoopAgainstEmulator: JSON and SSE through the real emulator, every
// stream complete.
func TestOpenLoopAgainstEmulator(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "unlimited"})
	for _, stream := range []bool{false, true} {
		res, err := loadgen.Run(context.Background(), loadgen.Config{URL: em.URL + "/v1/messages", Stream: stream, Rate: 200, Requests: 60})
		if err != nil {
			t.Fatalf("Run(stream=%v) error: %v", stream, err)
		}
		if res.Status[200] != 60 || res.Errors != 0 || res.Incomplete != 0 || res.Bytes == 0 {
			t.Errorf("Run(stream=%v) = %v, want 60 complete 200s", stream, res)
		}
		if s := res.String(); !strings.HasPrefix(s, "open loop: 200 req/s offered") || !strings.Contains(s, "p99.9") {
			t.Errorf("Result.String() = %q, want the offered rate and p99.9", s)
		}
	}
}

func TestOpenLoopRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  loadgen.Config
		want string
	}{
		{name: "negative rate", cfg: loadgen.Config{URL: "http://x", Rate: -1}, want: "rate -1"},
		{name: "huge rate", cfg: loadgen.Config{URL: "http://x", Rate: 2e6}, want: "rate 2e+06"},
		{name: "negative drain", cfg: loadgen.Config{URL: "http://x", Rate: 10, Drain: -time.Second}, want: "drain -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := loadgen.Run(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || res != nil {
				t.Errorf("Run(%+v) = %v, %v, want error containing %q", tc.cfg, res, err, tc.want)
			}
		})
	}
}
