package upstream_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/clade-dev/clade/internal/upstream"
)

// A runner composes the pieces: one attempt per call, Classify decides, Backoff
// says how long, RetryBudget says whether the API can take another retry.
// Admission (pausing a model class on RateLimited, shrinking concurrency on
// Overloaded) sits around this loop.
func Example() {
	client, err := upstream.New(upstream.Config{APIKey: upstream.NewSecret(os.Getenv("ANTHROPIC_API_KEY"))})
	if err != nil {
		fmt.Println(err)
		return
	}
	backoff := upstream.Backoff{MaxAttempts: 5}
	budget := upstream.NewRetryBudget(upstream.RetryBudgetConfig{Ratio: 0.1})
	params := []byte(`{"model":"claude-haiku-4-5","max_tokens":256,"messages":[{"role":"user","content":"Hello"}]}`)

	ctx := context.Background()
	budget.Request()
	for attempt := 1; ; attempt++ {
		resp, err := client.Messages(ctx, params)
		switch c := upstream.Classify(err); {
		case c == upstream.OK:
			fmt.Println(resp.StopReason, resp.Usage.OutputTokens)
			return
		case c == upstream.Stop:
			fmt.Println("stopping the run:", err)
			return
		case !c.Retryable(), backoff.Exhausted(attempt), c != upstream.RateLimited && !budget.Allow():
			fmt.Println("errored:", err) // write the errored result line from APIError.Body
			return
		}
		time.Sleep(backoff.Delay(attempt, err))
	}
}
