package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/upstream"
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

// TestBatchSurvivesSIGKILL kills `clade batch` while its batches are in flight
// (some kills land between a create call and the store recording its id), then
// resumes it: every custom_id ends with exactly one result, and the emulator holds
// no batch beyond one per request (no batch was created twice).
func TestBatchSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	t.Parallel()
	const n = 600
	key := "sk-ant-crash-" + strings.Repeat("b", 24)
	// 0.4 requests per emulated second at 1,000×: 600 requests take 1.5 s.
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-4", APIKeys: []string{key}, ClockSpeed: 1000, BatchProcessingRate: 0.4})
	dir := t.TempDir()
	input, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeWorkload(t, input, n)
	args := []string{"batch", input, "-o", out, "--base-url", em.URL, "--tier", "tier-4", "--max-requests", "25", "--poll", "10ms"}
	var mu sync.Mutex
	var logs bytes.Buffer

	rng := rand.New(rand.NewPCG(3, 4))
	kills := 0
	for i := 0; i < 8 && kills < 4; i++ {
		cmd := cladeCmd(key, args...)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		created := make(chan struct{})
		scanned := make(chan struct{})
		go func() {
			defer close(scanned)
			once := sync.Once{}
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				mu.Lock()
				logs.WriteString(sc.Text() + "\n")
				mu.Unlock()
				if strings.Contains(sc.Text(), " created: ") {
					once.Do(func() { close(created) })
				}
			}
		}()
		done := make(chan error, 1)
		go func() { <-scanned; done <- cmd.Wait() }()
		select {
		case <-done: // finished before a kill
			i = 8
			continue
		case <-created:
		}
		time.Sleep(time.Duration(rng.IntN(15000)) * time.Microsecond) // a random point among the creates
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		kills++
	}
	cmd := cladeCmd(key, args...)
	var final bytes.Buffer
	cmd.Stdout, cmd.Stderr = &final, &final
	if err := cmd.Run(); err != nil {
		t.Fatalf("final run: %v\n%s", err, tail(final.String(), 3000))
	}
	seen := wantEachOnce(t, out, n)
	client, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(key)})
	if err != nil {
		t.Fatal(err)
	}
	page, err := client.ListBatches(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var sent int64
	for _, b := range page.Data {
		c := b.RequestCounts
		sent += c.Processing + c.Succeeded + c.Errored + c.Canceled + c.Expired
	}
	if sent != n {
		t.Errorf("the emulator's batches hold %d requests in all, want %d (a batch was created twice)", sent, n)
	}
	mu.Lock()
	adopted := strings.Count(logs.String(), " adopted: ")
	mu.Unlock()
	t.Logf("%d SIGKILLs (%d between a create and its record), then a resume: %d results in %d batches", kills, adopted, len(seen), len(page.Data))
}
