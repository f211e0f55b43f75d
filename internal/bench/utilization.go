// Package bench measures clade end to end against the emulator: how much of an
// account's binding rate limit a run sustains, compared with a fixed-concurrency
// client in the same conditions.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/upstream"
)

// Shape is a workload shape.
type Shape struct {
	Name string
	// InputTokens is each prompt's size; OutputMedian the emulator's median output;
	// MaxTokens the requests' max_tokens.
	InputTokens, OutputMedian, MaxTokens int64
}

// The two shapes of docs/benchmarks.md: one binds on input tokens, one on output.
var (
	InputHeavy  = Shape{Name: "input-heavy", InputTokens: 2000, OutputMedian: 40, MaxTokens: 64}
	OutputHeavy = Shape{Name: "output-heavy", InputTokens: 60, OutputMedian: 400, MaxTokens: 1024}
)

// UtilizationConfig is one measurement.
type UtilizationConfig struct {
	Catalog *catalog.Catalog
	Tier    string
	Model   string
	Shape   Shape
	// Warmup runs before the window, so that the buckets' initial one-minute burst is
	// spent and the window sees the sustained rate. Window is what is measured.
	Warmup, Window time.Duration
	// Client is "clade" (the runner, with its store) or "fixed" (N workers that send
	// as fast as they can and retry 429s after retry-after, as the SDKs do).
	Client string
	// FixedWorkers is N for the fixed client. Default 10.
	FixedWorkers int
	// LatencyScale is the emulator's. Default 1.
	LatencyScale float64
	// Burst is the buckets' capacity as a fraction of one minute's limit, for both the
	// emulator and clade's limiter. Default 1 (the API's documented buckets).
	Burst float64
	// Dir holds the workload and the store. Default: a temporary directory.
	Dir string
}

// Utilization is the outcome of one measurement.
type Utilization struct {
	Config UtilizationConfig
	// Binding names the limit with the highest use: rpm, itpm or otpm.
	Binding string
	// RPM, ITPM and OTPM are each sustained rate ÷ its limit, over the window.
	RPM, ITPM, OTPM float64
	// Sent and RateLimited count calls over the whole run; Failed counts requests the
	// fixed client gave up on.
	Sent, RateLimited, Failed int64
}

// Max is the utilization of the binding limit.
func (u Utilization) Max() float64 { return math.Max(u.RPM, math.Max(u.ITPM, u.OTPM)) }

// RateLimitedShare is the fraction of calls answered 429.
func (u Utilization) RateLimitedShare() float64 {
	if u.Sent == 0 {
		return 0
	}
	return float64(u.RateLimited) / float64(u.Sent)
}

// call is one completed call as the recorder saw it.
type call struct {
	sent, done time.Time
	status     int
	in, out    int64
}

// recorder wraps a transport and records each Messages call's timing and usage.
type recorder struct {
	next  http.RoundTripper
	mu    sync.Mutex
	calls []call
	// started is closed at the first call, whose time is first: the measurement
	// runs from there, not from when the client began (a client's start-up, import
	// included, takes seconds on a loaded machine).
	started   chan struct{}
	startOnce sync.Once
	first     time.Time
}

func newRecorder(next http.RoundTripper) *recorder {
	return &recorder{next: next, started: make(chan struct{})}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	c := call{sent: time.Now()}
	r.startOnce.Do(func() {
		r.first = c.sent
		close(r.started)
	})
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	c.status = resp.StatusCode
	if resp.StatusCode == 200 && strings.HasSuffix(req.URL.Path, "/v1/messages") {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if rerr != nil {
			return resp, nil
		}
		var m struct {
			Usage struct {
				Input      int64 `json:"input_tokens"`
				CacheWrite int64 `json:"cache_creation_input_tokens"`
				Output     int64 `json:"output_tokens"`
			} `json:"usage"`
		}
		if json.Unmarshal(body, &m) == nil {
			c.in, c.out = m.Usage.Input+m.Usage.CacheWrite, m.Usage.Output
		}
	}
	c.done = time.Now()
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return resp, nil
}

// MeasureUtilization runs one measurement against a fresh in-process emulator.
func MeasureUtilization(ctx context.Context, cfg UtilizationConfig) (*Utilization, error) {
	if cfg.Catalog == nil {
		cfg.Catalog = catalog.Default()
	}
	if cfg.Model == "" {
		cfg.Model = "claude-haiku-4-5"
	}
	if cfg.FixedWorkers <= 0 {
		cfg.FixedWorkers = 10
	}
	if cfg.LatencyScale == 0 {
		cfg.LatencyScale = 1
	}
	tier, err := cfg.Catalog.Tier(cfg.Tier)
	if err != nil {
		return nil, err
	}
	model, err := cfg.Catalog.Resolve(cfg.Model)
	if err != nil {
		return nil, err
	}
	lim := tier.ClassLimits(model.Class)
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	em, err := emulator.Start(emulator.Config{
		Catalog: cfg.Catalog, Tier: cfg.Tier, LatencyScale: cfg.LatencyScale, Seed: 1, BurstFraction: cfg.Burst,
		Output: emulator.OutputModel{MedianTokens: float64(cfg.Shape.OutputMedian), Sigma: 0.3},
	})
	if err != nil {
		return nil, err
	}
	defer em.Close()
	rec := newRecorder(&http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0})
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret("sk-ant-bench"), HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		return nil, err
	}

	// Enough requests for twice the limit over the whole run, plus the first burst.
	total := cfg.Warmup + cfg.Window
	perMin := math.Min(float64(lim.RPM), math.Min(float64(lim.ITPM)/float64(cfg.Shape.InputTokens+10), float64(lim.OTPM)/float64(cfg.Shape.OutputMedian)))
	n := int(2*perMin*(total.Minutes()+1)) + 100

	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "clade-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	input := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.jsonl", cfg.Tier, cfg.Shape.Name, cfg.Client))
	if err := writeWorkload(input, n, model.ID, cfg.Shape); err != nil {
		return nil, err
	}

	start := time.Now()
	// The run ends total after its first call (or, if it never calls, a few minutes
	// after it began).
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		never := time.NewTimer(total + 3*time.Minute)
		defer never.Stop()
		select {
		case <-rec.started:
			t := time.NewTimer(time.Until(rec.first.Add(total)))
			defer t.Stop()
			select {
			case <-t.C:
			case <-runCtx.Done():
			}
		case <-never.C:
		case <-runCtx.Done():
		}
		cancel()
	}()
	u := &Utilization{Config: cfg}
	switch cfg.Client {
	case "clade":
		st, err := jobs.Open(ctx, input+".db")
		if err != nil {
			return nil, err
		}
		defer st.Close()
		lim, err := admit.New(admit.Config{Catalog: cfg.Catalog, Tier: cfg.Tier, Burst: cfg.Burst})
		if err != nil {
			return nil, err
		}
		_, err = runner.Run(runCtx, runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Catalog: cfg.Catalog, Input: input, Tier: cfg.Tier}, Limiter: lim})
		if err != nil && !(runCtx.Err() != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))) {
			return nil, err
		}
	case "fixed":
		u.Failed = runFixed(runCtx, client, input, cfg.FixedWorkers)
	default:
		return nil, fmt.Errorf("client %q: want clade or fixed", cfg.Client)
	}

	rec.mu.Lock()
	if len(rec.calls) == 0 {
		rec.mu.Unlock()
		return nil, fmt.Errorf("%s client sent no request", cfg.Client)
	}
	from, to := rec.first.Add(cfg.Warmup), rec.first.Add(total)
	var reqs, in, out float64
	for _, c := range rec.calls {
		u.Sent++
		if c.status == 429 {
			u.RateLimited++
		}
		if c.status != 200 {
			continue
		}
		// The API counts a request and its input when it starts, and its output as it
		// is generated (the emulator charges a non-streaming call's output at its end).
		if !c.sent.Before(from) && c.sent.Before(to) {
			reqs++
			in += float64(c.in)
		}
		if !c.done.Before(from) && c.done.Before(to) {
			out += float64(c.out)
		}
	}
	rec.mu.Unlock()
	if os.Getenv("CLADE_BENCH_DEBUG") != "" {
		buckets := map[int][3]int64{}
		for _, c := range rec.calls {
			k := int(c.sent.Sub(start) / (5 * time.Second))
			b := buckets[k]
			b[0]++
			b[1] += c.out
			if c.status != 200 {
				b[2]++
			}
			buckets[k] = b
		}
		for k := 0; k < 20; k++ {
			if b, ok := buckets[k]; ok {
				fmt.Fprintf(os.Stderr, "t=%3ds calls=%d out=%d non200=%d\n", k*5, b[0], b[1], b[2])
			}
		}
	}
	mins := cfg.Window.Minutes()
	u.RPM = reqs / mins / float64(lim.RPM)
	u.ITPM = in / mins / float64(lim.ITPM)
	u.OTPM = out / mins / float64(lim.OTPM)
	u.Binding = "rpm"
	if u.ITPM > u.RPM && u.ITPM >= u.OTPM {
		u.Binding = "itpm"
	} else if u.OTPM > u.RPM && u.OTPM > u.ITPM {
		u.Binding = "otpm"
	}
	return u, nil
}

func writeWorkload(path string, n int, model string, s Shape) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	// The emulator counts ceil(bytes/4) tokens, plus a few for the request shape.
	filler := strings.Repeat("data", int(s.InputTokens))
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, `{"custom_id":"b-%07d","params":{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":"%d %s"}]}}`+"\n",
			i, model, s.MaxTokens, i, filler)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// paramsOf sends the params of each line of the JSONL file input on lines, in
// order, until the file ends (lines closed) or ctx does; lines that are not JSON
// are skipped. done closes the file once the caller is done with lines.
func paramsOf(ctx context.Context, input string) (lines <-chan []byte, done func(), err error) {
	f, err := os.Open(input)
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan []byte)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var l struct {
				Params json.RawMessage `json:"params"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			select {
			case ch <- l.Params:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, func() { f.Close() }, nil
}

// runFixed is the seed's approach: N workers, each sending the next line as soon as
// it has one, retrying a failure at most twice after retry-after (or 0.5 s, doubling),
// as the SDKs do by default. It returns how many requests it gave up on.
func runFixed(ctx context.Context, client *upstream.Client, input string, workers int) int64 {
	lines, closeInput, err := paramsOf(ctx, input)
	if err != nil {
		return 0
	}
	defer closeInput()
	var mu sync.Mutex
	var failed int64
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range lines {
				ok := false
				for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
					_, err := client.Messages(ctx, p)
					if err == nil {
						ok = true
						break
					}
					wait := time.Duration(500*(1<<attempt)) * time.Millisecond
					var ae *upstream.APIError
					if errors.As(err, &ae) && ae.HasRetryAfter {
						wait = ae.RetryAfter
					}
					select {
					case <-time.After(wait):
					case <-ctx.Done():
					}
				}
				if !ok && ctx.Err() == nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return failed
}
