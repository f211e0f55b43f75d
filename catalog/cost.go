package catalog

// Usage is the token usage of one response, as the API reports it.
type Usage struct {
	InputTokens        int64
	OutputTokens       int64
	CacheWrite5mTokens int64
	CacheWrite1hTokens int64
	CacheReadTokens    int64
}

// Cost returns the price in USD of one response's usage on model m; batch applies the
// Message Batches discount, which stacks with the cache multipliers.
func (c *Catalog) Cost(m *Model, u Usage, batch bool) float64 {
	in := m.Price.Input / 1e6
	out := m.Price.Output / 1e6
	readMult := c.Pricing.CacheRead
	if m.Price.CacheRead != 0 {
		readMult = m.Price.CacheRead
	}
	usd := float64(u.InputTokens)*in +
		float64(u.CacheWrite5mTokens)*in*c.Pricing.CacheWrite5m +
		float64(u.CacheWrite1hTokens)*in*c.Pricing.CacheWrite1h +
		float64(u.CacheReadTokens)*in*readMult +
		float64(u.OutputTokens)*out
	if batch {
		usd *= c.Pricing.Batch
	}
	return usd
}
