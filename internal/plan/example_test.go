package plan_test

import (
	"fmt"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/plan"
)

// Realtime time of 200 requests of 2,000 input and 100 output tokens on tier-1
// Haiku 4.5 (50 RPM, 50,000 ITPM, 10,000 OTPM): the buckets start full, so ITPM needs
// 400,000/50,000 − 1 = 7 minutes and binds.
func ExampleEstimate() {
	limits := catalog.Default().Tiers["tier-1"].ClassLimits("haiku-4-5")
	minutes, binding, _ := plan.Estimate(limits, plan.Need{Requests: 200, InputTokens: 400_000, OutputTokens: 20_000})
	fmt.Printf("%.1f min, %s binds\n", minutes, binding)
	// Output: 7.0 min, itpm binds
}
