// Package loadgen drives an HTTP endpoint with Messages requests and reports
// throughput, status counts and latency quantiles, in one of two modes.
//
// Closed loop (the default): a fixed number of workers each send one request at a
// time over its own keep-alive connection and read every response to the end, so the
// figure it reports is throughput at the given concurrency: what a client with that
// many requests in flight gets. Latency is measured per request from just before it
// is sent.
//
// Open loop (Config.Rate > 0): requests are due on a fixed schedule, Rate per second,
// whether or not the ones before them have been answered, as independent users send
// them. Latency is measured from when a request was due, not from when it was sent,
// so that a server that falls behind (or a generator that cannot keep up) shows in
// the latency instead of silently lowering the offered rate: no coordinated
// omission. The result says the rate achieved and how late requests left (SendLag).
//
// In both, latency runs to the end of the response body; first-byte time stops when
// the response headers arrive. The same generator drives the emulator and any
// baseline server, so figures from one run can be compared as ratios
// (docs/benchmarks.md). Quantiles come from a fixed-size log-linear histogram and are
// within 1.6 % of the exact value.
package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a run. URL is required; the rest have defaults.
type Config struct {
	// URL is the full request URL, e.g. http://127.0.0.1:8080/v1/messages.
	URL string
	// Method is the HTTP method. Default POST.
	Method string
	// Body is sent with every request. Default: DefaultBody(Stream).
	Body []byte
	// Header is sent with every request. Default: DefaultHeader() (content-type,
	// x-api-key, anthropic-version 2023-06-01).
	Header http.Header
	// Stream says the responses are SSE streams: a 200 response counts as incomplete
	// unless its body contains the message_stop event.
	Stream bool
	// Concurrency is, closed loop, the number of workers, each with one request in
	// flight (default 32); open loop, the most requests in flight at once (default
	// DefaultMaxInFlight): a request due while that many are in flight leaves late,
	// its latency still counted from when it was due.
	Concurrency int
	// Rate, when positive, selects the open loop: requests per second, due at fixed
	// intervals from the start. 0: the closed loop.
	Rate float64
	// Duration stops the run after this long: no request starts after it (open loop:
	// Duration × Rate requests are due), and requests in flight finish. Default 10 s
	// when Requests is 0.
	Duration time.Duration
	// Requests stops the run after this many requests (responses plus transport
	// errors). 0 means no count limit.
	Requests int64
	// Drain bounds, open loop, how long requests still in flight when the last one
	// was due may take; then they are cancelled and count as errors. Default 10 s.
	Drain time.Duration
	// Client sends the requests. Default: a client of its own whose transport keeps
	// Concurrency idle connections, ignores proxy settings and asks for no compression;
	// it is closed at the end of the run.
	Client *http.Client
}

// Result is the outcome of a run.
type Result struct {
	// Concurrency, Stream and Rate are the settings the run used (Rate 0: closed loop).
	Concurrency int
	Stream      bool
	Rate        float64
	// Requests is the number of responses received, whatever their status.
	Requests int64
	// Errors is the number of requests that got no complete response (connection
	// refused or reset, body read failed).
	Errors int64
	// Incomplete is the number of 200 streaming responses without message_stop.
	Incomplete int64
	// Status counts responses by HTTP status code.
	Status map[int]int64
	// Bytes is the total size of the response bodies read.
	Bytes int64
	// Elapsed is the wall time from the first request to the last response.
	Elapsed time.Duration
	// RequestsPerSec is Requests / Elapsed.
	RequestsPerSec float64
	// Latency is the time from sending a request to the end of its response body.
	Latency Quantiles
	// FirstByte is the time from sending a request to its response headers.
	// Open loop, both count from when the request was due.
	FirstByte Quantiles

	// Open loop only. AchievedRate is the 200 responses per second of Elapsed, to
	// hold against Rate. Scheduled is the time over which the requests were due
	// (about Duration). Unsent counts the requests never sent (the run was cut off),
	// also counted in Errors. SendLag is how late requests were sent after they were
	// due: large values mean all Concurrency senders were busy, or the generator
	// itself was short of CPU. Senders is how many requests were in flight at most.
	AchievedRate float64
	Scheduled    time.Duration
	Unsent       int64
	SendLag      Quantiles
	Senders      int
}

// Quantiles summarises a latency distribution.
type Quantiles struct {
	P50, P90, P99, P999, Max time.Duration
}

// String is a one-line summary, e.g. "12034 req/s, 120340 requests, 200: 120340, p50 2.1ms p99 6.3ms".
func (r *Result) String() string {
	var b strings.Builder
	if r.Rate > 0 {
		fmt.Fprintf(&b, "open loop: %.0f req/s offered, %.0f achieved (200s), ", r.Rate, r.AchievedRate)
	}
	fmt.Fprintf(&b, "%.0f req/s, %d requests in %v", r.RequestsPerSec, r.Requests, r.Elapsed.Round(time.Millisecond))
	for _, code := range sortedCodes(r.Status) {
		fmt.Fprintf(&b, ", %d: %d", code, r.Status[code])
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, ", errors: %d", r.Errors)
	}
	if r.Incomplete > 0 {
		fmt.Fprintf(&b, ", incomplete streams: %d", r.Incomplete)
	}
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", latency from due p50 %v p99 %v p99.9 %v max %v, send lag p99 %v", round(r.Latency.P50), round(r.Latency.P99),
			round(r.Latency.P999), round(r.Latency.Max), round(r.SendLag.P99))
		return b.String()
	}
	fmt.Fprintf(&b, ", latency p50 %v p99 %v max %v", round(r.Latency.P50), round(r.Latency.P99), round(r.Latency.Max))
	return b.String()
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}

func sortedCodes(m map[int]int64) []int {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	for i := 1; i < len(codes); i++ {
		for j := i; j > 0 && codes[j] < codes[j-1]; j-- {
			codes[j], codes[j-1] = codes[j-1], codes[j]
		}
	}
	return codes
}

// DefaultModel is the model DefaultBody asks for.
const DefaultModel = "claude-haiku-4-5"

// DefaultBody is a small Messages request: one short user turn, max_tokens 256, with
// "stream": true when stream is set.
func DefaultBody(stream bool) []byte {
	s := ""
	if stream {
		s = `,"stream":true`
	}
	return []byte(`{"model":"` + DefaultModel + `","max_tokens":256,"messages":[{"role":"user","content":"Write a haiku about load testing."}]` + s + `}`)
}

// DefaultHeader is the header set a Messages request needs against the emulator.
func DefaultHeader() http.Header {
	return http.Header{
		"Content-Type":      {"application/json"},
		"X-Api-Key":         {"sk-ant-loadgen"},
		"Anthropic-Version": {"2023-06-01"},
	}
}

func (c *Config) validate() error {
	if c.URL == "" {
		return errors.New("url is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("url %q: %w", c.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q: scheme must be http or https", c.URL)
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("concurrency %d: must be positive", c.Concurrency)
	}
	if c.Duration < 0 {
		return fmt.Errorf("duration %v: must not be negative", c.Duration)
	}
	if c.Requests < 0 {
		return fmt.Errorf("requests %d: must not be negative", c.Requests)
	}
	if c.Rate < 0 || c.Rate > 1e6 {
		return fmt.Errorf("rate %g: must be from 0 (closed loop) to 1e6 requests/s", c.Rate)
	}
	if c.Drain < 0 {
		return fmt.Errorf("drain %v: must not be negative", c.Drain)
	}
	return nil
}

// Run sends requests as cfg says and returns what it measured. When ctx ends first, Run
// stops at once (requests in flight are cancelled) and returns the partial result with
// ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if cfg.Method == "" {
		cfg.Method = http.MethodPost
	}
	if cfg.Body == nil {
		cfg.Body = DefaultBody(cfg.Stream)
	}
	if cfg.Header == nil {
		cfg.Header = DefaultHeader()
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 32
		if cfg.Rate > 0 {
			cfg.Concurrency = DefaultMaxInFlight
		}
	}
	if cfg.Duration == 0 && cfg.Requests == 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Drain == 0 {
		cfg.Drain = 10 * time.Second
	}
	client := cfg.Client
	if client == nil {
		tr := &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.Concurrency,
			MaxIdleConnsPerHost: cfg.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	if cfg.Rate > 0 {
		return runOpen(ctx, cfg, client)
	}

	var (
		stop   atomic.Bool
		issued atomic.Int64
	)
	claim := func() bool {
		if stop.Load() || ctx.Err() != nil {
			return false
		}
		return cfg.Requests == 0 || issued.Add(1) <= cfg.Requests
	}
	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		w, err := newWorker(ctx, &cfg, client)
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		workers[i] = w
	}

	start := time.Now()
	if cfg.Duration > 0 {
		t := time.AfterFunc(cfg.Duration, func() { stop.Store(true) })
		defer t.Stop()
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.run(claim) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &Result{Concurrency: cfg.Concurrency, Stream: cfg.Stream, Status: map[int]int64{}, Elapsed: elapsed}
	var lat, fb histogram
	for _, w := range workers {
		res.Requests += w.requests
		res.Errors += w.errors
		res.Incomplete += w.incomplete
		res.Bytes += w.bytes
		for code, n := range w.status {
			if n > 0 {
				res.Status[code] += n
			}
		}
		for code, n := range w.otherStatus {
			res.Status[code] += n
		}
		lat.merge(&w.latency)
		fb.merge(&w.firstByte)
	}
	if elapsed > 0 {
		res.RequestsPerSec = float64(res.Requests) / elapsed.Seconds()
	}
	res.Latency, res.FirstByte = lat.quantiles(), fb.quantiles()
	return res, ctx.Err()
}

// messageStop marks a complete stream.
var messageStop = []byte("event: message_stop")

// worker sends requests one at a time. Its counters are its own, merged after the run.
type worker struct {
	client *http.Client
	req    *http.Request
	data   []byte
	stream bool
	buf    bytes.Buffer

	requests, errors, incomplete, bytes int64
	status                              [600]int64
	otherStatus                         map[int]int64
	latency, firstByte                  histogram
}

func newWorker(ctx context.Context, cfg *Config, client *http.Client) (*worker, error) {
	req, err := http.NewRequestWithContext(ctx, cfg.Method, cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.ContentLength = int64(len(cfg.Body))
	req.GetBody = func() (io.ReadCloser, error) { return &bodyReader{data: cfg.Body}, nil }
	req.Header = cfg.Header.Clone()
	return &worker{client: client, req: req, data: cfg.Body, stream: cfg.Stream}, nil
}

func (w *worker) run(claim func() bool) {
	// The request is reused: the transport is done with it once the response body is
	// closed (http.RoundTripper's contract). Its body is not, as the transport may close
	// a body after RoundTrip returns, so each request gets a fresh one.
	for claim() {
		if len(w.data) > 0 {
			w.req.Body = &bodyReader{data: w.data}
		}
		t0 := time.Now()
		resp, err := w.client.Do(w.req)
		if err != nil {
			if w.req.Context().Err() != nil {
				return // cancelled, not a failure of the server
			}
			w.errors++
			continue
		}
		t1 := time.Now()
		w.buf.Reset()
		n, err := w.buf.ReadFrom(resp.Body)
		resp.Body.Close()
		t2 := time.Now()
		w.bytes += n
		if err != nil {
			w.errors++
			continue
		}
		w.requests++
		if c := resp.StatusCode; c >= 0 && c < len(w.status) {
			w.status[c]++
		} else {
			if w.otherStatus == nil {
				w.otherStatus = map[int]int64{}
			}
			w.otherStatus[c]++
		}
		if w.stream && resp.StatusCode == http.StatusOK && !bytes.Contains(w.buf.Bytes(), messageStop) {
			w.incomplete++
		}
		w.firstByte.record(t1.Sub(t0))
		w.latency.record(t2.Sub(t0))
	}
}

// bodyReader is a rewindable request body.
type bodyReader struct {
	data []byte
	off  int
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.off >= len(b.data) {
		return 0, io.EOF
	}
	n := copy(p, b.data[b.off:])
	b.off += n
	return n, nil
}

func (b *bodyReader) Close() error { return nil }
