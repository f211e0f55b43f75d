package runner_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/upstream"
)

// sharedProc is one of several runner processes on one store: its own store
// handle, and its own recorder in front of the one emulator, so that the test
// knows which process sent what.
type sharedProc struct {
	rc     *cacheRecorder
	client *upstream.Client
	store  *jobs.Store
	out    string
}

func sharedProcs(t *testing.T, em *emulator.Server, dsn string, n int) []*sharedProc {
	t.Helper()
	ps := make([]*sharedProc, n)
	for i := range ps {
		rc := &cacheRecorder{next: em}
		srv := httptest.NewServer(rc)
		t.Cleanup(srv.Close)
		client, err := upstream.New(upstream.Config{BaseURL: srv.URL, APIKey: upstream.NewSecret(testKey)})
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = &sharedProc{rc: rc, client: client, store: jobstest.Open(t, context.Background(), dsn),
			out: filepath.Join(t.TempDir(), "results.jsonl")}
	}
	return ps
}

// TestCacheWarmthSharedByProcesses: two processes work one run of K documents ×
// M questions on one store (a SQLite file, Postgres). Sharing the warmth
// through the store, they send K warming requests in all (the emulator sees K
// cache writes), and no request of a document reaches the emulator, from either
// process, before its warming answer started. The same run with the warmth
// per process (CacheNotShared) warms a document in each process that works it:
// the check can see a violation. Both processes must have worked some document
// together, or the test saw nothing: each works 12 jobs at once (3 in flight,
// cacheWorkers per slot), fewer than the run's 32, so neither takes them all.
func TestCacheWarmthSharedByProcesses(t *testing.T) {
	t.Parallel()
	const docs, questions, procs = 4, 8, 2
	for _, b := range jobstest.Backends() {
		for _, notShared := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/not shared=%v", b.Name, notShared), func(t *testing.T) {
				t.Parallel()
				dsn := b.NewDSN(t)
				// Sonnet 5's 700 ms to first token at scale 0.3: 210 ms.
				em, err := emulator.New(emulator.Config{Tier: "tier-4", LatencyScale: 0.3, Output: emulator.OutputModel{MedianTokens: 4}})
				if err != nil {
					t.Fatal(err)
				}
				lines := docLines(docs, questions)
				input := writeLines(t, t.TempDir(), lines)
				ps := sharedProcs(t, em, dsn, procs)
				sums := make([]*runner.Summary, procs)
				errs := make([]error, procs)
				var wg sync.WaitGroup
				for i, p := range ps {
					wg.Go(func() {
						sums[i], errs[i] = runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: p.store, Client: p.client,
							Input: input, Output: p.out, Tier: "tier-4"}, MaxConcurrency: 3,
							Test: runner.TestHooks{CacheNotShared: notShared, CachePoll: 20 * time.Millisecond}})
					})
				}
				wg.Wait()
				var warmed int64
				for i := range ps {
					if errs[i] != nil {
						t.Fatalf("process %d: Run = %v", i, errs[i])
					}
					warmed += sums[i].Warmed
				}
				// Who sent each document, and did any request go before its
				// document's first answer started?
				both, early := 0, 0
				for d := range docs {
					mark := []byte(fmt.Sprintf("document %d: ", d))
					var group []seenRequest
					senders := 0
					for _, p := range ps {
						n := 0
						for _, s := range p.rc.all() {
							if bytes.Contains(s.body, mark) {
								group = append(group, s)
								n++
							}
						}
						if n > 0 {
							senders++
						}
					}
					if senders == procs {
						both++
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
				if both == 0 {
					t.Fatalf("no document was sent by both processes (Warmed %d): the test could not see sharing", warmed)
				}
				writes := 0
				got := usages(t, ps[0].out)
				if len(got) != len(lines) {
					t.Fatalf("%d results, want %d", len(got), len(lines))
				}
				for _, u := range got {
					if u.Write > 0 {
						writes++
					}
				}
				t.Logf("documents worked by both processes: %d of %d; warming requests %d; cache writes %d; early requests %d",
					both, docs, warmed, writes, early)
				if !notShared {
					if warmed != docs || writes != docs || early != 0 {
						t.Errorf("shared: %d warming requests, %d cache writes, %d requests before their warming answer started; want %d, %d, 0",
							warmed, writes, early, docs, docs)
					}
				} else if warmed <= docs {
					t.Errorf("not shared: %d warming requests with %d documents worked by both processes; want more than %d (the test could not see a violation)",
						warmed, both, docs)
				}
			})
		}
	}
}

// TestCacheClaimOfAStuckProcessTakenOver: every prefix is claimed in the store
// by a process that never marks it warm (a live worker whose warming request
// never answers). The run waits for each claim until its timeout, then warms
// each prefix itself, once, and finishes.
func TestCacheClaimOfAStuckProcessTakenOver(t *testing.T) {
	t.Parallel()
	const docs, questions, timeout = 2, 4, 700 * time.Millisecond
	rc, client, st, dir := cacheSetup(t, emulator.Config{Tier: "tier-4", LatencyScale: 0.1, Output: emulator.OutputModel{MedianTokens: 4}})
	lines := docLines(docs, questions)
	input := writeLines(t, dir, lines)
	ctx := context.Background()
	run, _, err := st.Import(ctx, jobs.ImportOptions{Path: input})
	if err != nil {
		t.Fatal(err)
	}
	stuck, err := st.Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "run.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT DISTINCT model, cache_prefix FROM clade_request WHERE run_id = ?`, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	var keys []jobs.CachePrefix
	for rows.Next() {
		k := jobs.CachePrefix{RunID: run.ID}
		if err := rows.Scan(&k.Model, &k.Key); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil || len(keys) != docs {
		t.Fatalf("prefixes stored: %v, %v; want %d", keys, err, docs)
	}
	claimed := time.Now()
	for _, k := range keys {
		if w, err := st.ClaimCacheWarm(ctx, k, stuck.ID(), 30*time.Second, timeout); err != nil || !w.Mine {
			t.Fatalf("ClaimCacheWarm(%v) = %+v, %v; want the claim", k, w, err)
		}
	}
	sum, err := runner.Run(ctx, runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input,
		Output: filepath.Join(dir, "results.jsonl"), Tier: "tier-4"}, MaxConcurrency: 8,
		Test: runner.TestHooks{CachePoll: 20 * time.Millisecond}})
	if err != nil || sum.Succeeded != docs*questions {
		t.Fatalf("Run = %+v, %v; want %d succeeded", sum, err, docs*questions)
	}
	if sum.Warmed != docs {
		t.Errorf("Summary.Warmed = %d, want %d (each prefix warmed once, after the claim died)", sum.Warmed, docs)
	}
	all := rc.all()
	if len(all) != docs*questions {
		t.Fatalf("%d requests sent, want %d", len(all), docs*questions)
	}
	for _, s := range all {
		if s.arrived.Before(claimed.Add(timeout)) {
			t.Fatalf("a request arrived %s after the claims, before their %s timeout: the claim was not waited for",
				s.arrived.Sub(claimed), timeout)
		}
	}
}

// TestCacheWarmthTableOnlyWithCacheControl: a run without cache_control lines
// writes no row of the shared warmth; the same run with a cacheable prefix
// writes one (the check can see a row).
func TestCacheWarmthTableOnlyWithCacheControl(t *testing.T) {
	t.Parallel()
	for _, withCache := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache_control=%v", withCache), func(t *testing.T) {
			t.Parallel()
			client, st, dir := setup(t, emulator.Config{Tier: "tier-4", LatencyScale: 0.05, Output: emulator.OutputModel{MedianTokens: 4}})
			var input string
			if withCache {
				input = writeLines(t, dir, []string{docLine("a", document(0), "q?"), docLine("b", document(0), "r?")})
			} else {
				input = writeInput(t, dir, 20)
			}
			sum, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input,
				Output: filepath.Join(dir, "results.jsonl"), Tier: "tier-4"}, MaxConcurrency: 8})
			if err != nil || sum.Errored != 0 {
				t.Fatalf("Run = %+v, %v", sum, err)
			}
			db, err := sql.Open("sqlite", filepath.Join(dir, "run.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow(`SELECT count(*) FROM clade_cache_warm`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{false: 0, true: 1}[withCache]; n != want {
				t.Errorf("clade_cache_warm rows = %d, want %d", n, want)
			}
		})
	}
}
