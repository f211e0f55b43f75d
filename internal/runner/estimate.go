package runner

import (
	"sync"
)

// estimator calibrates token estimates per model from observed usage: input as a ratio
// of the intake estimate, output as a moving average of generated tokens.
type estimator struct {
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

func newEstimator() *estimator { return &estimator{models: make(map[string]*modelStats)} }

// input returns the calibrated input estimate for a request whose intake estimate is est.
func (e *estimator) input(model string, est int64) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	ms := e.models[model]
	if ms == nil || ms.n == 0 {
		return est
	}
	return int64(float64(est)*ms.inRatio + 0.5)
}

// output returns the output tokens to expect, at most maxTokens.
func (e *estimator) output(model string, maxTokens int64) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	ms := e.models[model]
	if ms == nil || ms.n < calibrated {
		return maxTokens
	}
	return min(maxTokens, int64(ms.outMean+0.5))
}

// observe records a response: est was the intake estimate, input the actual total
// input (uncached, cache writes and reads), output the generated tokens.
func (e *estimator) observe(model string, est, input, output int64) {
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
