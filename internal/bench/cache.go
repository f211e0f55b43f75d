package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
)

// CacheConfig is one measurement of prompt-cache scheduling (docs/benchmarks.md,
// "Prompt-cache scheduling"): Documents documents of about DocTokens tokens, each
// asked Questions short questions, one line per question, grouped by document as a
// user writes them, the document in a cache_control block; clade run against a
// fresh in-process emulator, with its scheduling or without (ScheduleOff: today's
// order at full concurrency).
type CacheConfig struct {
	Catalog *catalog.Catalog
	// Tier is the emulator's and the runner's. Default tier-2.
	Tier string
	// Model is the lines' model. Default claude-sonnet-4-6 (Sonnet 4.x: 450,000
	// ITPM at tier 2, min_cache_tokens 1,024).
	Model string
	// Documents, Questions and DocTokens shape the input. Defaults 200, 10, 6,000.
	Documents, Questions int
	DocTokens            int64
	// Concurrency is the runner's MaxConcurrency. Default 256.
	Concurrency int
	// ScheduleOff turns the runner's prompt-cache scheduling off.
	ScheduleOff bool
	// OneWorkerPerSlot keeps the runner at one job per slot of Concurrency, the
	// waiting ones included (runner.TestHooks.OneWorkerPerSlot: a baseline).
	OneWorkerPerSlot bool
	// Fixed, when positive, replaces clade run by a fixed-concurrency client: Fixed
	// workers sending the lines in order as fast as they can, each retrying a
	// failure after retry-after (or 0.5 s, doubling to 8 s) until it succeeds, as a
	// script with the SDK's retries raised would.
	Fixed int
	// LatencyScale is the emulator's. Default 1.
	LatencyScale float64
	// AnswerTokens is the answers' median length (the emulator's output model);
	// each line's max_tokens is 3 times it, at least 64. Default 20.
	AnswerTokens int64
	// UnboundedWarmers lets any number of warming requests wait for admission
	// (runner.TestHooks.UnboundedWarmers: a baseline).
	UnboundedWarmers bool
	// StreamNever sends no request as a stream (runner.StreamNever), the warming
	// ones included (a baseline).
	StreamNever bool
	// Dir holds the input and the store; default a temporary directory, removed.
	Dir string
}

// CacheResult is what one measurement saw.
type CacheResult struct {
	Config    CacheConfig
	Succeeded int64
	// Sent counts HTTP calls; RateLimited the 429s among them.
	Sent, RateLimited int64
	// Uncached, CacheWrite and CacheRead split the input tokens of the results.
	Uncached, CacheWrite, CacheRead int64
	// InputCostUSD is the input's cost at the catalog's prices (writes 1.25×,
	// reads 0.1×); CostUSD includes the output.
	InputCostUSD, CostUSD float64
	// ITPMTokens are the tokens that counted toward input tokens per minute: uncached
	// input and cache writes (the model's class does not count reads).
	ITPMTokens int64
	Wall       time.Duration
	Warmed     int64
}

// ITPMPerMinute is the ITPM sustained over the run.
func (r CacheResult) ITPMPerMinute() float64 { return float64(r.ITPMTokens) / r.Wall.Minutes() }

func (c *CacheConfig) defaults() {
	if c.Catalog == nil {
		c.Catalog = catalog.Default()
	}
	if c.Tier == "" {
		c.Tier = "tier-2"
	}
	if c.Model == "" {
		c.Model = "claude-sonnet-4-6"
	}
	if c.Documents <= 0 {
		c.Documents = 200
	}
	if c.Questions <= 0 {
		c.Questions = 10
	}
	if c.DocTokens <= 0 {
		c.DocTokens = 6000
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 256
	}
	if c.LatencyScale == 0 {
		c.LatencyScale = 1
	}
	if c.AnswerTokens <= 0 {
		c.AnswerTokens = 20
	}
}

// MeasureCache runs one measurement against a fresh in-process emulator.
func MeasureCache(ctx context.Context, cfg CacheConfig) (*CacheResult, error) {
	cfg.defaults()
	model, err := cfg.Catalog.Resolve(cfg.Model)
	if err != nil {
		return nil, err
	}
	em, err := emulator.Start(emulator.Config{
		Catalog: cfg.Catalog, Tier: cfg.Tier, LatencyScale: cfg.LatencyScale, Seed: 1,
		Output: emulator.OutputModel{MedianTokens: float64(cfg.AnswerTokens), Sigma: 0.3},
	})
	if err != nil {
		return nil, err
	}
	defer em.Close()
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret("sk-ant-bench"),
		HTTPClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}})
	if err != nil {
		return nil, err
	}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "clade-bench-cache-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	name := "scheduled"
	switch {
	case cfg.Fixed > 0:
		name = "fixed"
	case cfg.ScheduleOff:
		name = "naive"
	case cfg.OneWorkerPerSlot:
		name = "slots"
	case cfg.StreamNever:
		name = "unstreamed"
	case cfg.UnboundedWarmers:
		name = "unbounded"
	}
	input := filepath.Join(dir, name+".jsonl")
	if err := writeDocuments(input, model.ID, cfg); err != nil {
		return nil, err
	}
	if cfg.Fixed > 0 {
		return measureCacheFixed(ctx, cfg, model, em.URL, input)
	}
	st, err := jobs.Open(ctx, input+".db")
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var streamAbove int64 // the default
	if cfg.StreamNever {
		streamAbove = runner.StreamNever
	}
	start := time.Now()
	sum, err := runner.Run(ctx, runner.Config{
		Spec:           lifecycle.Spec{Store: st, Client: client, Catalog: cfg.Catalog, Input: input, Output: input + ".results", Tier: cfg.Tier},
		MaxConcurrency: cfg.Concurrency, CacheScheduleOff: cfg.ScheduleOff,
		Test: runner.TestHooks{OneWorkerPerSlot: cfg.OneWorkerPerSlot, UnboundedWarmers: cfg.UnboundedWarmers}, StreamAbove: streamAbove,
	})
	if err != nil {
		return nil, err
	}
	r := &CacheResult{Config: cfg, Wall: time.Since(start), Succeeded: sum.Succeeded, Sent: sum.Sent, RateLimited: sum.RateLimited,
		Uncached: sum.UncachedInputTokens, CacheWrite: sum.CacheWriteTokens, CacheRead: sum.CacheReadTokens, CostUSD: sum.CostUSD, Warmed: sum.Warmed}
	r.settle(model)
	return r, nil
}

// settle computes the input cost and the ITPM tokens from the token split.
func (r *CacheResult) settle(model *catalog.Model) {
	cat := r.Config.Catalog
	r.InputCostUSD = cat.Cost(model, catalog.Usage{InputTokens: r.Uncached, CacheWrite5mTokens: r.CacheWrite, CacheReadTokens: r.CacheRead}, false)
	r.ITPMTokens = r.Uncached + r.CacheWrite
	if cat.Class(model).CacheReadsCountITPM {
		r.ITPMTokens += r.CacheRead
	}
}

// measureCacheFixed is MeasureCache for the fixed-concurrency client.
func measureCacheFixed(ctx context.Context, cfg CacheConfig, model *catalog.Model, url, input string) (*CacheResult, error) {
	client, err := upstream.New(upstream.Config{BaseURL: url, APIKey: upstream.NewSecret("sk-ant-bench"),
		HTTPClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}})
	if err != nil {
		return nil, err
	}
	lines, closeInput, err := paramsOf(ctx, input)
	if err != nil {
		return nil, err
	}
	defer closeInput()
	r := &CacheResult{Config: cfg}
	var mu sync.Mutex
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Fixed {
		wg.Go(func() {
			for p := range lines {
				for attempt := 0; ctx.Err() == nil; attempt++ {
					resp, err := client.Messages(ctx, p)
					mu.Lock()
					r.Sent++
					if err == nil {
						r.Succeeded++
						r.Uncached += resp.Usage.InputTokens
						r.CacheWrite += resp.Usage.CacheCreationInputTokens
						r.CacheRead += resp.Usage.CacheReadInputTokens
						r.CostUSD += cfg.Catalog.Cost(model, spend.Usage(resp.Usage), false)
					}
					var ae *upstream.APIError
					if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests {
						r.RateLimited++
					}
					mu.Unlock()
					if err == nil {
						break
					}
					wait := min(time.Duration(500<<min(attempt, 4))*time.Millisecond, 8*time.Second)
					if ae != nil && ae.HasRetryAfter {
						wait = ae.RetryAfter
					}
					select {
					case <-time.After(wait):
					case <-ctx.Done():
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.Wall = time.Since(start)
	r.settle(model)
	return r, nil
}

// writeDocuments writes the input: per document, Questions lines in a row.
func writeDocuments(path, model string, cfg CacheConfig) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for d := range cfg.Documents {
		doc := document(d, cfg.DocTokens)
		for q := range cfg.Questions {
			fmt.Fprintf(w, `{"custom_id":"doc%04d-q%02d","params":{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":[`+
				`{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}},`+
				`{"type":"text","text":"Question %d: what does section %d of the document say about item %d?"}]}]}}`+"\n",
				d, q, model, max(64, 3*cfg.AnswerTokens), doc, q, q+1, d*q)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// document is document d's text: about tokens tokens (4 bytes each under the
// emulator's rule), distinct per document.
func document(d int, tokens int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Document %d. ", d)
	words := []string{"alpha ", "beta ", "gamma ", "delta ", "sigma ", "omega ", "kappa ", "theta "}
	for i := 0; int64(b.Len()) < 4*tokens; i++ {
		b.WriteString(words[(i*7+d)%len(words)])
		if i%50 == 49 {
			fmt.Fprintf(&b, "[%d.%d] ", d, i/50)
		}
	}
	return b.String()
}
