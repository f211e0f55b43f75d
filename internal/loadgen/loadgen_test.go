package loadgen_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/loadgen"
)

func TestRunCountsEveryRequest(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "unlimited"})
	for _, stream := range []bool{false, true} {
		res, err := loadgen.Run(context.Background(), loadgen.Config{
			URL: em.URL + "/v1/messages", Stream: stream, Concurrency: 4, Requests: 40,
		})
		if err != nil {
			t.Fatalf("Run(stream=%v) error: %v", stream, err)
		}
		if res.Requests != 40 || res.Status[200] != 40 || len(res.Status) != 1 || res.Errors != 0 || res.Incomplete != 0 {
			t.Errorf("Run(stream=%v) = %v, want 40 × 200 and nothing else", stream, res)
		}
		if res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
			t.Errorf("Run(stream=%v) latency = %+v, want 0 < p50 ≤ p99 ≤ max", stream, res.Latency)
		}
		if res.FirstByte.P50 <= 0 || res.FirstByte.Max > res.Latency.Max {
			t.Errorf("Run(stream=%v) first byte = %+v, latency %+v, want 0 < first byte ≤ latency", stream, res.FirstByte, res.Latency)
		}
		if res.RequestsPerSec <= 0 || res.Bytes <= 0 || res.Concurrency != 4 || res.Stream != stream {
			t.Errorf("Run(stream=%v) = %+v, want positive req/s and bytes, concurrency 4", stream, res)
		}
	}
}

func TestRunCountsStatuses(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "unlimited", APIKeys: []string{"sk-ant-other"}})
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: em.URL + "/v1/messages", Concurrency: 3, Requests: 10})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Requests != 10 || res.Status[401] != 10 || res.Status[200] != 0 {
		t.Errorf("Run with a wrong key = %v, want 10 × 401", res)
	}

	res, err = loadgen.Run(context.Background(), loadgen.Config{
		URL: em.URL + "/v1/messages", Concurrency: 2, Requests: 6,
		Header: http.Header{"X-Api-Key": {"sk-ant-other"}, "Anthropic-Version": {"2023-06-01"}},
		Body:   []byte(`{"model":"claude-haiku-4-5"}`),
	})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Status[400] != 6 {
		t.Errorf("Run with a bad body = %v, want 6 × 400", res)
	}
}

func TestRunSendsConfiguredRequest(t *testing.T) {
	t.Parallel()
	var bad atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPut || r.URL.Path != "/x" || string(b) != "payload" || r.Header.Get("X-Test") != "1" {
			bad.Add(1)
		}
		w.Write([]byte("ok"))
	}))
	defer ts.Close()
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: ts.URL + "/x", Method: http.MethodPut, Body: []byte("payload"),
		Header: http.Header{"X-Test": {"1"}}, Concurrency: 5, Requests: 25,
	})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Status[200] != 25 || bad.Load() != 0 {
		t.Errorf("Run = %v with %d malformed requests, want 25 × 200 and none malformed", res, bad.Load())
	}
	if res.Bytes != 25*2 {
		t.Errorf("Bytes = %d, want %d", res.Bytes, 25*2)
	}
}

func TestRunFlagsIncompleteStreams(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message_start\ndata: {}\n\n")
	}))
	defer ts.Close()
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: ts.URL, Stream: true, Concurrency: 2, Requests: 8})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Status[200] != 8 || res.Incomplete != 8 {
		t.Errorf("Run against a stream without message_stop = %v, want 8 incomplete", res)
	}
}

func TestRunCountsTransportErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nothing listens: every request is refused
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: url, Concurrency: 2, Requests: 5})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Errors != 5 || res.Requests != 0 || len(res.Status) != 0 {
		t.Errorf("Run against a closed port = %v, want 5 errors and no responses", res)
	}
}

func TestRunStopsAfterDuration(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "unlimited"})
	const d = 150 * time.Millisecond
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: em.URL + "/v1/messages", Concurrency: 4, Duration: d})
	if err != nil {
		t.Fatalf("Run error: %v", err)
	}
	if res.Elapsed < d || res.Requests == 0 || res.Status[200] != res.Requests {
		t.Errorf("Run(Duration: %v) = %v, want at least %v and only 200s", d, res, d)
	}
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 16)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // the server notices a closed connection only once the body is read
		arrived <- struct{}{}
		<-r.Context().Done() // never answers
	}))
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	res, err := loadgen.Run(ctx, loadgen.Config{URL: ts.URL, Concurrency: 3, Duration: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", err)
	}
	if res == nil || res.Requests != 0 || res.Errors != 0 {
		t.Errorf("Run cancelled = %v, want a result with no responses and no errors", res)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  loadgen.Config
		want string
	}{
		{name: "no url", cfg: loadgen.Config{}, want: "url is required"},
		{name: "bad scheme", cfg: loadgen.Config{URL: "ftp://x"}, want: "scheme must be http or https"},
		{name: "negative concurrency", cfg: loadgen.Config{URL: "http://x", Concurrency: -1}, want: "concurrency -1"},
		{name: "negative duration", cfg: loadgen.Config{URL: "http://x", Duration: -time.Second}, want: "duration -1s"},
		{name: "negative requests", cfg: loadgen.Config{URL: "http://x", Requests: -1}, want: "requests -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := loadgen.Run(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || res != nil {
				t.Errorf("Run(%+v) = %v, %v, want error containing %q", tc.cfg, res, err, tc.want)
			}
		})
	}
}

func TestResultString(t *testing.T) {
	t.Parallel()
	r := &loadgen.Result{
		Requests: 30, Errors: 2, Incomplete: 1, Status: map[int]int64{429: 10, 200: 20},
		Elapsed: 3 * time.Second, RequestsPerSec: 10,
		Latency: loadgen.Quantiles{P50: 1500 * time.Microsecond, P99: 25 * time.Millisecond, Max: 40 * time.Millisecond},
	}
	want := "10 req/s, 30 requests in 3s, 200: 20, 429: 10, errors: 2, incomplete streams: 1, latency p50 1.5ms p99 25ms max 40ms"
	if got := r.String(); got != want {
		t.Errorf("Result.String() = %q, want %q", got, want)
	}
}
