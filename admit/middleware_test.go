package admit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	option1 "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/redis/go-redis/v9"

	"github.com/clade-dev/clade/admit"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/testkit"
)

const mwModel = "claude-haiku-4-5"

// counting wraps the emulator's handler and counts the Messages calls that reach it
// and the ones it answered 429.
type counting struct {
	h              http.Handler
	calls, limited atomic.Int64
	mu             sync.Mutex
	arrivals       []time.Time
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messages" {
		c.h.ServeHTTP(w, r)
		return
	}
	c.calls.Add(1)
	c.mu.Lock()
	c.arrivals = append(c.arrivals, time.Now())
	c.mu.Unlock()
	rec := &statusWriter{ResponseWriter: w}
	c.h.ServeHTTP(rec, r)
	if rec.code == http.StatusTooManyRequests {
		c.limited.Add(1)
	}
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusWriter) Flush()               { s.ResponseWriter.(http.Flusher).Flush() }

// httptestServer serves h on a loopback port until the test ends and returns its URL.
func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func v2Client(url string, lim *admit.Limiter, opts ...option.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]option.RequestOption{option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(url), option.WithAPIKey("sk-ant-test"), option.WithMiddleware(lim.Middleware)}, opts...)...)
}

func v1Client(url string, lim *admit.Limiter, opts ...option1.RequestOption) anthropic1.Client {
	return anthropic1.NewClient(append([]option1.RequestOption{option1.WithBaseURL(url),
		option1.WithAPIKey("sk-ant-test"), option1.WithMiddleware(lim.Middleware)}, opts...)...)
}

func prompt(i int) string {
	return fmt.Sprintf("In a few words, say something about the number %d.", i)
}

// TestMiddlewareCommitsUsage: through each SDK generation, JSON and streaming, every
// call's real usage is committed: the limiter ends with nothing in flight, and its
// estimator, which only commits feed, expects exactly the mean output the calls
// generated.
func TestMiddlewareCommitsUsage(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4"})
	const n = 10
	for _, tt := range []struct {
		name string
		call func(ctx context.Context, lim *admit.Limiter, i int) (int64, error)
	}{
		{"v2 json", func(ctx context.Context, lim *admit.Limiter, i int) (int64, error) {
			cl := v2Client(em.URL, lim)
			m, err := cl.Messages.New(ctx, anthropic.MessageNewParams{Model: mwModel, MaxTokens: 300,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt(i)))}})
			if err != nil {
				return 0, err
			}
			return m.Usage.OutputTokens, nil
		}},
		{"v2 stream", func(ctx context.Context, lim *admit.Limiter, i int) (int64, error) {
			cl := v2Client(em.URL, lim)
			s := cl.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: mwModel, MaxTokens: 300,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt(i)))}})
			defer s.Close()
			var acc anthropic.Message
			for s.Next() {
				if err := acc.Accumulate(s.Current()); err != nil {
					return 0, err
				}
			}
			return acc.Usage.OutputTokens, s.Err()
		}},
		{"v1 json", func(ctx context.Context, lim *admit.Limiter, i int) (int64, error) {
			cl := v1Client(em.URL, lim)
			m, err := cl.Messages.New(ctx, anthropic1.MessageNewParams{Model: mwModel, MaxTokens: 300,
				Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock(prompt(i)))}})
			if err != nil {
				return 0, err
			}
			return m.Usage.OutputTokens, nil
		}},
		{"v1 stream", func(ctx context.Context, lim *admit.Limiter, i int) (int64, error) {
			cl := v1Client(em.URL, lim)
			s := cl.Messages.NewStreaming(ctx, anthropic1.MessageNewParams{Model: mwModel, MaxTokens: 300,
				Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock(prompt(i)))}})
			defer s.Close()
			var acc anthropic1.Message
			for s.Next() {
				if err := acc.Accumulate(s.Current()); err != nil {
					return 0, err
				}
			}
			return acc.Usage.OutputTokens, s.Err()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			est := admit.NewEstimator()
			lim, err := admit.New(admit.Config{Tier: "tier-4", Estimator: est})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var sum int64
			for i := range n {
				out, err := tt.call(ctx, lim, i)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if out <= 0 {
					t.Fatalf("call %d generated %d tokens", i, out)
				}
				sum += out
			}
			if s, err := lim.Snapshot(ctx); err != nil || s.InFlight != 0 {
				t.Errorf("after %d calls: %d in flight (%v), want 0: a reservation was not settled", n, s.InFlight, err)
			}
			mean := int64(math.Round(float64(sum) / n))
			if got := est.Output(mwModel, 100_000); got != mean {
				t.Errorf("estimator expects %d output tokens, want the calls' mean %d: their usage was not committed", got, mean)
			}
		})
	}
}

// TestMiddleware429PausesEveryone: a 429 with retry-after seen by one caller pauses
// the class for every caller of the Limiter: nothing reaches the API until it ends.
func TestMiddleware429PausesEveryone(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4"})
	c := &counting{h: em.Server}
	srv := httptestServer(t, c)
	lim, err := admit.New(admit.Config{Tier: "tier-4", PauseJitter: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const retryAfter = 2 * time.Second
	if err := em.Server.SetFaults(emulator.Faults{Ramp: 1, RampRetryAfter: retryAfter}); err != nil {
		t.Fatal(err)
	}
	params := anthropic.MessageNewParams{Model: mwModel, MaxTokens: 50,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}
	// The first caller sees the 429 (no SDK retries, so it surfaces).
	first := v2Client(srv, lim, option.WithMaxRetries(0))
	_, err = first.Messages.New(ctx, params)
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("first call = %v, want the emulator's 429", err)
	}
	limitedAt := time.Now()
	if err := em.Server.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	// Eight other callers, with the SDK's defaults, start at once.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			cl := v2Client(srv, lim)
			_, err := cl.Messages.New(ctx, params)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a caller after the pause: %v", err)
		}
	}
	c.mu.Lock()
	arrivals := c.arrivals[1:]
	c.mu.Unlock()
	if len(arrivals) != 8 {
		t.Fatalf("%d calls reached the API after the 429, want 8 (one each, no retries)", len(arrivals))
	}
	for _, at := range arrivals {
		if d := at.Sub(limitedAt); d < retryAfter-100*time.Millisecond {
			t.Errorf("a call reached the API %v after the 429, inside its %v retry-after", d.Round(time.Millisecond), retryAfter)
		}
	}
	if n := c.limited.Load(); n != 1 {
		t.Errorf("the API answered %d 429s, want 1 (the fault's)", n)
	}
}

// TestMiddlewareDeadlineFailsFast: a call whose wait for admission would pass its
// context's deadline fails at once with ErrDeadline, and nothing is sent.
func TestMiddlewareDeadlineFailsFast(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-1"})
	c := &counting{h: em.Server}
	srv := httptestServer(t, c)
	lim, err := admit.New(admit.Config{Tier: "tier-1"})
	if err != nil {
		t.Fatal(err)
	}
	// Take tier-1's 50 requests a minute: the next call fits in about a second.
	ctx := context.Background()
	class, _ := lim.ClassOf(mwModel)
	for {
		r, wait, err := lim.Reserve(class, admit.Need{})
		if err != nil {
			t.Fatal(err)
		}
		if wait > 0 {
			break
		}
		if err := r.Fail(nil); err != nil { // sent, as far as the limiter knows
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	cl := v2Client(srv, lim, option.WithMaxRetries(0))
	_, err = cl.Messages.New(short, anthropic.MessageNewParams{Model: mwModel, MaxTokens: 50,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
	if !errors.Is(err, admit.ErrDeadline) {
		t.Fatalf("call with 300ms left = %v, want ErrDeadline", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("it failed after %v, want at once", d)
	}
	if n := c.calls.Load(); n != 0 {
		t.Errorf("%d calls reached the API, want 0", n)
	}
}

// TestMiddlewarePassesOthersThrough: count_tokens, models and a model the catalog
// does not know are not admitted (nothing is reserved), and their bodies arrive
// whole.
func TestMiddlewarePassesOthersThrough(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4"})
	lim, err := admit.New(admit.Config{Tier: "tier-4", MaxConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the only slot: an admitted call would block.
	class, _ := lim.ClassOf(mwModel)
	held, err := lim.Wait(context.Background(), class, admit.Need{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := v2Client(em.URL, lim, option.WithMaxRetries(0))
	if _, err := cl.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{Model: mwModel,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}); err != nil {
		t.Errorf("count_tokens through the middleware: %v", err)
	}
	if _, err := cl.Models.List(ctx, anthropic.ModelListParams{}); err != nil {
		t.Errorf("models through the middleware: %v", err)
	}
	_, err = cl.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-from-the-future-9", MaxTokens: 10,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode == 0 {
		t.Errorf("an unknown model = %v, want the API's answer (not admitted, not blocked)", err)
	}
}

// TestTransportRawHTTP: Transport admits a plain net/http client's call and leaves
// the request it was given unchanged.
func TestTransportRawHTTP(t *testing.T) {
	t.Parallel()
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4"})
	est := admit.NewEstimator()
	lim, err := admit.New(admit.Config{Tier: "tier-4", Estimator: est})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: lim.Transport(nil)}
	var sum int64
	const n = 8 // the estimator's output estimate is calibrated from 8 answers on
	for i := range n {
		body := fmt.Sprintf(`{"model":%q,"max_tokens":100,"messages":[{"role":"user","content":%q}]}`, mwModel, prompt(i))
		orig := io.NopCloser(strings.NewReader(body))
		req, err := http.NewRequest(http.MethodPost, em.URL+"/v1/messages", orig)
		if err != nil {
			t.Fatal(err)
		}
		req.GetBody = nil // a body that cannot be read again
		req.Header.Set("x-api-key", "sk-ant-test")
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("content-type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("raw call = %d %s, %v", resp.StatusCode, b, err)
		}
		if req.Body != orig || req.GetBody != nil {
			t.Errorf("Transport changed the caller's request")
		}
		u, ok := admit.MessageUsage(b)
		if !ok || u.OutputTokens == 0 {
			t.Fatalf("answer has no usage: %s", b)
		}
		sum += u.OutputTokens
	}
	if got, want := est.Output(mwModel, 100_000), int64(math.Round(float64(sum)/n)); got != want {
		t.Errorf("estimator expects %d output tokens, want the calls' mean %d: their usage was not committed", got, want)
	}
	if s, _ := lim.Snapshot(context.Background()); s.InFlight != 0 {
		t.Errorf("%d in flight after the call, want 0", s.InFlight)
	}
}

// TestMiddlewareRedisSharedAcrossProcesses: two processes whose limiters share one
// Redis namespace together stay within one organisation's limit (the emulator
// answers no 429), where with a namespace each they overrun it. The processes are
// this test binary run again (the child half below).
func TestMiddlewareRedisSharedAcrossProcesses(t *testing.T) {
	if os.Getenv("ADMIT_TEST_CHILD") != "" {
		redisChild(t)
		return
	}
	redisURL := testkit.RedisURL(t)
	t.Parallel()
	for _, tt := range []struct {
		name    string
		shared  bool
		want429 bool
	}{{"one namespace", true, false}, {"a namespace each", false, true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			em := emulator.StartTB(t, emulator.Config{Tier: "tier-1"})
			c := &counting{h: em.Server}
			srv := httptestServer(t, c)
			ns := fmt.Sprintf("admit-test-%d-%d", os.Getpid(), time.Now().UnixNano())
			var wg sync.WaitGroup
			outs := make([]string, 2)
			for i := range 2 {
				name := ns
				if !tt.shared {
					name = fmt.Sprintf("%s-%d", ns, i)
				}
				cmd := exec.Command(os.Args[0], "-test.run=^TestMiddlewareRedisSharedAcrossProcesses$")
				cmd.Env = append(os.Environ(), "ADMIT_TEST_CHILD=1", "ADMIT_TEST_URL="+srv, "ADMIT_TEST_REDIS="+redisURL, "ADMIT_TEST_NS="+name)
				wg.Go(func() {
					out, err := cmd.CombinedOutput()
					if err != nil {
						t.Errorf("child %d: %v\n%s", i, err, out)
					}
					outs[i] = string(out)
				})
			}
			wg.Wait()
			calls, limited := c.calls.Load(), c.limited.Load()
			t.Logf("%d calls reached the emulator (tier-1: 50 RPM), %d answered 429", calls, limited)
			if calls < 40 {
				t.Fatalf("only %d calls reached the emulator: the children did not run\n%s\n%s", calls, outs[0], outs[1])
			}
			if tt.want429 && limited == 0 {
				t.Errorf("with a namespace each, no 429: the test does not exercise the overrun it guards against")
			}
			if !tt.want429 && limited != 0 {
				t.Errorf("sharing one namespace, the emulator answered %d 429s, want 0", limited)
			}
		})
	}
}

// redisChild is one process of TestMiddlewareRedisSharedAcrossProcesses: 20
// goroutines call the emulator through the SDK and a Redis-shared limiter for 3 s.
func redisChild(t *testing.T) {
	opts, err := admit.ParseRedisURL(os.Getenv("ADMIT_TEST_REDIS"))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	be, err := admit.NewRedis(admit.RedisConfig{Client: rdb, Namespace: os.Getenv("ADMIT_TEST_NS")})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := admit.New(admit.Config{Tier: "tier-1", Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cl := v2Client(os.Getenv("ADMIT_TEST_URL"), lim, option.WithMaxRetries(0))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := cl.Messages.New(ctx, anthropic.MessageNewParams{Model: mwModel, MaxTokens: 20,
					Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
				if errors.Is(err, admit.ErrDeadline) || ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
}
