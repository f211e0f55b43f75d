package runner_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
)

// A process whose heartbeat the store cannot take for its dead-after window
// (here: another connection holds SQLite's write lock) stops at once with
// ErrLostStore: its jobs are the other processes' now. The same command run
// again finishes the run, each request with one result.
func TestRunStopsWhenTheStoreLosesIt(t *testing.T) {
	t.Parallel()
	client, st, dir := setup(t, emulator.Config{Tier: "tier-4", LatencyScale: 1})
	input := writeInput(t, dir, 200)
	out := filepath.Join(dir, "results.jsonl")
	cfg := runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Output: out, Tier: "tier-4"},
		MaxConcurrency: 8, Test: runner.TestHooks{Heartbeat: []jobs.WorkerOption{jobs.WithHeartbeat(150*time.Millisecond, 1500*time.Millisecond)}}}
	ctx := context.Background()
	type result struct {
		sum *runner.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := runner.Run(ctx, cfg)
		done <- result{sum, err}
	}()
	// Once results flow, take the write lock and keep it past the dead-after window.
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := st.Status(ctx, 1)
		if err == nil && s.Requests > 0 && s.Requests-s.Pending >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no result within 30 s")
		}
		select {
		case res := <-done: // 600 ms of dead-after once lost the store under CI's load before any result
			t.Fatalf("Run ended before the store was locked: %+v, %v", res.sum, res.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "run.db")+"?_pragma=busy_timeout(1000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked := time.Now()
	var res result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run went on 20 s after the store stopped taking its heartbeat")
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.err, runner.ErrLostStore) {
		t.Fatalf("Run = %v, want ErrLostStore", res.err)
	}
	if res.sum == nil || res.sum.Pending == 0 {
		t.Fatalf("Run stopped with %+v: the run had finished, the loss was not exercised", res.sum)
	}
	t.Logf("stopped %v after the lock, %d results left", time.Since(locked).Round(time.Millisecond), res.sum.Pending)
	cfg.MaxConcurrency = 128
	cfg.Test.Heartbeat = nil // the defaults: 600 ms is too short for SQLite's one writer under load
	sum, err := runner.Run(ctx, cfg)
	if err != nil || sum.Succeeded != 200 || sum.Pending != 0 {
		t.Fatalf("the same run again = %+v, %v; want 200 succeeded", sum, err)
	}
}
