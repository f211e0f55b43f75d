package batch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// wireLog is a reverse proxy in front of the emulator that keeps what clade sent:
// each batch create body and each Messages call body, byte for byte.
type wireLog struct {
	mu       sync.Mutex
	creates  [][]byte
	messages [][]byte
	// order is "create" or "messages" per call, in the order they came.
	order []string
}

// proxy puts a wireLog in front of e's emulator and points e's client at it.
func (e *env) proxy(t *testing.T) *wireLog {
	t.Helper()
	target, err := url.Parse(e.em.URL)
	if err != nil {
		t.Fatal(err)
	}
	w := &wireLog{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && (r.URL.Path == "/v1/messages/batches" || r.URL.Path == "/v1/messages") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(rw, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			w.mu.Lock()
			if r.URL.Path == "/v1/messages" {
				w.messages = append(w.messages, body)
				w.order = append(w.order, "messages")
			} else {
				w.creates = append(w.creates, body)
				w.order = append(w.order, "create")
			}
			w.mu.Unlock()
		}
		rp.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	client, err := upstream.New(upstream.Config{BaseURL: srv.URL, APIKey: upstream.NewSecret(testKey)})
	if err != nil {
		t.Fatal(err)
	}
	e.client = client
	return w
}

// Creates and Messages return copies of what was sent so far.
func (w *wireLog) Creates() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.creates...)
}

func (w *wireLog) Messages() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.messages...)
}

// doc is a ~5,000-token document (over haiku's minimum cacheable length) named name.
func doc(name string) string { return strings.Repeat("document "+name+". ", 20000/(len(name)+11)) }

// prefixLine is a request line whose user message is doc(name) in a cache_control
// block, then question q.
func prefixLine(name string, q int) string {
	return fmt.Sprintf(`{"custom_id":"%s-q%d","params":{"model":"claude-haiku-4-5","max_tokens":32,"messages":[{"role":"user","content":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}},{"type":"text","text":"Question %d about %s?"}]}]}}`, name, q, doc(name), q, name)
}

// mixedLines is the input of the body tests: prefixes "big" (6 lines), "pair" (2)
// and "tri" (3), interleaved, with 4 lines without cache_control among them.
func mixedLines() []string {
	var lines []string
	for q := range 6 {
		lines = append(lines, prefixLine("big", q))
		if q < 2 {
			lines = append(lines, prefixLine("pair", q))
		}
		if q < 3 {
			lines = append(lines, prefixLine("tri", q))
		}
		if q < 4 {
			lines = append(lines, fmt.Sprintf(`{"custom_id":"plain-%d","params":{"model":"claude-haiku-4-5","max_tokens":16,"messages":[{"role":"user","content":"plain %d"}]}}`, q, q))
		}
	}
	return lines
}

// bodyDigest is one line per create body: its size and SHA-256.
func bodyDigest(bodies [][]byte) string {
	var b strings.Builder
	for _, body := range bodies {
		sum := sha256.Sum256(body)
		fmt.Fprintf(&b, "%d %s\n", len(body), hex.EncodeToString(sum[:]))
	}
	return b.String()
}

// TestCacheWarmOffBodiesUnchanged runs the mixed input (three prefixes and lines
// without cache_control) in batches of 7 with CacheWarm unset and "off": the
// create bodies are byte for byte those clade sent before --cache-warm existed
// (testdata/warm_off_bodies.golden, written with -update by the code before it),
// and no Messages call is made.
func TestCacheWarmOffBodiesUnchanged(t *testing.T) {
	t.Parallel()
	golden := filepath.Join("testdata", "warm_off_bodies.golden")
	for _, mode := range []string{"", "off"} {
		e := setup(t, emulator.Config{ClockSpeed: 1000})
		w := e.proxy(t)
		cfg := e.config(writeLines(t, filepath.Join(e.dir, "mixed.jsonl"), mixedLines()), 7)
		setCacheWarm(&cfg, mode)
		sum := run(t, cfg)
		if sum.Succeeded != 15 {
			t.Fatalf("CacheWarm %q: Run() = %d succeeded, want 15", mode, sum.Succeeded)
		}
		got := bodyDigest(w.Creates())
		if len(w.Creates()) < 3 {
			t.Fatalf("CacheWarm %q: %d create bodies, want ≥ 3 (batches of 7 of 15 lines)", mode, len(w.Creates()))
		}
		if *update && mode == "" {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("CacheWarm %q: create bodies (size sha256) =\n%s\nwant (%s)\n%s", mode, got, golden, want)
		}
		if n := len(w.Messages()); n != 0 {
			t.Errorf("CacheWarm %q: %d Messages calls, want 0", mode, n)
		}
	}
}

func setCacheWarm(cfg *batch.Config, mode string) { cfg.CacheWarm = mode }

// onBackend points e at a fresh store of backend b (SQLite: the one setup made).
func (e *env) onBackend(t *testing.T, b jobstest.Backend) {
	t.Helper()
	if b.Name == "sqlite" {
		return
	}
	ctx := context.Background()
	st, err := jobs.Open(ctx, b.NewDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.PrepareBatches(ctx); err != nil {
		t.Fatal(err)
	}
	e.store = st
}

// sentIDs are the custom_ids of create bodies, and the question of each
// Messages call ("Question 0 about big?": "big-q0").
func sentIDs(t *testing.T, w *wireLog) (inBatches map[string]int, realtime map[string]int) {
	t.Helper()
	inBatches, realtime = map[string]int{}, map[string]int{}
	for _, body := range w.Creates() {
		var v struct {
			Requests []struct {
				CustomID string `json:"custom_id"`
			} `json:"requests"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("create body: %v", err)
		}
		for _, r := range v.Requests {
			inBatches[r.CustomID]++
		}
	}
	q := regexp.MustCompile(`Question (\d+) about (\w+)\?`)
	for _, body := range w.Messages() {
		m := q.FindSubmatch(body)
		if m == nil {
			t.Fatalf("a Messages call that is no line of the input: %.200s", body)
		}
		realtime[fmt.Sprintf("%s-q%s", m[2], m[1])]++
	}
	return inBatches, realtime
}

// resultUsage is each custom_id's result line count, and its prompt-cache
// read and write tokens.
type resultUsage struct {
	lines       int
	read, write int64
}

func resultsByID(t *testing.T, path string) map[string]*resultUsage {
	t.Helper()
	out := map[string]*resultUsage{}
	for _, l := range testkit.ResultLines(t, path) {
		if l.Type != "succeeded" {
			t.Errorf("%s: %s, want succeeded", l.CustomID, l.Type)
		}
		r := out[l.CustomID]
		if r == nil {
			r = &resultUsage{}
			out[l.CustomID] = r
		}
		u := l.Usage
		r.lines++
		r.read += u.CacheReadInputTokens
		r.write += u.CacheCreation.Ephemeral5m + u.CacheCreation.Ephemeral1h
	}
	return out
}

// warmRun starts what the warm tests on a store backend run against: an
// emulator at 1,000× speed, its wire log, and the config for the mixed input.
func warmRun(t *testing.T, b jobstest.Backend, mode string) (*env, *wireLog, batch.Config) {
	t.Helper()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	e.onBackend(t, b)
	w := e.proxy(t)
	return e, w, e.warmConfig(t, mode)
}

// warmConfig is e's config for the mixed input in one batch, realtime workers
// at hand.
func (e *env) warmConfig(t *testing.T, mode string) batch.Config {
	cfg := e.config(writeLines(t, filepath.Join(e.dir, "mixed.jsonl"), mixedLines()), 0)
	cfg.CacheWarm = mode
	cfg.Realtime = runner.Config{MaxConcurrency: 8, MaxAttempts: 3}
	return cfg
}

// TestCacheWarmRealtimeBatchReads runs the mixed input (prefixes of 6, 2 and 3
// lines, 4 lines without cache_control) in one batch against the emulator's
// best-effort batch cache (groups of 4), with --cache-warm realtime and off, on
// each store backend. Warmed: the 6- and 3-line prefixes' first lines go through
// realtime once each (their one result, a cache write), every other line of them
// is in the batch and reads the prefix; the 2-line prefix, where warming does
// not pay, is not warmed; the lines without cache_control are in the batch.
// Off: no Messages call, and the batch writes the big prefix on more than one
// line (what warming avoids).
func TestCacheWarmRealtimeBatchReads(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			// off first: the precondition that the batch alone writes the big prefix
			// more than once.
			_, offLog, cfg := warmRun(t, b, batch.CacheWarmOff)
			if sum := run(t, cfg); sum.Succeeded != 15 || sum.WarmedPrefixes != 0 {
				t.Fatalf("off: Run() = %d succeeded, %d warmed; want 15, 0", sum.Succeeded, sum.WarmedPrefixes)
			}
			offRes := resultsByID(t, cfg.Output)
			writes := 0
			for q := range 6 {
				if offRes[fmt.Sprintf("big-q%d", q)].write > 0 {
					writes++
				}
			}
			if writes < 2 || len(offLog.Messages()) != 0 {
				t.Fatalf("off: %d big lines wrote the prefix, %d Messages calls; want ≥ 2 (best effort), 0", writes, len(offLog.Messages()))
			}

			_, w, cfg := warmRun(t, b, batch.CacheWarmRealtime)
			var progress testkit.Buffer
			cfg.Progress = &progress
			sum := run(t, cfg)
			if sum.Succeeded != 15 || sum.WarmedPrefixes != 2 || sum.WarmSkipped != 1 || sum.WarmCostUSD <= 0 {
				t.Errorf("Run() = %d succeeded, %d prefixes warmed ($%v), %d not; want 15, 2 (> $0), 1", sum.Succeeded, sum.WarmedPrefixes, sum.WarmCostUSD, sum.WarmSkipped)
			}
			inBatches, realtime := sentIDs(t, w)
			if len(realtime) != 2 || realtime["big-q0"] != 1 || realtime["tri-q0"] != 1 {
				t.Errorf("Messages calls by line = %v, want big-q0 and tri-q0 once each", realtime)
			}
			res := resultsByID(t, cfg.Output)
			if len(res) != 15 {
				t.Errorf("results for %d custom_ids, want 15", len(res))
			}
			for id, r := range res {
				if r.lines != 1 {
					t.Errorf("%s has %d result lines, want 1", id, r.lines)
				}
				warmLine := id == "big-q0" || id == "tri-q0"
				if n := inBatches[id]; (n == 0) != warmLine || n > 1 {
					t.Errorf("%s is in %d batches (warm line %v), want 1, or 0 for a warm line", id, n, warmLine)
				}
				switch {
				case warmLine:
					if r.write < 5000 {
						t.Errorf("warm line %s wrote %d cache tokens, want the prefix (≥ 5,000)", id, r.write)
					}
				case strings.HasPrefix(id, "big-") || strings.HasPrefix(id, "tri-"):
					if r.read < 5000 || r.write != 0 {
						t.Errorf("%s in the batch after its warm call: read %d, wrote %d; want the prefix read, nothing written", id, r.read, r.write)
					}
				case strings.HasPrefix(id, "plain-"):
					if r.read != 0 || r.write != 0 {
						t.Errorf("%s (no cache_control): read %d, wrote %d; want 0, 0", id, r.read, r.write)
					}
				}
			}
			if got := strings.Join(sum.Lines(), "\n"); !strings.Contains(got, "2 prefixes warmed in realtime before their batch ($") ||
				!strings.Contains(got, "1 where warming did not pay") || !strings.Contains(got, "prompt cache: reads ") {
				t.Errorf("Summary.Lines() = %s; want the warmed prefixes, their cost and the read share", got)
			}
			if !regexp.MustCompile(`created: 13 requests, \d+ bytes, prompt-cache prefixes 3 \(run: 2 prefixes warmed in realtime, \$[0-9.]+ so far\)`).MatchString(progress.String()) {
				t.Errorf("progress has no batch-created line with the warmed prefixes:\n%s", progress.String())
			}
		})
	}
}

// TestCacheWarmSkipsWhereItDoesNotPay runs the mixed input with --cache-warm
// realtime and --cache-warm-group 1 (a batch assumed to write a cold prefix
// once, as the emulator's --batch-cache-group 1 does): warming pays for no
// prefix, so none is warmed, no Messages call is made, and the create bodies
// are byte for byte those of off. With the default 4 the same input warms two
// prefixes (TestCacheWarmRealtimeBatchReads): the rule, not the input, decides.
func TestCacheWarmSkipsWhereItDoesNotPay(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000, BatchCacheGroup: 1})
	w := e.proxy(t)
	cfg := e.warmConfig(t, batch.CacheWarmRealtime)
	cfg.MaxRequests, cfg.CacheWarmGroup = 7, 1
	sum := run(t, cfg)
	if sum.Succeeded != 15 || sum.WarmedPrefixes != 0 || sum.WarmSkipped != 3 {
		t.Errorf("Run() = %d succeeded, %d prefixes warmed, %d not; want 15, 0, 3 (each prefix decided, none paid)", sum.Succeeded, sum.WarmedPrefixes, sum.WarmSkipped)
	}
	if n := len(w.Messages()); n != 0 {
		t.Errorf("%d Messages calls, want 0", n)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "warm_off_bodies.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if got := bodyDigest(w.Creates()); got != string(want) {
		t.Errorf("create bodies (size sha256) =\n%s\nwant those of off\n%s", got, want)
	}
}

// TestCacheWarmResumeSendsWarmLineOnce stops the run (AfterWarm: as a crash)
// once the warm calls of the mixed input are answered and before its batch is
// created, then runs it again, on each store backend: the warm lines were sent
// once, in realtime, and are in no batch; the prefixes are found warm in the
// store (no second warm call); the batch reads them; every custom_id has one
// result.
func TestCacheWarmResumeSendsWarmLineOnce(t *testing.T) {
	t.Parallel()
	for _, b := range jobstest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			_, w, cfg := warmRun(t, b, batch.CacheWarmRealtime)
			crash := errors.New("crash between the warm calls and the batch")
			cfg.Test.AfterWarm = func() error { return crash }
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := batch.Run(ctx, cfg); !errors.Is(err, crash) {
				t.Fatalf("first Run() error = %v, want the crash", err)
			}
			// Precondition: stopped between the warm calls and the batch.
			_, realtime := sentIDs(t, w)
			if len(w.Creates()) != 0 || realtime["big-q0"] != 1 || realtime["tri-q0"] != 1 {
				t.Fatalf("at the crash: %d batches created, Messages calls %v; want 0, big-q0 and tri-q0 once each", len(w.Creates()), realtime)
			}

			cfg.Test.AfterWarm = nil
			sum := run(t, cfg)
			if sum.Succeeded != 15 || sum.WarmedPrefixes != 0 || sum.Batches != 1 {
				t.Errorf("resumed Run() = %d succeeded, %d prefixes warmed, %d batches; want 15, 0 (warm in the store), 1", sum.Succeeded, sum.WarmedPrefixes, sum.Batches)
			}
			inBatches, realtime := sentIDs(t, w)
			if len(realtime) != 2 || realtime["big-q0"] != 1 || realtime["tri-q0"] != 1 {
				t.Errorf("Messages calls by line after the resume = %v, want big-q0 and tri-q0 once each", realtime)
			}
			if inBatches["big-q0"]+inBatches["tri-q0"] != 0 || len(inBatches) != 13 {
				t.Errorf("batches hold %d custom_ids (big-q0 %d, tri-q0 %d times), want the 13 others", len(inBatches), inBatches["big-q0"], inBatches["tri-q0"])
			}
			res := resultsByID(t, cfg.Output)
			if len(res) != 15 {
				t.Errorf("results for %d custom_ids, want 15", len(res))
			}
			for id, r := range res {
				if r.lines != 1 {
					t.Errorf("%s has %d result lines, want 1", id, r.lines)
				}
				if (strings.HasPrefix(id, "big-") || strings.HasPrefix(id, "tri-")) && !strings.HasSuffix(id, "-q0") && (r.read < 5000 || r.write != 0) {
					t.Errorf("%s in the resumed batch: read %d, wrote %d; want the prefix read", id, r.read, r.write)
				}
			}
		})
	}
}

// TestCacheWarmWithinQueueRoom runs the mixed input with a processing queue of
// 7 requests: the first fill has room for the 6-line prefix only, so only it is
// warmed before the first batch; the 3-line prefix is warmed once a later fill
// reaches it (after the first batch was created), not ahead of its batch,
// where its TTL could run out first.
func TestCacheWarmWithinQueueRoom(t *testing.T) {
	t.Parallel()
	e := setup(t, emulator.Config{ClockSpeed: 1000})
	w := e.proxy(t)
	cfg := e.warmConfig(t, batch.CacheWarmRealtime)
	cfg.QueueLimit = 7
	sum := run(t, cfg)
	if sum.Succeeded != 15 || sum.WarmedPrefixes != 2 || sum.Batches < 2 {
		t.Fatalf("Run() = %d succeeded, %d prefixes warmed, %d batches; want 15, 2, ≥ 2", sum.Succeeded, sum.WarmedPrefixes, sum.Batches)
	}
	w.mu.Lock()
	order := strings.Join(w.order, " ")
	w.mu.Unlock()
	if !strings.HasPrefix(order, "messages create ") || strings.Count(order, "messages") != 2 {
		t.Errorf("calls in order: %s; want one warm call, a batch, then the second warm call later", order)
	}
	_, realtime := sentIDs(t, w)
	if realtime["big-q0"] != 1 || realtime["tri-q0"] != 1 {
		t.Errorf("Messages calls by line = %v, want big-q0 and tri-q0 once each", realtime)
	}
	if first := w.Messages()[0]; !bytes.Contains(first, []byte("Question 0 about big?")) {
		t.Errorf("first warm call: %.100s…, want big-q0's", first[len(first)-100:])
	}
}
