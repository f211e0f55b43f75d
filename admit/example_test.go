package admit_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/clade-dev/clade/admit"
)

// callAPI stands in for the upstream call: it returns the status, the usage and the
// headers of the response.
func callAPI(context.Context) (int, admit.Usage, http.Header) {
	return 200, admit.Usage{InputTokens: 1180, OutputTokens: 240}, http.Header{}
}

// A worker's loop: wait for room, send, then finish the reservation according to the
// outcome.
func Example() {
	lim, err := admit.New(admit.Config{Tier: "start"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	class, _ := lim.ClassOf("claude-sonnet-5")

	r, err := lim.Wait(ctx, class, admit.Need{InputTokens: 1200, OutputTokens: 300})
	if err != nil {
		panic(err) // ctx ended
	}
	defer r.Cancel() // no-op once finished; refunds if we return early

	status, usage, h := callAPI(ctx)
	switch status {
	case 200:
		err = r.Commit(usage, h)
	case 429:
		err = r.RateLimited(h) // pauses the class; no retry-after: the spend cap, stop
	case 529:
		err = r.Overloaded(h) // shrinks the class's concurrency; back off, retry
	default:
		err = r.Fail(h)
	}
	if err != nil {
		panic(err)
	}

	s, _ := lim.Snapshot(ctx)
	c := s.Classes[0]
	fmt.Printf("%s: %d RPM, in flight %d\n", c.Class, c.Requests.Limit, c.InFlight.Requests)
	// Output: sonnet-5: 1000 RPM, in flight 0
}
