package spend_test

import (
	"errors"
	"fmt"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/upstream"
)

// A caller holds a request's worst case before sending it, and settles the hold
// with what the answer cost; a request that does not fit is not sent.
func ExampleBudget() {
	cat := catalog.Default()
	m, err := cat.Resolve("haiku")
	if err != nil {
		fmt.Println(err)
		return
	}
	worst := spend.WorstCase(cat, m, 2_000, 1_000, false) // estimated input, max_tokens
	b := spend.NewBudget(worst * 3 / 2)                   // room for one such request, not two

	h, err := b.Hold(worst)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Release() // a no-op once settled

	_, err = b.Hold(worst) // a second one in flight could overshoot
	fmt.Println("second request:", errors.Is(err, spend.ErrExceeded))

	answer := upstream.Usage{InputTokens: 1_800, OutputTokens: 300} // the response's usage
	h.Settle(spend.FromUSD(spend.Cost(cat, m, spend.Usage(answer), false)))
	fmt.Println("held after settling:", b.Held())
	fmt.Println("spent below the worst case:", b.Spent() < worst)
	// Output:
	// second request: true
	// held after settling: $0.000000
	// spent below the worst case: true
}
