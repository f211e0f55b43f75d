package emulator_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/loadgen"
)

// benchBody is a typical small Messages request: a system prompt and one user turn.
func benchBody(stream bool) []byte {
	s := ""
	if stream {
		s = `,"stream":true`
	}
	return []byte(`{"model":"claude-haiku-4-5","max_tokens":256,"system":"You are terse.","messages":[{"role":"user","content":"Write a haiku about load testing."}]` + s + `}`)
}

func newBenchServer(b *testing.B) *emulator.Server {
	b.Helper()
	s, err := emulator.New(emulator.Config{Tier: "unlimited"})
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	return s
}

// benchHandler sends body through s.ServeHTTP b.N times and checks every response.
func benchHandler(b *testing.B, body []byte, wantType string) {
	s := newBenchServer(b)
	rd := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, "/v1/messages", rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", "sk-ant-bench")
	req.Header.Set("Anthropic-Version", emulator.Version2023)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != wantType {
			b.Fatalf("ServeHTTP = %d %s, want 200 %s: %s", rec.Code, rec.Header().Get("Content-Type"), wantType, rec.Body.Bytes())
		}
	}
}

func BenchmarkHandlerPlain(b *testing.B) {
	benchHandler(b, benchBody(false), "application/json")
}

func BenchmarkHandlerStream(b *testing.B) {
	benchHandler(b, benchBody(true), "text/event-stream; charset=utf-8")
}

// baselineBody is what the baseline server answers: a fixed small JSON body.
var baselineBody = []byte(`{"id":"msg_01","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}]}`)

// baselineHandler is the ceiling of net/http here: it reads the body and writes a
// fixed response, doing nothing else.
func baselineHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Write(baselineBody)
}

// BenchmarkLoopback drives servers over loopback with the load generator at a fixed
// concurrency, latency off, tier unlimited: baseline is a trivial net/http handler,
// plain and stream the emulator. Each op is one request; req/s, p50 and p99 are
// reported as metrics, and cpu-µs/req, the CPU time of the whole process (load
// generator and server) per request, which other load on the machine disturbs less
// than req/s. Run with a fixed count for stable figures:
//
//	go test -run '^$' -bench '^BenchmarkLoopback$' -benchtime 200000x ./emulator
func BenchmarkLoopback(b *testing.B) {
	const concurrency = 32
	cases := []struct {
		name   string
		url    func(b *testing.B) string
		stream bool
	}{
		{name: "baseline", url: func(b *testing.B) string {
			ts := httptest.NewServer(http.HandlerFunc(baselineHandler))
			b.Cleanup(ts.Close)
			return ts.URL
		}},
		{name: "plain", url: func(b *testing.B) string {
			return emulator.StartTB(b, emulator.Config{Tier: "unlimited"}).URL
		}},
		{name: "stream", stream: true, url: func(b *testing.B) string {
			return emulator.StartTB(b, emulator.Config{Tier: "unlimited"}).URL
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			url := tc.url(b) + "/v1/messages"
			b.ReportAllocs()
			cpu0 := processCPU(b)
			res, err := loadgen.Run(context.Background(), loadgen.Config{
				URL:         url,
				Body:        benchBody(tc.stream),
				Stream:      tc.stream,
				Concurrency: concurrency,
				Requests:    int64(b.N),
			})
			if err != nil {
				b.Fatalf("loadgen.Run: %v", err)
			}
			if res.Status[http.StatusOK] != int64(b.N) || res.Errors != 0 || res.Incomplete != 0 {
				b.Fatalf("loadgen.Run = %v, want %d × 200", res, b.N)
			}
			cpu := processCPU(b) - cpu0
			b.ReportMetric(res.RequestsPerSec, "req/s")
			b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(b.N), "cpu-µs/req")
			b.ReportMetric(float64(res.Latency.P50)/float64(time.Microsecond), "p50-µs")
			b.ReportMetric(float64(res.Latency.P99)/float64(time.Microsecond), "p99-µs")
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
