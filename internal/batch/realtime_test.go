package batch_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

// messagesCounter counts the realtime calls (POST /v1/messages) a client makes, and
// calls onFirst, once, when the first one is sent.
type messagesCounter struct {
	next    http.RoundTripper
	n       atomic.Int64
	once    sync.Once
	onFirst func()
}

func (m *messagesCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && r.URL.Path == "/v1/messages" {
		m.n.Add(1)
		if m.onFirst != nil {
			m.once.Do(m.onFirst)
		}
	}
	return m.next.RoundTrip(r)
}

// expiringEnv is an emulator whose batches expire with part of their requests
// unprocessed: about 43 requests are processed per emulated day, and the clock
// moves a day ahead every 30 ms. Its client counts realtime calls.
func expiringEnv(t *testing.T) (*env, *messagesCounter) {
	t.Helper()
	// Results stay downloadable for 10 years of that clock: a loaded machine may
	// take more than 29 emulated days (under a second) to read a batch, and an
	// archived batch's requests would all be sent again.
	e := setup(t, emulator.Config{ClockSpeed: 1000, BatchProcessingRate: 0.0005, BatchRetention: 10 * 365 * 24 * time.Hour})
	advanceEvery(t, e, 30*time.Millisecond, 24*time.Hour)
	mc := &messagesCounter{next: http.DefaultTransport.(*http.Transport).Clone()}
	client, err := upstream.New(upstream.Config{BaseURL: e.em.URL, APIKey: upstream.NewSecret(testKey), HTTPClient: &http.Client{Transport: mc}})
	if err != nil {
		t.Fatal(err)
	}
	e.client = client
	return e, mc
}

func TestRetryViaRealtime(t *testing.T) {
	t.Parallel()
	e, calls := expiringEnv(t)
	const n = 120
	cfg := e.config(writeInput(t, e.dir, n), 50)
	cfg.RetryVia = batch.RetryRealtime
	cfg.Realtime = runner.Config{MaxConcurrency: 8}
	sum := run(t, cfg)

	// Every request went into exactly one batch; those the batches did not do were
	// sent once each in realtime, and every custom_id has one succeeded line.
	wantAll(t, cfg.Output, n, "succeeded")
	bs := e.apiBatches(t)
	if requestsIn(bs) != n {
		t.Errorf("the API's batches hold %d requests in all, want %d: each request in one batch", requestsIn(bs), n)
	}
	var doneInBatches int64
	for _, b := range bs {
		doneInBatches += b.RequestCounts.Succeeded
	}
	if doneInBatches == n || sum.Realtime == 0 {
		t.Fatalf("batches succeeded %d of %d requests and %d went to realtime: the test did not exercise the retry", doneInBatches, n, sum.Realtime)
	}
	if sum.Realtime != n-doneInBatches || calls.n.Load() != sum.Realtime || sum.RealtimeSent != sum.Realtime {
		t.Errorf("%d requests to realtime, %d realtime calls on the wire (%d counted); want %d each (the requests the batches did not do)",
			sum.Realtime, calls.n.Load(), sum.RealtimeSent, n-doneInBatches)
	}
	t.Logf("%d done in batches, %d in realtime", doneInBatches, sum.Realtime)
	if sum.Succeeded != n || sum.Pending != 0 || sum.Expired != 0 {
		t.Errorf("Run() = %d succeeded, %d pending, %d expired; want %d, 0, 0", sum.Succeeded, sum.Pending, sum.Expired, n)
	}
}

func TestRetryViaRealtimeResumes(t *testing.T) {
	t.Parallel()
	e, calls := expiringEnv(t)
	const n = 120
	cfg := e.config(writeInput(t, e.dir, n), 50)
	cfg.RetryVia = batch.RetryRealtime
	cfg.Realtime = runner.Config{MaxConcurrency: 2}
	// Interrupted as the first realtime call leaves, like a Ctrl-C: requests are
	// left pending, some of them handed to realtime.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	calls.onFirst = cancel
	isum, err := batch.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("interrupted Run() error = %v, want nil (the next run resumes)", err)
	}
	first := e.apiBatches(t)
	ist, err := e.store.Status(context.Background(), isum.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if calls.n.Load() == 0 || ist.Pending == 0 {
		t.Fatalf("interrupted Run() left %d pending after %d realtime calls; want some pending after the first call (nothing was interrupted)",
			ist.Pending, calls.n.Load())
	}

	// The resumed run creates no batch and finishes in realtime.
	sum := run(t, cfg)
	wantAll(t, cfg.Output, n, "succeeded")
	if bs := e.apiBatches(t); len(bs) != len(first) || requestsIn(bs) != n {
		t.Errorf("after the resume the API holds %d batches of %d requests, want %d of %d (none created again)", len(bs), requestsIn(bs), len(first), n)
	}
	if sum.RealtimeSent == 0 {
		t.Errorf("resumed Run() sent %d requests in realtime, want some (the interrupted run's, pending in realtime)", sum.RealtimeSent)
	}
	t.Logf("interrupted with %d pending; resumed: %d realtime calls (%d in all)", ist.Pending, sum.RealtimeSent, calls.n.Load())
	var doneInBatches int64
	for _, b := range e.apiBatches(t) { // all ended by now
		doneInBatches += b.RequestCounts.Succeeded
	}
	if calls.n.Load() != n-doneInBatches {
		t.Errorf("%d realtime calls over both runs, want %d (one per request the batches did not do)", calls.n.Load(), n-doneInBatches)
	}
	if sum.Succeeded != n || sum.Pending != 0 {
		t.Errorf("resumed Run() = %d succeeded, %d pending; want %d, 0", sum.Succeeded, sum.Pending, n)
	}
}

func TestRetryViaRejectsUnknown(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{})
	cfg := e.config(filepath.Join(e.dir, "none.jsonl"), 0)
	cfg.RetryVia = "carrier-pigeon"
	if _, err := batch.Run(context.Background(), cfg); err == nil {
		t.Fatal("Run() with RetryVia carrier-pigeon succeeded, want an error naming it")
	}
}

// TestRetryViaRealtimeBudget: with --retry-via realtime and a budget, the batches
// and the realtime retries together never spend more than the budget, whatever it
// is; a budget too small stops the run with runner.ErrStopped naming it and the rest
// pending (not an error about requests no one will send); one large enough finishes.
// Batches go one at a time (QueueLimit 50), so realtime starts while most of the
// run's worst case is still held for batches, and is started again as batches end
// and free it ("realtime resumes").
func TestRetryViaRealtimeBudget(t *testing.T) {
	t.Parallel()
	cat := catalog.Default()
	m, err := cat.Resolve("claude-haiku-4-5")
	if err != nil {
		t.Fatal(err)
	}
	perRequest := cat.Cost(m, catalog.Usage{OutputTokens: 64}, true)
	const n = 120
	for _, budget := range []float64{100, 120, 140, 1000} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			t.Parallel()
			e, calls := expiringEnv(t)
			cfg := e.config(writeInput(t, e.dir, n), 50)
			cfg.RetryVia = batch.RetryRealtime
			cfg.Realtime = runner.Config{MaxConcurrency: 2}
			cfg.QueueLimit = 50
			cfg.Budget = budget * perRequest
			var progress testkit.Buffer
			cfg.Progress = &progress
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sum, err := batch.Run(ctx, cfg)
			t.Logf("budget %v requests' worst case: %d succeeded, %d pending, %d to realtime, %d calls, cost %.1f; resumed: %v; err %v",
				budget, sum.Succeeded, sum.Pending, sum.Realtime, sum.RealtimeSent, sum.CostUSD/perRequest,
				strings.Contains(progress.String(), "realtime resumes"), err)
			if sum.Realtime == 0 {
				t.Errorf("no request was handed to realtime: the budget was not shared between batches and realtime")
			}
			if sum.CostUSD > cfg.Budget {
				t.Errorf("cost $%.6f exceeds the budget $%.6f", sum.CostUSD, cfg.Budget)
			}
			if calls.n.Load() != sum.RealtimeSent || sum.RealtimeSent > sum.Realtime {
				t.Errorf("%d realtime calls on the wire, %d counted, %d requests handed over: want one call per request sent", calls.n.Load(), sum.RealtimeSent, sum.Realtime)
			}
			switch {
			case err == nil:
				if sum.Pending != 0 || sum.Succeeded != n {
					t.Errorf("Run() = nil with %d succeeded, %d pending; want all %d done", sum.Succeeded, sum.Pending, n)
				}
			case errors.Is(err, runner.ErrStopped) && strings.Contains(err.Error(), "budget"):
				if sum.Pending == 0 || sum.Pending != n-sum.Succeeded {
					t.Errorf("stopped with %d succeeded, %d pending; want the rest of %d pending", sum.Succeeded, sum.Pending, n)
				}
			default:
				t.Fatalf("Run() error = %v, want nil or runner.ErrStopped naming the budget", err)
			}
			if budget == 1000 && err != nil {
				t.Errorf("a budget of 1000 requests' worst case stopped the run: %v", err)
			}
		})
	}
}
