package runner

// Estimator is the runner's token estimator for callers outside the runner (the
// gateway of clade serve): input as the intake estimate times a per-model ratio
// learned from usage, output as max_tokens until a model has been seen a few times,
// then the moving average of what it generated (never above max_tokens). It is safe
// for concurrent use.
type Estimator struct{ e *estimator }

// NewEstimator returns an Estimator that has observed nothing.
func NewEstimator() *Estimator { return &Estimator{e: newEstimator()} }

// Input returns the calibrated input tokens of a model's request whose intake
// estimate (intake.EstimateInputTokens) is est.
func (e *Estimator) Input(model string, est int64) int64 { return e.e.input(model, est) }

// Output returns the output tokens to reserve for a model's request, at most maxTokens.
func (e *Estimator) Output(model string, maxTokens int64) int64 { return e.e.output(model, maxTokens) }

// Observe records a response: est was the intake estimate, input the actual total
// input (uncached, cache writes and cache reads), output the generated tokens.
func (e *Estimator) Observe(model string, est, input, output int64) {
	e.e.observe(model, est, input, output)
}
