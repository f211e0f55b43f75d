package runner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

// seenRequest is one request as the server in front of the emulator saw it.
type seenRequest struct {
	body              []byte
	arrived, answered time.Time // answered: the response's first byte (WriteHeader)
	ended             time.Time // the handler returned: the whole response written
}

// cacheRecorder is an http.Handler in front of the emulator that records every Messages
// request; before, when set, runs first (with the body).
type cacheRecorder struct {
	next   http.Handler
	before func(body []byte)
	after  func(body []byte) // once the emulator has answered, before the client has it all
	mu     sync.Mutex
	reqs   []*seenRequest
}

func (rc *cacheRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messages" {
		rc.next.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	s := &seenRequest{body: body, arrived: time.Now()}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, s)
	rc.mu.Unlock()
	if rc.before != nil {
		rc.before(body)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	rc.next.ServeHTTP(&cacheFirstByte{ResponseWriter: w, s: s, mu: &rc.mu}, r)
	rc.mu.Lock()
	s.ended = time.Now()
	rc.mu.Unlock()
	if rc.after != nil {
		rc.after(body)
	}
}

func (rc *cacheRecorder) all() []seenRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]seenRequest, len(rc.reqs))
	for i, s := range rc.reqs {
		out[i] = *s
	}
	return out
}

type cacheFirstByte struct {
	http.ResponseWriter
	s  *seenRequest
	mu *sync.Mutex
}

func (f *cacheFirstByte) WriteHeader(code int) {
	f.mu.Lock()
	if f.s.answered.IsZero() {
		f.s.answered = time.Now()
	}
	f.mu.Unlock()
	f.ResponseWriter.WriteHeader(code)
}

func (f *cacheFirstByte) Flush() {
	if fl, ok := f.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

func (f *cacheFirstByte) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// cacheSetup starts the emulator behind a cacheRecorder, over real HTTP.
func cacheSetup(t *testing.T, cfg emulator.Config) (*cacheRecorder, *upstream.Client, *jobs.Store, string) {
	t.Helper()
	em, err := emulator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rc := &cacheRecorder{next: em}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	client, err := upstream.New(upstream.Config{BaseURL: srv.URL, APIKey: upstream.NewSecret(testKey)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := jobs.Open(context.Background(), filepath.Join(dir, "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return rc, client, st, dir
}

const cacheModel = "claude-sonnet-5" // min_cache_tokens 1,024

// docLine is a line asking question q about document doc, the document in a
// cache_control block.
func docLine(id, doc, q string) string {
	return `{"custom_id":"` + id + `","params":{"model":"` + cacheModel + `","max_tokens":8,"messages":[{"role":"user","content":[` +
		`{"type":"text","text":"` + doc + `","cache_control":{"type":"ephemeral"}},{"type":"text","text":"` + q + `"}]}]}}`
}

// docLines is docs documents × questions lines, a document's lines in a row, the
// line of question q about document d with custom_id "dD-qQ".
func docLines(docs, questions int) []string {
	var lines []string
	for d := range docs {
		for q := range questions {
			lines = append(lines, docLine(fmt.Sprintf("d%d-q%d", d, q), document(d), fmt.Sprintf("question %d?", q)))
		}
	}
	return lines
}

func writeLines(t *testing.T, dir string, lines []string) string {
	t.Helper()
	path := filepath.Join(dir, "input.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func document(i int) string { return fmt.Sprintf("document %d: ", i) + strings.Repeat("wxyz", 2000) } // ~2,000 tokens

type cacheUsage struct {
	Input, Write, Read int64
}

func usages(t *testing.T, out string) map[string]cacheUsage {
	t.Helper()
	got := map[string]cacheUsage{}
	for id, r := range testkit.ReadResults(t, out) {
		var l struct {
			Result struct {
				Message struct {
					Usage struct {
						InputTokens              int64 `json:"input_tokens"`
						CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
						CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
					} `json:"usage"`
				} `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(r.Line), &l); err != nil {
			t.Fatalf("%s: result line %s: %v", id, r.Line, err)
		}
		m := l.Result.Message
		got[id] = cacheUsage{m.Usage.InputTokens, m.Usage.CacheCreationInputTokens, m.Usage.CacheReadInputTokens}
	}
	return got
}

// TestCacheFollowersWaitForTheWarmingResponse: of a prefix's requests, one goes
// first and none of the others reaches the server before its response has
// started; they then read the cache. The same input with scheduling off sends the
// followers at once, and they write: the check can see a violation.
func TestCacheFollowersWaitForTheWarmingResponse(t *testing.T) {
	t.Parallel()
	lines := docLines(3, 6)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("schedule off=%v", off), func(t *testing.T) {
			t.Parallel()
			// Sonnet 5's 700 ms to first token at scale 0.2: 140 ms.
			rc, client, st, dir := cacheSetup(t, emulator.Config{Tier: "tier-4", LatencyScale: 0.2, Output: emulator.OutputModel{MedianTokens: 4}})
			out := filepath.Join(dir, "results.jsonl")
			sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client,
				Input: writeLines(t, dir, lines), Output: out, Tier: "tier-4"}, MaxConcurrency: 64, CacheScheduleOff: off})
			if err != nil || sum.Succeeded != int64(len(lines)) {
				t.Fatalf("Run = %+v, %v; want %d succeeded", sum, err, len(lines))
			}
			early, writes := 0, 0
			for d := range 3 {
				var group []seenRequest
				for _, s := range rc.all() {
					if bytes.Contains(s.body, []byte(fmt.Sprintf("document %d: ", d))) {
						group = append(group, s)
					}
				}
				if len(group) != 6 {
					t.Fatalf("document %d: %d requests seenRequest, want 6", d, len(group))
				}
				first := group[0]
				for _, s := range group {
					if s.arrived.Before(first.arrived) {
						first = s
					}
				}
				for _, s := range group {
					if s.arrived != first.arrived && s.arrived.Before(first.answered) {
						early++
					}
				}
			}
			for id, u := range usages(t, out) {
				if u.Write > 0 {
					writes++
				} else if u.Read < 2000 {
					t.Errorf("%s: usage %+v, want a cache write or read of the document", id, u)
				}
			}
			if !off {
				if early != 0 || writes != 3 {
					t.Errorf("scheduled: %d requests went before their warming request's response started, %d cache writes; want 0 and 3 (one per document)", early, writes)
				}
				if sum.Warmed != 3 || sum.CacheReads != 15 {
					t.Errorf("Summary Warmed %d, CacheReads %d; want 3, 15", sum.Warmed, sum.CacheReads)
				}
				// Sonnet 5 at $3/M (from 2026-09-01): 15 reads save 0.9 of the
				// document each, 3 writes cost 0.25 more.
				perDoc := float64(sum.CacheWriteTokens) / 3 * 3 / 1e6
				if want := perDoc * (15*0.9 - 3*0.25); sum.CacheSavedUSD < want*0.99 || sum.CacheSavedUSD > want*1.01 {
					t.Errorf("Summary.CacheSavedUSD = %.6f, want %.6f", sum.CacheSavedUSD, want)
				}
			} else if early == 0 || writes <= 3 {
				t.Errorf("scheduling off: %d early requests, %d writes; want followers sent at once (the test could not see a violation)", early, writes)
			}
		})
	}
}

// TestCacheIdlePrefixRewarmed: a prefix idle past its TTL is warmed again, by one
// request, before the rest of its requests expect a read. The clock (the
// emulator's cache and the scheduler's) jumps 6 minutes once the third request has
// been answered, one request in flight at a time (the others wait for the warming
// answer or for admission: a read admitted after the jump asks again).
func TestCacheIdlePrefixRewarmed(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	rc, client, st, dir := cacheSetup(t, emulator.Config{Tier: "unlimited", Now: clock, Output: emulator.OutputModel{MedianTokens: 4}})
	answered := 0
	rc.after = func([]byte) {
		mu.Lock()
		if answered++; answered == 3 {
			now = now.Add(6 * time.Minute)
		}
		mu.Unlock()
	}
	var lines []string
	for q := range 6 {
		lines = append(lines, docLine(fmt.Sprintf("a%d", q), document(0), fmt.Sprintf("question %d?", q)))
	}
	out := filepath.Join(dir, "results.jsonl")
	sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client,
		Input: writeLines(t, dir, lines), Output: out, Tier: "unlimited"}, MaxConcurrency: 1, Test: runner.TestHooks{Now: clock}})
	if err != nil || sum.Succeeded != int64(len(lines)) {
		t.Fatalf("Run = %+v, %v; want %d succeeded", sum, err, len(lines))
	}
	// The requests in the order the server saw them, one at a time.
	var order []string
	seen := rc.all()
	for i, s := range seen {
		if i > 0 && s.arrived.Before(seen[i-1].answered) {
			t.Fatalf("request %d arrived before request %d was answered: more than one in flight at MaxConcurrency 1", i+1, i)
		}
		for q := range 6 {
			if bytes.Contains(s.body, []byte(fmt.Sprintf("question %d?", q))) {
				order = append(order, fmt.Sprintf("a%d", q))
			}
		}
	}
	if len(order) != 6 {
		t.Fatalf("the server saw %v, want each of the 6 lines once", order)
	}
	u := usages(t, out)
	for i, id := range order {
		warms := i == 0 || i == 3 // the first, and the first after the idle gap
		if got := u[id]; warms && got.Write == 0 || !warms && got.Read == 0 {
			t.Errorf("request %d to arrive (%s): usage %+v; want the 1st to write, the 4th (after the idle gap) to write the expired prefix again, the others to read (order %v)", i+1, id, got, order)
		}
	}
	if sum.Warmed != 2 || sum.Rewarmed != 1 || sum.CacheReads != 4 {
		t.Errorf("Summary Warmed %d, Rewarmed %d, CacheReads %d; want 2 (the 1st, the 4th), 1 (the 4th), 4", sum.Warmed, sum.Rewarmed, sum.CacheReads)
	}
}

// TestLinesWithoutCacheControlUnchanged: lines without cache_control (and one
// whose prefix is below the model's minimum) reach the server byte for byte as
// written, at once: they never wait for another prefix's warming request, whose
// response is slow to start.
func TestLinesWithoutCacheControlUnchanged(t *testing.T) {
	t.Parallel()
	// 700 ms to first token at scale 1.
	rc, client, st, dir := cacheSetup(t, emulator.Config{Tier: "tier-4", LatencyScale: 1, Output: emulator.OutputModel{MedianTokens: 2}})
	lines := []string{docLine("warm", document(0), "first"), docLine("wait", document(0), "second")}
	plain, marker := map[string]string{}, map[string]string{"short": "too short to cache"}
	for i := range 8 {
		id := fmt.Sprintf("plain%d", i)
		marker[id] = fmt.Sprintf("no cache %d", i)
		params := fmt.Sprintf(`{ "model" : "%s", "max_tokens":8, "messages":[{"role":"user","content":"no cache %d"}], "temperature": 0.5 }`, cacheModel, i)
		plain[id] = params
		lines = append(lines, `{"custom_id":"`+id+`","params":`+params+`}`)
	}
	short := `{"model":"` + cacheModel + `","max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":"too short to cache","cache_control":{"type":"ephemeral"}}]}]}`
	plain["short"] = short
	lines = append(lines, `{"custom_id":"short","params":`+short+`}`)
	out := filepath.Join(dir, "results.jsonl")
	sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client,
		Input: writeLines(t, dir, lines), Output: out, Tier: "tier-4"}, MaxConcurrency: 32})
	if err != nil || sum.Succeeded != int64(len(lines)) {
		t.Fatalf("Run = %+v, %v; want %d succeeded", sum, err, len(lines))
	}
	var warm seenRequest
	got := map[string][]byte{}
	for _, s := range rc.all() {
		if bytes.Contains(s.body, []byte(`"first"`)) {
			warm = s
		}
		for id := range plain {
			if bytes.Contains(s.body, []byte(marker[id])) {
				got[id] = s.body
			}
		}
	}
	if warm.answered.Sub(warm.arrived) < 500*time.Millisecond {
		t.Fatalf("the warming request answered in %v, want the 700 ms to first token (the test needs a slow warm-up)", warm.answered.Sub(warm.arrived))
	}
	for id, p := range plain {
		b, ok := got[id]
		if !ok {
			t.Errorf("%s: not seenRequest by the server", id)
			continue
		}
		if string(b) != p {
			t.Errorf("%s: server got %s, want the line's params byte for byte %s", id, b, p)
		}
	}
	for _, s := range rc.all() {
		if !bytes.Contains(s.body, []byte("document 0")) && !s.arrived.Before(warm.answered) {
			t.Errorf("a request without a cacheable prefix arrived %v after the warming request's answer started: it waited", s.arrived.Sub(warm.answered))
		}
	}
	if sum.Warmed != 1 {
		t.Errorf("Summary.Warmed = %d, want 1 (only the document's prefix)", sum.Warmed)
	}
}

// TestCacheWaitingRequestsLeaveSlotsFree: the requests waiting for their prefix's
// warming answer hold no slot of MaxConcurrency, so the next document's warming
// request goes while the first one's is being answered, and the calls in flight
// never exceed MaxConcurrency. With one job per slot (the baseline hook), the
// waiting questions fill the slots and the second document waits: the check can
// see the difference.
func TestCacheWaitingRequestsLeaveSlotsFree(t *testing.T) {
	t.Parallel()
	lines := docLines(3, 4)
	for _, oneEach := range []bool{false, true} {
		t.Run(fmt.Sprintf("one worker per slot=%v", oneEach), func(t *testing.T) {
			t.Parallel()
			// Sonnet 5's 700 ms to first token.
			rc, client, st, dir := cacheSetup(t, emulator.Config{Tier: "tier-4", LatencyScale: 1, Output: emulator.OutputModel{MedianTokens: 2}})
			var mu sync.Mutex
			inFlight, most := 0, 0
			rc.before = func([]byte) {
				mu.Lock()
				inFlight++
				most = max(most, inFlight)
				mu.Unlock()
			}
			rc.after = func([]byte) { mu.Lock(); inFlight--; mu.Unlock() }
			sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client,
				Input: writeLines(t, dir, lines), Output: filepath.Join(dir, "results.jsonl"), Tier: "tier-4"},
				MaxConcurrency: 2, Test: runner.TestHooks{OneWorkerPerSlot: oneEach}})
			if err != nil || sum.Succeeded != int64(len(lines)) || sum.Warmed != 3 {
				t.Fatalf("Run = %+v, %v; want %d succeeded, 3 warming requests", sum, err, len(lines))
			}
			first := map[int]seenRequest{} // each document's first request
			for _, s := range rc.all() {
				for d := range 3 {
					if f, ok := first[d]; bytes.Contains(s.body, []byte(fmt.Sprintf("document %d: ", d))) && (!ok || s.arrived.Before(f.arrived)) {
						first[d] = s
					}
				}
			}
			overlapped := first[1].arrived.Before(first[0].answered)
			if most > 2 {
				t.Errorf("%d requests in flight at once, want at most MaxConcurrency 2", most)
			}
			if !oneEach && !overlapped {
				t.Errorf("document 1's warming request arrived %v after document 0's, which was answered after %v: it waited for a slot held by a waiting question",
					first[1].arrived.Sub(first[0].arrived), first[0].answered.Sub(first[0].arrived))
			}
			if oneEach && overlapped {
				t.Errorf("one worker per slot: document 1's warming request went before document 0's was answered; want it to wait (the test could not see the difference)")
			}
		})
	}
}

// TestCacheRunAtHighConcurrency: a run with cacheable prefixes at a concurrency
// whose cacheWorkers multiple is above what one process can work (jobs.MaxWorkers)
// still runs (its jobs at once capped there); one above runner.MaxConcurrency is
// refused, saying so.
func TestCacheRunAtHighConcurrency(t *testing.T) {
	t.Parallel()
	_, client, st, dir := cacheSetup(t, emulator.Config{Tier: "tier-4", Output: emulator.OutputModel{MedianTokens: 2}})
	lines := docLines(1, 4)
	spec := lifecycle.Spec{Store: st, Client: client, Input: writeLines(t, dir, lines), Output: filepath.Join(dir, "results.jsonl"), Tier: "tier-4"}
	sum, err := runner.Run(context.Background(), runner.Config{Spec: spec, MaxConcurrency: runner.MaxConcurrency/2 + 1})
	if err != nil || sum.Succeeded != int64(len(lines)) || sum.Warmed != 1 {
		t.Fatalf("Run at concurrency %d = %+v, %v; want %d succeeded, 1 warming request", runner.MaxConcurrency/2+1, sum, err, len(lines))
	}
	spec.Output = filepath.Join(dir, "again.jsonl")
	if _, err := runner.Run(context.Background(), runner.Config{Spec: spec, MaxConcurrency: runner.MaxConcurrency + 1}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("at most %d requests in flight", runner.MaxConcurrency)) {
		t.Errorf("Run at concurrency %d: err %v, want it refused naming the most", runner.MaxConcurrency+1, err)
	}
}

// TestCacheWaitingRequestsHoldNoBudget: the jobs waiting for their prefix's
// warming answer (4 per slot) hold none of the budget, so a run whose budget covers
// its cost and what MaxConcurrency requests in flight hold finishes, where holding
// every waiting job's worst case would have stopped it at its start.
func TestCacheWaitingRequestsHoldNoBudget(t *testing.T) {
	t.Parallel()
	const concurrency = 2
	lines := docLines(2, 6)
	run := func(budget float64) (*runner.Summary, error) {
		// Sonnet 5's 700 ms to first token at scale 0.3: the questions wait 210 ms.
		_, client, st, dir := cacheSetup(t, emulator.Config{Tier: "tier-4", LatencyScale: 0.3, Output: emulator.OutputModel{MedianTokens: 2}})
		return runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client,
			Input: writeLines(t, dir, lines), Output: filepath.Join(dir, "results.jsonl"), Tier: "tier-4", Budget: budget},
			MaxConcurrency: concurrency})
	}
	free, err := run(0)
	if err != nil || free.Succeeded != int64(len(lines)) {
		t.Fatalf("without a budget: Run = %+v, %v; want %d succeeded", free, err, len(lines))
	}
	cat := catalog.Default()
	m, err := cat.Resolve(cacheModel)
	if err != nil {
		t.Fatal(err)
	}
	// One request's hold: about its document uncached and its whole max_tokens.
	worst := cat.Cost(m, catalog.Usage{InputTokens: free.CacheWriteTokens / 2, OutputTokens: 8}, false)
	budget := free.CostUSD + concurrency*worst + worst/2
	if held := float64(4*concurrency) * worst; held <= budget {
		t.Fatalf("the budget $%.4f covers the %d jobs at once holding $%.4f: the test could not see waiting jobs holding it", budget, 4*concurrency, held)
	}
	sum, err := run(budget)
	if err != nil || sum.Succeeded != int64(len(lines)) {
		t.Fatalf("with a budget of $%.4f (the run costs $%.4f; %d jobs at once would hold $%.4f): Run = %+v, %v; want all %d succeeded",
			budget, free.CostUSD, 4*concurrency, float64(4*concurrency)*worst, sum, err, len(lines))
	}
}

// TestCacheWarmingRequestStreams: a warming request is sent as a stream, so its
// prefix's other requests go once its answer starts (message_start), not after its
// whole answer; they are sent as written (non-streaming, max_tokens below the
// stream threshold) and read the cache. With --stream-above never, it is not
// streamed and the others wait for its whole answer: the check can see the
// difference.
func TestCacheWarmingRequestStreams(t *testing.T) {
	t.Parallel()
	var lines []string
	for q := range 4 {
		lines = append(lines, strings.Replace(docLine(fmt.Sprintf("q%d", q), document(0), fmt.Sprintf("question %d?", q)), `"max_tokens":8`, `"max_tokens":600`, 1))
	}
	for _, never := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream never=%v", never), func(t *testing.T) {
			t.Parallel()
			// Sonnet 5 at scale 0.2: 140 ms to first token, then 400 tokens at 450 a second.
			rc, client, st, dir := cacheSetup(t, emulator.Config{Tier: "tier-4", LatencyScale: 0.2, Output: emulator.OutputModel{MedianTokens: 400, Sigma: 0.01}})
			cfg := runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: writeLines(t, dir, lines),
				Output: filepath.Join(dir, "results.jsonl"), Tier: "tier-4"}, MaxConcurrency: 8}
			if never {
				cfg.StreamAbove = runner.StreamNever
			}
			sum, err := runner.Run(context.Background(), cfg)
			if err != nil || sum.Succeeded != int64(len(lines)) || sum.Warmed != 1 {
				t.Fatalf("Run = %+v, %v; want %d succeeded, 1 warming request", sum, err, len(lines))
			}
			seen := rc.all()
			warm := seen[0]
			for _, s := range seen {
				if s.arrived.Before(warm.arrived) {
					warm = s
				}
			}
			streamed := func(s seenRequest) bool { return bytes.Contains(s.body, []byte(`"stream":true`)) }
			early := 0 // the others sent before the warming answer ended
			for _, s := range seen {
				if s.arrived == warm.arrived {
					continue
				}
				if streamed(s) {
					t.Errorf("a request reading the cache was streamed: %s", s.body[len(s.body)-60:])
				}
				if s.arrived.Before(warm.ended) {
					early++
				}
			}
			for id, u := range usages(t, cfg.Output) {
				if u.Write == 0 && u.Read == 0 {
					t.Errorf("%s: usage %+v, want a cache write or read", id, u)
				}
			}
			if !never && (!streamed(warm) || early != len(lines)-1) {
				t.Errorf("warming request streamed %v; %d of the other %d sent before its answer ended (%v after it started); want it streamed and all of them",
					streamed(warm), early, len(lines)-1, warm.ended.Sub(warm.arrived))
			}
			if never && (streamed(warm) || early != 0) {
				t.Errorf("--stream-above never: warming request streamed %v, %d others sent before its answer ended; want neither", streamed(warm), early)
			}
		})
	}
}
