package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxInFlight is the open loop's default bound on requests in flight.
const DefaultMaxInFlight = 10000

// runOpen is the open loop: request i is due at start + i/Rate, whatever happened
// to the requests before it. A due request is handed to an idle sender, or to a new
// one while fewer than cfg.Concurrency are busy; with all of them busy it waits for
// one, and starts late. Its latency counts from when it was due, not from when it
// was sent, so a server (or a generator) that falls behind shows in the quantiles
// instead of lowering the rate it is offered (coordinated omission).
func runOpen(ctx context.Context, cfg Config, client *http.Client) (*Result, error) {
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	total := cfg.Requests
	if cfg.Duration > 0 {
		n := int64(cfg.Duration.Seconds() * cfg.Rate)
		if total == 0 || n < total {
			total = n
		}
	}
	total = max(total, 1)
	o := &openRun{cfg: &cfg, client: client, status: map[int]int64{}, due: make(chan time.Time)}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o.ctx = ctx

	start := time.Now()
	var wg sync.WaitGroup
	var busy int // senders started; the scheduler's own count
schedule:
	for i := int64(0); i < total; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				break schedule
			}
		}
		select {
		case o.due <- at: // an idle sender took it
			continue
		default:
		}
		if busy < cfg.Concurrency {
			busy++
			wg.Go(o.send)
		}
		select {
		case o.due <- at:
		case <-ctx.Done():
			break schedule
		}
	}
	close(o.due)
	scheduled := time.Since(start)
	if cfg.Drain > 0 {
		t := time.AfterFunc(cfg.Drain, cancel) // what is still in flight then counts as errors
		defer t.Stop()
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := &Result{Concurrency: cfg.Concurrency, Stream: cfg.Stream, Status: o.status, Elapsed: elapsed,
		Rate: cfg.Rate, Scheduled: scheduled, Senders: busy}
	res.Requests, res.Errors, res.Incomplete, res.Bytes = o.requests, o.errors, o.incomplete, o.bytes
	res.Unsent = total - o.started.Load()
	res.Errors += res.Unsent
	if elapsed > 0 {
		res.RequestsPerSec = float64(res.Requests) / elapsed.Seconds()
		res.AchievedRate = float64(res.Status[http.StatusOK]) / elapsed.Seconds()
	}
	res.Latency, res.FirstByte, res.SendLag = o.latency.quantiles(), o.firstByte.quantiles(), o.lag.quantiles()
	return res, parent.Err()
}

// openRun is one open-loop run's shared state: the senders record into it under mu.
type openRun struct {
	cfg    *Config
	client *http.Client
	ctx    context.Context
	due    chan time.Time

	started atomic.Int64

	mu                                  sync.Mutex
	requests, errors, incomplete, bytes int64
	status                              map[int]int64
	latency, firstByte, lag             histogram
}

// send sends the due requests it is handed, one at a time, until the schedule ends.
func (o *openRun) send() {
	req, err := http.NewRequestWithContext(o.ctx, o.cfg.Method, o.cfg.URL, nil)
	if err != nil {
		panic(fmt.Sprintf("loadgen: build request: %v", err)) // validated before the run
	}
	req.ContentLength = int64(len(o.cfg.Body))
	req.GetBody = func() (io.ReadCloser, error) { return &bodyReader{data: o.cfg.Body}, nil }
	req.Header = o.cfg.Header.Clone()
	var buf bytes.Buffer
	for at := range o.due {
		o.started.Add(1)
		if len(o.cfg.Body) > 0 {
			req.Body = &bodyReader{data: o.cfg.Body}
		}
		sent := time.Now()
		resp, err := o.client.Do(req)
		if err != nil {
			o.record(func() { o.errors++ })
			continue
		}
		first := time.Now()
		buf.Reset()
		n, err := buf.ReadFrom(resp.Body)
		resp.Body.Close()
		end := time.Now()
		incomplete := o.cfg.Stream && resp.StatusCode == http.StatusOK && !bytes.Contains(buf.Bytes(), messageStop)
		o.record(func() {
			o.bytes += n
			o.lag.record(sent.Sub(at))
			if err != nil {
				o.errors++
				return
			}
			o.requests++
			o.status[resp.StatusCode]++
			if incomplete {
				o.incomplete++
			}
			o.firstByte.record(first.Sub(at))
			o.latency.record(end.Sub(at))
		})
	}
}

func (o *openRun) record(f func()) {
	o.mu.Lock()
	f()
	o.mu.Unlock()
}
