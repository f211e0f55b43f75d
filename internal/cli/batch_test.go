package cli_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/jobs"
)

func TestBatchEmulated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	const n = 100
	writeWorkload(t, in, n)
	var stdout, stderr bytes.Buffer
	args := []string{"batch", in, "-o", out, "--emulate", "tier-4", "--tier", "tier-4", "--max-requests", "40", "--poll", "10ms", "-q"}
	if code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("clade %s = exit %d, want 0; stderr:\n%s", strings.Join(args, " "), code, stderr.String())
	}
	seen := countResults(t, out)
	if len(seen) != n {
		t.Errorf("results file has %d custom_ids, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("custom_id %s has %d result lines, want 1", id, c)
		}
	}
	for _, want := range []string{"100 requests: 100 succeeded, 0 errored", "3 batches created", "at batch prices"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stderr.String())
		}
	}
	stdout.Reset()
	if code := cli.Run(context.Background(), []string{"status", out}, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("clade status = exit %d, want 0", code)
	}
	if want := "batches: 3 done, 0 in flight"; !strings.Contains(stdout.String(), want) {
		t.Errorf("clade status lacks %q:\n%s", want, stdout.String())
	}
}

func TestBatchUsageErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, in, 1)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "no input", args: []string{"batch", filepath.Join(dir, "missing.jsonl")}, want: "Try: clade batch"},
		{name: "bad tier", args: []string{"batch", in, "--tier", "tier-9"}, want: "--tier"},
		{name: "bad rounds", args: []string{"batch", in, "--max-rounds", "0"}, want: "--max-rounds"},
		{name: "cancel without store", args: []string{"batch", "cancel"}, want: "no store named"},
		{name: "bad retry-via", args: []string{"batch", in, "--retry-via", "pigeon"}, want: "--retry-via \"pigeon\""},
		{name: "bad concurrency", args: []string{"batch", in, "--retry-via", "realtime", "--concurrency", "0"}, want: "--concurrency"},
		{name: "bad cache-warm", args: []string{"batch", in, "--cache-warm", "always"}, want: "--cache-warm \"always\""},
		{name: "bad cache-warm-group", args: []string{"batch", in, "--cache-warm", "realtime", "--cache-warm-group", "0"}, want: "--cache-warm-group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != cli.ExitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("clade %s = exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr.String(), cli.ExitUsage, tt.want)
			}
		})
	}
}

// TestBatchSurvivesSIGKILL kills `clade batch` four times while its batches are in
// flight, each time inside a create call (createGate holds it): twice after the API
// created the batch and before clade learnt its id, twice before the call reached
// the API. Then it resumes it: every custom_id ends with exactly one result, the
// emulator holds no batch beyond one per request (no batch was created twice), and
// each batch created by a killed call was adopted.
func TestBatchSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	t.Parallel()
	const n = 600
	key := "sk-ant-crash-" + strings.Repeat("b", 24)
	// 0.4 requests per emulated second at 1,000×: 600 requests take 1.5 s.
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1000, BatchProcessingRate: 0.4})
	gate := startCreateGate(t, em.URL)
	dir := t.TempDir()
	input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeWorkload(t, input, n)
	args := []string{"batch", input, "-o", out, "--base-url", gate.URL, "--tier", "tier-4", "--max-requests", "25", "--poll", "10ms"}
	var logs strings.Builder

	// Which create call of each process is held, and whether the API has it.
	holds := []struct {
		at       int
		afterAPI bool
	}{{2, true}, {1, false}, {1, true}, {1, false}}
	adoptable := 0
	for k, h := range holds {
		held := gate.arm(h.at, h.afterAPI)
		c := startChild(t, key, args...)
		select {
		case <-held:
		case <-c.done:
			t.Fatalf("clade batch exited (%v) before its create call %d was held:\n%s", c.err, h.at, tail(c.stderr(), 3000))
		case <-time.After(60 * time.Second):
			t.Fatalf("timed out waiting for create call %d:\n%s", h.at, tail(c.stderr(), 3000))
		}
		c.kill()
		logs.WriteString(c.stderr())

		bs, _ := storeBatches(t, out+".clade.db")
		intents, created := 0, 0
		for _, b := range bs {
			switch b.State {
			case jobs.BatchIntent:
				intents++
			case jobs.BatchCreated, jobs.BatchDone:
				created++
			}
		}
		want := created
		if h.afterAPI {
			want++
			adoptable++
		}
		if api := len(apiBatches(t, em.URL, key)); intents != 1 || api != want {
			t.Fatalf("after kill %d (create call %d held, at the API %v) the store has %d intents and %d batches, the API %d batches; want 1 intent and %d at the API",
				k+1, h.at, h.afterAPI, intents, created, api, want)
		}
	}
	c := startChild(t, key, args...)
	if code := c.exitCode(t); code != cli.ExitOK {
		t.Fatalf("final run: exit %d, want 0\n%s", code, tail(c.stderr(), 3000))
	}
	logs.WriteString(c.stderr())
	seen := wantEachOnce(t, out, n)
	api := apiBatches(t, em.URL, key)
	if sent := apiRequests(api); sent != n {
		t.Errorf("the emulator's batches hold %d requests in all, want %d (a batch was created twice)", sent, n)
	}
	if adopted := strings.Count(logs.String(), " adopted: "); adopted != adoptable {
		t.Errorf("%d batches adopted, want %d (one per kill after the API created the batch)", adopted, adoptable)
	}
	t.Logf("%d SIGKILLs inside a create call (%d after the API created the batch), then a resume: %d results in %d batches",
		len(holds), adoptable, len(seen), len(api))
}

// createGate is a proxy in front of the emulator that holds one batch create call
// of a clade process until the process is gone, so that a test kills clade inside
// the call: before it reaches the API (the store has the intent, the API has no
// batch) or after the API created the batch and before its answer reaches clade
// (the API has a batch that no row of the store names).
type createGate struct {
	URL string

	mu       sync.Mutex
	at, seen int  // hold create call at (1-based, counted by seen since arm); 0: none
	afterAPI bool // hold the answer, not the call
	held     chan struct{}
	stop     chan struct{} // closed at cleanup: every held call returns
}

type heldAnswerKey struct{}

var errHeld = errors.New("create answer held")

func startCreateGate(t *testing.T, target string) *createGate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &createGate{stop: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Context().Value(heldAnswerKey{}) != nil {
			g.hold(resp.Request.Context())
			return errHeld
		}
		return nil
	}
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/messages/batches" {
			if hold, afterAPI := g.next(); hold && !afterAPI {
				g.hold(r.Context())
				return
			} else if hold {
				r = r.WithContext(context.WithValue(r.Context(), heldAnswerKey{}, true))
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(g.stop) }) // before srv.Close, which waits for held calls
	g.URL = srv.URL
	return g
}

// arm makes the gate hold the at-th create call from now on; the channel returned
// is closed once it is held.
func (g *createGate) arm(at int, afterAPI bool) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.at, g.seen, g.afterAPI, g.held = at, 0, afterAPI, make(chan struct{})
	return g.held
}

// next counts a create call and reports whether to hold it, and where.
func (g *createGate) next() (hold, afterAPI bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen++
	return g.seen == g.at, g.afterAPI
}

// hold says the call is held and blocks until its client is gone.
func (g *createGate) hold(ctx context.Context) {
	g.mu.Lock()
	close(g.held)
	g.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-g.stop:
	}
}
