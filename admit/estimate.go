package admit

import (
	"sync"

	"github.com/clade-dev/clade/internal/intake"
)

// EstimateInput is the uncalibrated estimate of the input tokens of a Messages
// request body (or a batch line's params): about one token per four bytes of the
// text that counts as input (system, messages, tools), images and documents at their
// documented rates. No tokenizer runs offline; an Estimator calibrates this estimate
// per model from the usage of calls that finished.
func EstimateInput(body []byte) int64 { return intake.EstimateInputTokens(body) }

// Estimator calibrates token estimates per model from observed usage: input as the
// EstimateInput estimate times a per-model ratio (an exponentially weighted moving
// average of actual ÷ estimate), output as max_tokens until a model has been seen a
// few times, then the moving average of what it generated (never above max_tokens).
// The zero value is not usable; NewEstimator returns one that has observed nothing.
// It is safe for concurrent use.
type Estimator struct {
	mu     sync.Mutex
	models map[string]*modelStats
}

type modelStats struct {
	inRatio float64 // actual input ÷ intake estimate (EWMA)
	outMean float64 // output tokens (EWMA)
	n       int64
}

// ewmaWeight is the weight of a new observation once warmed up.
const ewmaWeight = 0.05

// calibrated is how many responses of a model are observed before its output
// estimate replaces max_tokens. Until then each request reserves its whole max_tokens:
// an early over-reservation is refunded at commit, while an under-reservation lets
// the first burst overshoot the output-tokens-per-minute limit.
const calibrated = 8

// NewEstimator returns an Estimator that has observed nothing.
func NewEstimator() *Estimator { return &Estimator{models: make(map[string]*modelStats)} }

// Input returns the calibrated input tokens of a model's request whose
// EstimateInput estimate is est.
func (e *Estimator) Input(model string, est int64) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	ms := e.models[model]
	if ms == nil || ms.n == 0 {
		return est
	}
	return int64(float64(est)*ms.inRatio + 0.5)
}

// Output returns the output tokens to reserve for a model's request, at most
// maxTokens.
func (e *Estimator) Output(model string, maxTokens int64) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	ms := e.models[model]
	if ms == nil || ms.n < calibrated {
		return maxTokens
	}
	return min(maxTokens, int64(ms.outMean+0.5))
}

// Observe records a response: est was the EstimateInput estimate, input the actual
// total input (uncached, cache writes and cache reads), output the generated tokens.
func (e *Estimator) Observe(model string, est, input, output int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ms := e.models[model]
	if ms == nil {
		ms = &modelStats{}
		e.models[model] = ms
	}
	ratio := 1.0
	if est > 0 {
		ratio = float64(input) / float64(est)
	}
	ms.n++
	w := max(ewmaWeight, 1/float64(ms.n)) // plain mean while warming up
	if ms.n == 1 {
		ms.inRatio, ms.outMean = ratio, float64(output)
		return
	}
	ms.inRatio += w * (ratio - ms.inRatio)
	ms.outMean += w * (float64(output) - ms.outMean)
}
