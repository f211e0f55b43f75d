package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
)

// AdmitShape is a workload of clade bench admit: what each call asks for and how much
// the emulator generates.
type AdmitShape struct {
	// Name is rpm, otpm or stream.
	Name string
	// Binding is the limit the shape is made to bind on: rpm or otpm.
	Binding string
	// Stream sends each call with Messages.NewStreaming instead of Messages.New.
	Stream bool
	// Prompt is the user turn, with %d for the call's number, so that every body
	// differs and the emulator's seeded output lengths vary.
	Prompt string
	// OutputMedian and OutputSigma are the emulator's log-normal output model, in
	// tokens; MaxTokens is every request's max_tokens.
	OutputMedian, OutputSigma float64
	MaxTokens                 int64
	// Goroutines is how many goroutines call in a loop, unless AdmitConfig.Goroutines
	// says otherwise.
	Goroutines int
}

// The shapes of clade bench admit, for claude-haiku-4-5 on tier-4 (4,000 RPM, 4,000,000
// ITPM, 800,000 OTPM; the emulator answers after 400 ms plus 1/150 s per output token).
//
// AdmitRPM: a call takes about 0.45 s, so 64 goroutines would send 140 a second,
// twice the 66.7 a second RPM allows; output is 0.04 of OTPM at the RPM limit.
//
// AdmitOTPM: a call of about 1,000 output tokens takes about 7 s, about 140 tokens a
// second; OTPM (13,333 tokens a second) needs 94 calls in flight, more than 64
// goroutines can hold (64 sustain at most 0.68 of OTPM whatever the client), so it runs
// 256 goroutines, 2.7 times the demand. RPM at the OTPM limit is 0.2 of the limit.
//
// AdmitStream is AdmitRPM streamed.
var (
	AdmitRPM = AdmitShape{Name: "rpm", Binding: "rpm", Prompt: "In a few words, say something about the number %d.",
		OutputMedian: 8, OutputSigma: 0.3, MaxTokens: 16, Goroutines: 64}
	AdmitOTPM = AdmitShape{Name: "otpm", Binding: "otpm", Prompt: "Write a long story about the number %d.",
		OutputMedian: 1000, OutputSigma: 0.3, MaxTokens: 2048, Goroutines: 256}
	AdmitStream = AdmitShape{Name: "stream", Binding: "rpm", Stream: true, Prompt: AdmitRPM.Prompt,
		OutputMedian: 8, OutputSigma: 0.3, MaxTokens: 16, Goroutines: 64}
)

// AdmitShapes are the shapes by name, in the order they run.
var AdmitShapes = []AdmitShape{AdmitRPM, AdmitOTPM, AdmitStream}

// The clients of clade bench admit, in the order they are reported.
const (
	// ClientAdmit is the official SDK with option.WithMiddleware(lim.Middleware).
	ClientAdmit = "admit"
	// ClientSemaphore is the naive pattern: p-limit(N) around messages.create, the
	// SDK's default retries.
	ClientSemaphore = "semaphore"
	// ClientNone is the SDK alone, with its default retries.
	ClientNone = "none"
)

// AdmitClients are the clients every shape runs, at the same time.
var AdmitClients = []string{ClientAdmit, ClientSemaphore, ClientNone}

// AdmitConfig is one run of clade bench admit.
type AdmitConfig struct {
	// Catalog supplies the tier and the model. Default: catalog.Default().
	Catalog *catalog.Catalog
	// Tier names the limits of the emulator and of the middleware. Default tier-4.
	Tier string
	// Model is every call's model. Default claude-haiku-4-5.
	Model string
	// Shapes run one after the other. Default: AdmitShapes.
	Shapes []AdmitShape
	// Goroutines, when above 0, replaces every shape's own.
	Goroutines int
	// Semaphore is the semaphore client's concurrency. Default 10.
	Semaphore int
	// Warmup runs before each shape's window, so that the emulator's buckets spend
	// the one-minute burst they start with. Default 75 s.
	Warmup time.Duration
	// Window is what is measured. Default 60 s.
	Window time.Duration
	// LatencyScale is the emulator's. Default 1.
	LatencyScale float64
}

func (c AdmitConfig) withDefaults() AdmitConfig {
	if c.Catalog == nil {
		c.Catalog = catalog.Default()
	}
	if c.Tier == "" {
		c.Tier = "tier-4"
	}
	if c.Model == "" {
		c.Model = "claude-haiku-4-5"
	}
	if len(c.Shapes) == 0 {
		c.Shapes = AdmitShapes
	}
	if c.Semaphore == 0 {
		c.Semaphore = 10
	}
	if c.Warmup == 0 {
		c.Warmup = 75 * time.Second
	}
	if c.Window == 0 {
		c.Window = time.Minute
	}
	if c.LatencyScale == 0 {
		c.LatencyScale = 1
	}
	return c
}

func (c AdmitConfig) validate() error {
	var errs []error
	if c.Goroutines < 0 {
		errs = append(errs, fmt.Errorf("goroutines %d: must be 0 (each shape's own) or more", c.Goroutines))
	}
	if c.Semaphore < 1 {
		errs = append(errs, fmt.Errorf("semaphore %d: must be at least 1", c.Semaphore))
	}
	if c.Warmup < 0 {
		errs = append(errs, fmt.Errorf("warm-up %v: must not be negative", c.Warmup))
	}
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("window %v: must be positive", c.Window))
	}
	if c.LatencyScale < 0 {
		errs = append(errs, fmt.Errorf("latency scale %v: must not be negative", c.LatencyScale))
	}
	return errors.Join(errs...)
}

// AdmitReport is the outcome of a run: one entry per shape.
type AdmitReport struct {
	Config AdmitConfig
	Shapes []AdmitShapeResult
}

// AdmitShapeResult is one shape's three clients, measured over the same window.
type AdmitShapeResult struct {
	Shape      AdmitShape
	Goroutines int
	// Clients are in AdmitClients order.
	Clients []AdmitClientResult
	// CPU is the cores this process (the three emulators and the three clients) used
	// over the window; MachineBusy the fraction of the machine's CPU time that was
	// busy over the window, every process's. NaN where /proc cannot be read.
	CPU, MachineBusy float64
}

// AdmitClientResult is one client's figures. Everything is counted at the emulator
// except Calls and GaveUp, which are the SDK's.
type AdmitClientResult struct {
	Client string
	// RPM, ITPM and OTPM are what the emulator served per minute of the window ÷ the
	// limit: requests it admitted and their input when they arrived, output when the
	// call ended (when the emulator charges a non-streaming call's output).
	RPM, ITPM, OTPM float64
	// Requests is the Messages requests (every SDK attempt) that reached the emulator
	// in the window; RateLimited those it answered 429.
	Requests, RateLimited int64
	// WarmupRequests and WarmupRateLimited are the same over the warm-up.
	WarmupRequests, WarmupRateLimited int64
	// Calls is the SDK calls that returned in the window; GaveUp those that returned
	// an error (retries exhausted, or an error not retried).
	Calls, GaveUp int64
	// Conns is the TCP connections the emulator accepted in the window.
	Conns int64
	// BucketStart and BucketEnd are the emulator's bucket of the binding limit at the
	// window's start and end, as a fraction of its capacity (negative: in debt). Near
	// 0 at the start when the warm-up spent the initial burst; the same at both ends
	// when the window saw a steady state, so that it served exactly what refilled
	// plus (start − end) of a minute's limit.
	BucketStart, BucketEnd float64
}

// Utilization is the use of the shape's binding limit.
func (r AdmitClientResult) Utilization(binding string) float64 {
	switch binding {
	case "otpm":
		return r.OTPM
	case "itpm":
		return r.ITPM
	}
	return r.RPM
}

// RateLimitedShare is the fraction of the window's requests answered 429.
func (r AdmitClientResult) RateLimitedShare() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.RateLimited) / float64(r.Requests)
}

// RunAdmit runs every shape of cfg, one after the other; within a shape the three
// clients run at once, each against its own in-process emulator, over the same
// warm-up and window. A run takes about len(Shapes) × (Warmup + Window).
func RunAdmit(ctx context.Context, cfg AdmitConfig) (*AdmitReport, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bench admit config: %w", err)
	}
	tier, err := cfg.Catalog.Tier(cfg.Tier)
	if err != nil {
		return nil, err
	}
	model, err := cfg.Catalog.Resolve(cfg.Model)
	if err != nil {
		return nil, err
	}
	rep := &AdmitReport{Config: cfg}
	for _, sh := range cfg.Shapes {
		res, err := runAdmitShape(ctx, cfg, tier.ClassLimits(model.Class), model.Class, sh)
		if err != nil {
			return nil, fmt.Errorf("shape %s: %w", sh.Name, err)
		}
		rep.Shapes = append(rep.Shapes, *res)
	}
	return rep, nil
}

func runAdmitShape(ctx context.Context, cfg AdmitConfig, lim catalog.Limits, class string, sh AdmitShape) (*AdmitShapeResult, error) {
	n := sh.Goroutines
	if cfg.Goroutines > 0 {
		n = cfg.Goroutines
	}
	res := &AdmitShapeResult{Shape: sh, Goroutines: n}
	var runs []*admitRun
	defer func() {
		for _, r := range runs {
			r.close()
		}
	}()
	for _, client := range AdmitClients {
		r, err := startAdmitRun(cfg, sh, client, class)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}

	start := time.Now()
	from, to := start.Add(cfg.Warmup), start.Add(cfg.Warmup+cfg.Window)
	runCtx, cancel := context.WithDeadline(ctx, to)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range runs {
		r.from, r.to = from, to
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.loop(runCtx)
			}()
		}
	}

	// The window's start: what the emulators' buckets hold, the CPU counters.
	if !sleepUntil(ctx, from) {
		cancel()
		wg.Wait()
		return nil, ctx.Err()
	}
	cpu0 := procCPU()
	busy0, total0 := machineCPU()
	for _, r := range runs {
		r.bucketStart = r.bucketLeft(class, sh.Binding)
		r.conns0 = r.conns.Load()
	}
	if !sleepUntil(ctx, to) {
		cancel()
		wg.Wait()
		return nil, ctx.Err()
	}
	cpu1 := procCPU()
	busy1, total1 := machineCPU()
	for _, r := range runs {
		r.bucketEnd = r.bucketLeft(class, sh.Binding)
		r.conns1 = r.conns.Load()
	}
	cancel()
	wg.Wait()

	secs := cfg.Window.Seconds()
	res.CPU = (cpu1 - cpu0) / secs
	res.MachineBusy = math.NaN()
	if total1 > total0 {
		res.MachineBusy = (busy1 - busy0) / (total1 - total0)
	}
	for _, r := range runs {
		res.Clients = append(res.Clients, r.result(lim, cfg.Window))
	}
	return res, nil
}

// sleepUntil waits until t or until ctx ends; it reports whether t came.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// admitRun is one client against its own emulator.
type admitRun struct {
	shape  AdmitShape
	client string
	reg    *prometheus.Registry
	srv    *http.Server
	served chan error
	tap    *emulatorTap
	sdk    anthropic.Client
	model  string
	sem    chan struct{} // the semaphore client's; nil for the others
	seq    atomic.Int64  // calls started, for the prompts
	conns  atomic.Int64  // TCP connections accepted

	from, to               time.Time
	calls, gaveUp          atomic.Int64 // in the window
	conns0, conns1         int64
	bucketStart, bucketEnd float64
}

func startAdmitRun(cfg AdmitConfig, sh AdmitShape, client, class string) (*admitRun, error) {
	r := &admitRun{shape: sh, client: client, reg: prometheus.NewRegistry(), served: make(chan error, 1)}
	em, err := emulator.New(emulator.Config{
		Catalog: cfg.Catalog, Tier: cfg.Tier, LatencyScale: cfg.LatencyScale, Seed: 1, Registry: r.reg,
		Output: emulator.OutputModel{MedianTokens: sh.OutputMedian, Sigma: sh.OutputSigma},
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	r.tap = &emulatorTap{h: em}
	r.srv = &http.Server{Handler: r.tap, ReadHeaderTimeout: 10 * time.Second, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			r.conns.Add(1)
		}
	}}
	go func() { r.served <- r.srv.Serve(ln) }()

	// The SDK's own default HTTP client (a clone of http.DefaultTransport per client),
	// without reading the environment.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 10 * time.Minute
	opts := []option.RequestOption{option.WithoutEnvironmentDefaults(), option.WithHTTPClient(&http.Client{Transport: tr}),
		option.WithBaseURL("http://" + ln.Addr().String()), option.WithAPIKey("sk-ant-bench")}
	if client == ClientAdmit {
		lim, err := admit.New(admit.Config{Catalog: cfg.Catalog, Tier: cfg.Tier})
		if err != nil {
			r.close()
			return nil, err
		}
		opts = append(opts, option.WithMiddleware(lim.Middleware))
	}
	if client == ClientSemaphore {
		r.sem = make(chan struct{}, cfg.Semaphore)
	}
	r.sdk = anthropic.NewClient(opts...)
	r.model = cfg.Model
	return r, nil
}

func (r *admitRun) close() {
	r.srv.Close()
	<-r.served
}

// loop is one goroutine: it calls until ctx ends (the semaphore client's through
// r.sem) and counts the calls that return in the window.
func (r *admitRun) loop(ctx context.Context) {
	for ctx.Err() == nil {
		if r.sem != nil {
			select {
			case r.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		err := r.call(ctx)
		if r.sem != nil {
			<-r.sem
		}
		if ctx.Err() != nil {
			return // cut at the end of the window: not the SDK's outcome
		}
		if t := time.Now(); !t.Before(r.from) && t.Before(r.to) {
			r.calls.Add(1)
			if err != nil {
				r.gaveUp.Add(1)
			}
		}
	}
}

// call is one SDK call, read to its end.
func (r *admitRun) call(ctx context.Context) error {
	p := anthropic.MessageNewParams{Model: anthropic.Model(r.model), MaxTokens: r.shape.MaxTokens,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(fmt.Sprintf(r.shape.Prompt, r.seq.Add(1))))}}
	if !r.shape.Stream {
		_, err := r.sdk.Messages.New(ctx, p)
		return err
	}
	s := r.sdk.Messages.NewStreaming(ctx, p)
	defer s.Close()
	for s.Next() {
	}
	return s.Err()
}

// bucketLeft reads the emulator's bucket of binding for class from its metrics, as
// a fraction of the bucket's capacity.
func (r *admitRun) bucketLeft(class, binding string) float64 {
	limit := map[string]string{"rpm": "requests", "itpm": "input_tokens", "otpm": "output_tokens"}[binding]
	mfs, err := r.reg.Gather()
	if err != nil {
		return math.NaN()
	}
	var level, capacity = math.NaN(), math.NaN()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var c, l string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "class":
					c = lp.GetValue()
				case "limit":
					l = lp.GetValue()
				}
			}
			if c != class || l != limit {
				continue
			}
			switch mf.GetName() {
			case "clade_emulator_ratelimit_remaining":
				level = m.GetGauge().GetValue()
			case "clade_emulator_ratelimit_capacity":
				capacity = m.GetGauge().GetValue()
			}
		}
	}
	return level / capacity
}

// result counts the emulator's records over the window.
func (r *admitRun) result(lim catalog.Limits, window time.Duration) AdmitClientResult {
	res := AdmitClientResult{Client: r.client, Calls: r.calls.Load(), GaveUp: r.gaveUp.Load(),
		Conns: r.conns1 - r.conns0, BucketStart: r.bucketStart, BucketEnd: r.bucketEnd}
	var reqs, in, out float64
	r.tap.mu.Lock()
	defer r.tap.mu.Unlock()
	for _, c := range r.tap.calls {
		arrived := !c.arrived.Before(r.from) && c.arrived.Before(r.to)
		switch {
		case c.arrived.Before(r.from):
			res.WarmupRequests++
			if c.status == http.StatusTooManyRequests {
				res.WarmupRateLimited++
			}
		case arrived:
			res.Requests++
			if c.status == http.StatusTooManyRequests {
				res.RateLimited++
			}
		}
		if c.status != http.StatusOK {
			continue
		}
		if arrived {
			reqs++
			in += float64(c.in)
		}
		if !c.ended.Before(r.from) && c.ended.Before(r.to) {
			out += float64(c.out)
		}
	}
	mins := window.Minutes()
	res.RPM = reqs / mins / float64(lim.RPM)
	res.ITPM = in / mins / float64(lim.ITPM)
	res.OTPM = out / mins / float64(lim.OTPM)
	return res
}

// emulatorTap wraps the emulator's handler and records every Messages request: when
// it arrived and ended, its status, and the usage its answer reported.
type emulatorTap struct {
	h     http.Handler
	mu    sync.Mutex
	calls []tapCall
}

type tapCall struct {
	arrived, ended time.Time
	status         int
	in, out        int64
}

func (t *emulatorTap) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/messages" {
		t.h.ServeHTTP(w, req)
		return
	}
	c := tapCall{arrived: time.Now()}
	tw := &tapWriter{ResponseWriter: w, status: http.StatusOK}
	t.h.ServeHTTP(tw, req)
	c.ended, c.status = time.Now(), tw.status
	c.in, c.out = lastInt(tw.tail, `"input_tokens":`), lastInt(tw.tail, `"output_tokens":`)
	t.mu.Lock()
	t.calls = append(t.calls, c)
	t.mu.Unlock()
}

// tapWriter keeps the status and the last bytes of a response: the usage is at the
// end of a JSON message, and in the message_delta event at the end of a stream.
type tapWriter struct {
	http.ResponseWriter
	status int
	tail   []byte
}

const tapTail = 1024

func (w *tapWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *tapWriter) Write(p []byte) (int, error) {
	if len(p) >= tapTail {
		w.tail = append(w.tail[:0], p[len(p)-tapTail:]...)
	} else {
		if over := len(w.tail) + len(p) - tapTail; over > 0 {
			w.tail = append(w.tail[:0], w.tail[over:]...)
		}
		w.tail = append(w.tail, p...)
	}
	return w.ResponseWriter.Write(p)
}

func (w *tapWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *tapWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// lastInt is the integer after the last key in b, or 0.
func lastInt(b []byte, key string) int64 {
	i := bytes.LastIndex(b, []byte(key))
	if i < 0 {
		return 0
	}
	rest := bytes.TrimLeft(b[i+len(key):], " ")
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, _ := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n
}

// procCPU is the CPU time this process has used, in seconds (user and system, from
// /proc/self/stat in its 1/100 s ticks), or NaN.
func procCPU() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return math.NaN()
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return math.NaN()
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return math.NaN()
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return math.NaN()
	}
	return (utime + stime) / 100
}

// machineCPU is the machine's busy and total CPU time so far (the first line of
// /proc/stat, in ticks: idle and iowait are not busy), or NaNs.
func machineCPU() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return math.NaN(), math.NaN()
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return math.NaN(), math.NaN()
	}
	for k, s := range f[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return math.NaN(), math.NaN()
		}
		if k >= 8 { // guest time is already counted in user
			break
		}
		total += v
		if k != 3 && k != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}
