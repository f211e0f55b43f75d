package spend

import (
	"errors"
	"fmt"
	"sync"
)

// ErrExceeded is what a refused Hold's error matches (errors.Is): the hold would
// take the budget over its limit.
var ErrExceeded = errors.New("budget would be exceeded")

// ExceededError is the error of a refused Hold, with the budget's state when it
// was refused.
type ExceededError struct {
	Limit, Spent, Held Micros
	// Need is the hold that did not fit.
	Need Micros
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("spend: %v more would exceed the budget of %v (%v spent, %v held)", e.Need, e.Limit, e.Spent, e.Held)
}

// Is reports whether target is ErrExceeded.
func (e *ExceededError) Is(target error) bool { return target == ErrExceeded }

// Budget is a USD limit, what was spent against it, and holds for requests in
// flight, in micro-dollars. Create it with NewBudget; it is safe for concurrent
// use.
type Budget struct {
	mu    sync.Mutex
	limit Micros
	spent Micros
	held  Micros
}

// NewBudget returns a budget of limit with nothing spent or held. A limit of 0
// lets nothing be spent but holds of 0; NoLimit only counts.
func NewBudget(limit Micros) *Budget {
	return &Budget{limit: limit}
}

// Hold takes worst (a request's worst case, WorstCase) out of what is left, and
// returns the hold to settle or release once the request is done. When spent,
// held and worst together would be over the limit it holds nothing and returns an
// *ExceededError. A worst below 0 holds 0.
func (b *Budget) Hold(worst Micros) (*Hold, error) {
	worst = max(worst, 0)
	b.mu.Lock()
	defer b.mu.Unlock()
	// Compared as limit - spent - held, not spent + held + worst > limit, which
	// overflows for NoLimit.
	if b.limit != NoLimit && worst > b.limit-b.spent-b.held {
		return nil, &ExceededError{Limit: b.limit, Spent: b.spent, Held: b.held, Need: worst}
	}
	b.held += worst
	return &Hold{b: b, amount: worst}, nil
}

// Force holds worst whether or not it fits: for work already under way that will
// be billed whatever the budget says (requests in open batches). It leaves less,
// or a negative Remaining, for the Holds after it.
func (b *Budget) Force(worst Micros) *Hold {
	worst = max(worst, 0)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held += worst
	return &Hold{b: b, amount: worst}
}

// Spend counts cost as spent without a hold: what was spent before the budget
// was created (the store's results), or a cost learned otherwise.
func (b *Budget) Spend(cost Micros) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spent += cost
}

// Limit is the budget's limit.
func (b *Budget) Limit() Micros { return b.limit }

// Spent is what was spent: Spend, and the costs holds were settled with.
func (b *Budget) Spent() Micros {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.spent
}

// Held is the sum of the holds not yet settled or released.
func (b *Budget) Held() Micros {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// Remaining is the limit less what is spent and held: the largest Hold that fits
// now. It is negative when settled costs came in above their holds (an input
// above its estimate) or Force held more than was left; NoLimit for a budget of
// NoLimit.
func (b *Budget) Remaining() Micros {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limit == NoLimit {
		return NoLimit
	}
	return b.limit - b.spent - b.held
}

// Hold is a worst case held in a Budget until Settle or Release, whichever comes
// first; later calls do nothing. Safe for concurrent use.
type Hold struct {
	b      *Budget
	amount Micros
	done   bool // under b.mu
}

// Amount is what h holds (or held).
func (h *Hold) Amount() Micros { return h.amount }

// Settle ends the hold with the request's real cost: the hold goes, cost is spent.
// The cost may be above the hold (the input was above its estimate); it is
// counted whole.
func (h *Hold) Settle(cost Micros) { h.end(cost, true) }

// Release ends the hold with nothing spent (the request was not sent, or not
// billed).
func (h *Hold) Release() { h.end(0, false) }

func (h *Hold) end(cost Micros, settle bool) {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if h.done {
		return
	}
	h.done = true
	b.held -= h.amount
	if settle {
		b.spent += cost
	}
}
