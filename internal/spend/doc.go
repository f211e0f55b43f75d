// Package spend is clade's one home for cost and USD budgets: what a response's
// usage costs, what a request may cost at worst, and a budget that holds that
// worst case while the request is in flight. `clade run`, `clade batch` and the
// hybrid mode use it; the gateway's per-team budgets are meant to.
//
// # Model
//
// Cost: a response's usage (uncached input, cache writes with a 5-minute or a
// 1-hour TTL, cache reads, output) priced by the catalog (catalog.Catalog.Cost:
// the model's base prices, the cache multipliers, the batch discount for a
// Message Batches call). This package converts the API's usage object (Usage) and
// calls Cost; it has no price of its own.
//
// Worst case: before a request is sent its cost is unknown. WorstCase bounds it
// by its estimated input tokens, all uncached, and its whole max_tokens as output,
// at the model's price (batch prices for a batch). It is the only place that
// estimate is written.
//
// Budget: a limit, what was spent against it, and holds. Hold(worst) takes a
// request's worst case out of what is left, or fails with an *ExceededError
// (errors.Is ErrExceeded) when spent + held + worst would be over the limit; the
// hold is then settled with the real cost (Hold.Settle) or given back
// (Hold.Release). The check and the hold are one step under a lock, so any
// number of goroutines holding at once never hold more than the limit: a burst
// cannot overshoot.
//
// # Units
//
// Amounts are Micros, integer micro-dollars (1e-6 USD), so sums over millions
// of requests do not drift as float64 sums do. A float64 USD amount (the
// catalog's Cost, a --budget flag, a stored result's cost) becomes Micros with
// FromUSD, rounded to the nearest micro-dollar; Micros.USD goes back. Stored
// results keep the catalog's float64 cost: only budgets count in Micros.
//
// # What is authoritative
//
// The catalog (catalog/catalog.yaml) for prices, and the job store for what was
// spent: a Budget is an in-process account. Whoever creates one seeds it with
// what the store says is spent (Budget.Spend) and with holds for work already
// under way elsewhere (Budget.Force: requests in open batches); it is not
// persisted, and one process's Budget does not see another's holds.
//
// # Concurrency
//
// A Budget and its Holds are safe for concurrent use. Settle and Release act
// once: whichever comes first ends the hold, later calls do nothing, so
// `defer h.Release()` after a Hold is always safe.
//
// # Failure
//
// Hold fails closed: a hold that does not fit is refused whole, and nothing is
// held. A budget only bounds what it was told: a request whose real input is
// above its estimate, or that writes a prompt cache (1.25× or 2× the input
// price), can cost more than its hold, so Spent can end above the limit by that
// difference (Remaining is then negative); the next Hold is refused. A model the catalog does not know has no price: callers treat it as
// free, as they always have. Nothing here does I/O, so nothing here fails
// otherwise.
package spend
