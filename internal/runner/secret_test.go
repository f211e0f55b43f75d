package runner_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/lifecycle"
	"github.com/clade-dev/clade/internal/runner"
	"github.com/clade-dev/clade/internal/upstream"
)

// TestKeyNeverLeaks runs a workload with a distinctive key, debug logs, metrics and
// some final errors, and looks for the key everywhere a run writes.
func TestKeyNeverLeaks(t *testing.T) {
	t.Parallel()
	key := "sk-ant-leakcheck-" + strings.Repeat("Z", 30)
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}})
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(key), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := jobs.Open(context.Background(), filepath.Join(dir, "run.db"), jobs.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	input := writeInput(t, dir, 40,
		`{"custom_id":"final-error","params":{"model":"claude-haiku-4-5","max_tokens":999999,"messages":[{"role":"user","content":"x"}]}}`)
	out := filepath.Join(dir, "results.jsonl")
	reg := prometheus.NewRegistry()
	var progress bytes.Buffer
	if _, err := runner.Run(context.Background(), runner.Config{Spec: lifecycle.Spec{Store: st, Client: client, Input: input, Output: out,
		Registry: reg, Logger: log, Progress: &progress}}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st.Close()

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&metrics, mf)
	}
	if !strings.Contains(metrics.String(), "clade_run_results_total") {
		t.Fatalf("metrics lack clade_run_results_total:\n%s", metrics.String())
	}
	places := map[string][]byte{"logs": logs.Bytes(), "metrics": metrics.Bytes(), "progress": progress.Bytes()}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		places[filepath.Base(f)] = b
	}
	for where, b := range places {
		if bytes.Contains(b, []byte(key)) || bytes.Contains(b, []byte(key[10:])) {
			t.Errorf("the API key (or a part of it) appears in %s", where)
		}
	}
	if !bytes.Contains(places["results.jsonl"], []byte("invalid_request_error")) {
		t.Errorf("the final error's envelope is missing from the results")
	}
}
