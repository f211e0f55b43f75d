package batch_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/batch"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/upstream"
)

// BenchmarkBatchRun is a whole clade batch run of 20,000 short requests in one batch
// that the emulator ends at once: import, the create body, one poll, and reading
// 20,000 result lines into the store and the results file, which dominates. It
// reports result lines per second of the whole run.
//
//	go test -run '^$' -bench BatchRun -benchtime 5x ./internal/batch
func BenchmarkBatchRun(b *testing.B) {
	const n = 20_000
	em := emulator.StartTB(b, emulator.Config{Tier: "tier-4", ClockSpeed: 1e6, BatchProcessingRate: 1e6})
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(testKey)})
	if err != nil {
		b.Fatal(err)
	}
	e := &env{em: em, client: client}
	var lines bytes.Buffer
	for i := range n {
		fmt.Fprintf(&lines, `{"custom_id":"req-%05d","params":{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"question %d"}]}}`+"\n", i, i)
	}
	in := filepath.Join(b.TempDir(), "input.jsonl")
	if err := os.WriteFile(in, lines.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		db := filepath.Join(dir, "run.db")
		if err := os.WriteFile(db, templateDB, 0o644); err != nil {
			b.Fatal(err)
		}
		st, err := jobs.Open(context.Background(), db)
		if err != nil {
			b.Fatal(err)
		}
		e.store, e.dir = st, dir
		cfg := e.config(in, n)
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		sum, err := batch.Run(ctx, cfg)
		cancel()
		if err != nil || sum.Succeeded != n {
			b.Fatalf("Run() = %+v, %v; want %d succeeded", sum, err, n)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "lines/s")
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
}
