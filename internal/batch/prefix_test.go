package batch_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/testkit"
	"github.com/clade-dev/clade/internal/upstream"
)

// interleaved returns docs prompt-cache prefixes' questions, perDoc each, in
// rounds (a0 b0 c0 a1 b1 c1 ...): each document (~5,000 tokens, over haiku's
// minimum) in a cache_control block, then its question.
func interleaved(docs, perDoc int) []string {
	var lines []string
	for q := range perDoc {
		for d := range docs {
			doc := strings.Repeat(fmt.Sprintf("document %c. ", 'a'+d), 20000/12)
			lines = append(lines, fmt.Sprintf(`{"custom_id":"%c%d","params":{"model":"claude-haiku-4-5","max_tokens":32,"messages":[{"role":"user","content":[{"type":"text","text":%q,"cache_control":{"type":"ephemeral"}},{"type":"text","text":"Question %d?"}]}]}}`, 'a'+d, q, doc, q))
		}
	}
	return lines
}

// laterClock is the emulator's real-time clock (its prompt cache's TTLs) with a
// jump: after moves it forward by more than the 5-minute TTL, so that no cache
// entry outlives a batch, as when the API processes batches minutes apart.
type laterClock struct{ offset atomic.Int64 }

func (c *laterClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *laterClock) after()         { c.offset.Add(int64(6 * time.Minute)) }

// batchGroups returns the custom_ids of each batch of the store, sorted, in the
// order the batches were made.
func (e *env) batchGroups(t *testing.T) [][]string {
	t.Helper()
	ctx := context.Background()
	recs, err := e.store.Batches(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, r := range recs {
		items, err := e.store.BatchItems(ctx, r.Row)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, it := range items {
			ids = append(ids, it.CustomID)
		}
		slices.Sort(ids)
		out = append(out, ids)
	}
	return out
}

func writeLines(t *testing.T, path string, lines []string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBatchGroupsPrefixLines runs 3 prefixes × 5 questions, interleaved, in
// batches of 5, one at a time, the emulator's cache emptied between batches and
// its batch cache in request order (BatchCacheGroup 1): each
// batch holds one prefix's lines, so each writes its document once and reads it 4
// times. The same lines sent in batches of 5 in input order (as clade did before
// it grouped them) hold 3 prefixes each and read a smaller share from the cache.
func TestBatchGroupsPrefixLines(t *testing.T) {
	t.Parallel()
	var clock laterClock
	e := setup(t, emulator.Config{ClockSpeed: 1, Now: clock.now, BatchCacheGroup: 1})
	lines := interleaved(3, 5)
	cfg := e.config(writeLines(t, filepath.Join(e.dir, "interleaved.jsonl"), lines), 5)
	cfg.QueueLimit = 5 // one batch at a time: each is judged after the last one's entries expired
	cfg.Test.AfterCreate = func(*upstream.Batch) error { clock.after(); return nil }
	var progress testkit.Buffer
	cfg.Progress = &progress
	sum := run(t, cfg)
	if sum.Succeeded != 15 || sum.Batches != 3 {
		t.Fatalf("Run() = %d succeeded in %d batches, want 15 in 3", sum.Succeeded, sum.Batches)
	}
	groups := e.batchGroups(t)
	for _, g := range groups {
		for _, id := range g {
			if id[0] != g[0][0] {
				t.Errorf("a batch holds %v: more than one prefix", g)
				break
			}
		}
	}
	if n := len(regexp.MustCompile(`created: 5 requests, \d+ bytes, prompt-cache prefixes 1\n`).FindAllString(progress.String(), -1)); n != 3 {
		t.Errorf("progress has %d batch-created lines with 1 prefix, want 3:\n%s", n, progress.String())
	}
	grouped := float64(sum.CacheReadTokens) / float64(sum.BatchInputTokens)

	// The baseline: the same lines in batches of 5 in input order, on the same
	// emulator, the clock moved on as before.
	clock.after()
	var read, write, in int64
	ctx := context.Background()
	for start := 0; start < len(lines); start += 5 {
		body := `{"requests":[` + strings.Join(lines[start:start+5], ",") + `]}`
		b, err := e.client.CreateBatch(ctx, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		clock.after()
		for b.ProcessingStatus != "ended" {
			if b, err = e.client.GetBatch(ctx, b.ID); err != nil {
				t.Fatal(err)
			}
		}
		rr, err := e.client.Results(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		for rr.Next() {
			u := rr.Result().Usage
			if u == nil {
				t.Fatalf("result %s has no usage", rr.Result().CustomID)
			}
			read += u.CacheReadInputTokens
			write += u.CacheCreationInputTokens
			in += u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
		}
		if err := errors.Join(rr.Err(), rr.Close()); err != nil {
			t.Fatal(err)
		}
	}
	inputOrder := float64(read) / float64(in)
	// Preconditions: one write per prefix per batch, the cache empty at each batch.
	if sum.CacheWriteTokens*3 != write {
		t.Fatalf("cache writes grouped %d, input order %d: want 3 times as many in input order (3 prefixes a batch, none carried over)",
			sum.CacheWriteTokens, write)
	}
	t.Logf("cache read share: grouped %.1f %%, input order %.1f %%", 100*grouped, 100*inputOrder)
	if grouped <= inputOrder {
		t.Errorf("cache read share grouped %.3f, input order %.3f: want grouped higher", grouped, inputOrder)
	}
}

// TestBatchGroupsSameOnResume: a run stopped right after its first create (the
// batch at the API, its id not recorded) and resumed forms the batches an
// uninterrupted run forms, a prefix split across two batches included.
func TestBatchGroupsSameOnResume(t *testing.T) {
	t.Parallel()
	lines := interleaved(3, 5)
	// Batches of 3: a (5 lines) takes the first and 2 of the second.
	want := [][]string{{"a0", "a1", "a2"}, {"a3", "a4", "b0"}, {"b1", "b2", "b3"}, {"b4", "c0", "c1"}, {"c2", "c3", "c4"}}

	whole := setup(t, emulator.Config{ClockSpeed: 1000})
	cfg := whole.config(writeLines(t, filepath.Join(whole.dir, "interleaved.jsonl"), lines), 3)
	cfg.QueueLimit = 3
	if sum := run(t, cfg); sum.Succeeded != 15 {
		t.Fatalf("Run() = %d succeeded, want 15", sum.Succeeded)
	}
	if got := whole.batchGroups(t); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("uninterrupted run's batches = %v, want %v", got, want)
	}

	e := setup(t, emulator.Config{ClockSpeed: 1000})
	cfg = e.config(writeLines(t, filepath.Join(e.dir, "interleaved.jsonl"), lines), 3)
	cfg.QueueLimit = 3
	crash := errors.New("crash after the first create")
	cfg.Test.AfterCreate = func(*upstream.Batch) error { return crash }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := batch.Run(ctx, cfg); !errors.Is(err, crash) {
		t.Fatalf("Run() with a crash on the first create: error = %v, want %v", err, crash)
	}
	if got := e.batchGroups(t); len(got) != 1 {
		t.Fatalf("after the crash the store has batches %v, want 1", got)
	}
	cfg.Test.AfterCreate = nil
	if sum := run(t, cfg); sum.Succeeded != 15 {
		t.Fatalf("resumed Run() = %d succeeded, want 15", sum.Succeeded)
	}
	if bs := e.apiBatches(t); len(bs) != 5 || requestsIn(bs) != 15 {
		t.Errorf("emulator holds %d batches of %d requests, want 5 of 15 (the first adopted, not sent again)", len(bs), requestsIn(bs))
	}
	if got := e.batchGroups(t); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("resumed run's batches = %v, want %v", got, want)
	}
}
