package dashboard

import (
	"context"
	"time"
)

// Source gives the dashboard its numbers. Sample is called once per sample
// interval, from one goroutine; it must not block for long (it bounds its own
// reads with ctx).
type Source interface {
	Sample(ctx context.Context, now time.Time) Sample
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, now time.Time) Sample

// Sample calls f.
func (f SourceFunc) Sample(ctx context.Context, now time.Time) Sample { return f(ctx, now) }

// Sample is one point of every series: what the source saw at At.
type Sample struct {
	// Seq numbers the samples of one dashboard from 1, set by the dashboard.
	Seq int64     `json:"seq"`
	At  time.Time `json:"at"`
	// Tier is the rate-limit tier the limits come from.
	Tier string `json:"tier,omitempty"`
	// InFlight counts calls holding a concurrency slot (a batch run's: the
	// requests in its batches in flight).
	InFlight int `json:"in_flight"`
	// Classes are the model classes, sorted by name.
	Classes []Class `json:"classes,omitempty"`
	// Teams are the gateway's teams, sorted by name (none for a run).
	Teams []Team `json:"teams,omitempty"`
	// Budgets are the USD budgets in their current periods.
	Budgets []Budget `json:"budgets,omitempty"`
	// Progress is a run's progress (nil for the gateway).
	Progress *Progress `json:"progress,omitempty"`
}

// Rate is a rate per minute and the limit per minute it counts against (0: no
// limit known).
type Rate struct {
	PerMin float64 `json:"per_min"`
	Limit  float64 `json:"limit"`
}

// Class is one model class's throughput against its limits.
type Class struct {
	Name string `json:"name"`
	// Requests, input tokens (uncached input and cache writes, as the limits count
	// them) and output tokens per minute, against the limits in force.
	Requests     Rate `json:"requests"`
	InputTokens  Rate `json:"input_tokens"`
	OutputTokens Rate `json:"output_tokens"`
	// Upstream429 and Upstream529 are the API's refusals: per minute for the
	// gateway (last 60 s), totals since the start for a run (see Totals).
	Upstream429 float64 `json:"upstream_429"`
	Upstream529 float64 `json:"upstream_529"`
	// Paused is set while the class waits out a 429's retry-after.
	Paused bool `json:"paused,omitempty"`
	// Warming is set while the rates do not yet cover the source's rate window
	// (a run's first seconds: full buckets let it go above the limits).
	Warming bool `json:"warming,omitempty"`
}

// Team is one team of the gateway.
type Team struct {
	Name string `json:"name"`
	// Queued is the calls waiting for admission now.
	Queued int `json:"queued"`
	// Admitted counts the calls whose wait ended in the sample interval; WaitP50
	// and WaitP99 are those waits' quantiles in seconds (nil when none ended).
	Admitted int      `json:"admitted"`
	WaitP50  *float64 `json:"wait_p50_seconds"`
	WaitP99  *float64 `json:"wait_p99_seconds"`
	// ErrorsPerMin counts the team's calls answered with an error (4xx but 499,
	// and 5xx) in the last minute.
	ErrorsPerMin float64 `json:"errors_per_min"`
	// Shares are, per model class the team used, its part of what was admitted
	// in the last minute against its cap (0: none).
	Shares []Share `json:"shares,omitempty"`
}

// Share is a team's part of one class's admitted requests and tokens in the last
// minute (the largest of the three, in [0, 1]), against its cap.
type Share struct {
	Class string  `json:"class"`
	Share float64 `json:"share"`
	Cap   float64 `json:"cap,omitempty"`
	// Borrowed counts the calls admitted over the cap since the start, because no
	// team under its cap waited.
	Borrowed int64 `json:"borrowed,omitempty"`
}

// Budget is one USD budget in its current period.
type Budget struct {
	Team     string  `json:"team"`
	Key      string  `json:"key,omitempty"` // the key's label, for a key's budget
	Period   string  `json:"period"`
	LimitUSD float64 `json:"limit_usd"`
	SpentUSD float64 `json:"spent_usd"`
	HeldUSD  float64 `json:"held_usd"` // held for calls in flight
}

// Progress is a run's progress, as its terminal display shows it.
type Progress struct {
	// Mode is "realtime", "batch" or "hybrid".
	Mode    string `json:"mode"`
	Done    int64  `json:"done"`
	Total   int64  `json:"total"`
	OK      int64  `json:"ok"`
	Errored int64  `json:"errored"`
	// ElapsedSeconds since the run started; ETASeconds to the end (0: unknown).
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	ETASeconds     float64 `json:"eta_seconds"`
	// CostUSD so far (and the same usage at batch price, for comparison).
	CostUSD      float64 `json:"cost_usd"`
	BatchCostUSD float64 `json:"batch_cost_usd"`
	// RateLimited and Overloaded are the API's 429s and 529s so far.
	RateLimited int64 `json:"rate_limited"`
	Overloaded  int64 `json:"overloaded"`
	// Note is a line of state the display shows (the batches in flight, say).
	Note string `json:"note,omitempty"`
}
