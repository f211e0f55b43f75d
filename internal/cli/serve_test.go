package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestServeCLIServesAndDrains runs `clade serve` as main does against its built-in
// emulator, calls it with the SDK and a client key from the keys file, reads its live
// view, then cancels it (SIGINT in main) while a call is in flight: the call
// finishes, and clade serve exits cleanly.
func TestServeCLIServesAndDrains(t *testing.T) {
	t.Parallel()
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(keys, []byte("keys:\n  ck-search-0001: {team: search, weight: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"serve", "--emulate", "tier-4", "--listen", "127.0.0.1:0", "--client-keys", keys},
			strings.NewReader(""), &stdout, &stderr)
	}()
	base := waitBaseURL(t, "serve", &stderr, &stdout, done)
	client := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(base),
		option.WithAPIKey("ck-search-0001"), option.WithMaxRetries(0))
	params := anthropic.MessageNewParams{Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 20,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}}
	if m, err := client.Messages.New(ctx, params); err != nil || m.Usage.OutputTokens == 0 {
		t.Fatalf("Messages.New through clade serve = %+v, %v", m, err)
	}

	var st struct {
		Tier    string `json:"tier"`
		Classes []struct {
			Class          string `json:"class"`
			RequestsPerMin int64  `json:"requests_per_min"`
			LimitRPM       int64  `json:"limit_rpm"`
		} `json:"classes"`
		Queued map[string]int `json:"queued"`
	}
	resp, err := http.Get(base + "/_clade/status")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.Tier != "tier-4" || len(st.Classes) != 1 || st.Classes[0].RequestsPerMin != 1 || st.Classes[0].LimitRPM != 4000 {
		t.Errorf("/_clade/status = %+v, %v; want tier-4 with one class at 1 request of 4,000/min", st, err)
	}
	if _, ok := st.Queued["search"]; !ok {
		t.Errorf("/_clade/status queued = %v, want team search listed", st.Queued)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `clade_serve_requests_total{code="200",endpoint="messages",team="search"} 1`) {
		t.Errorf("/metrics lacks the call of team search:\n%s", metrics)
	}

	// A streaming call with the emulator's modelled latency is in flight when clade
	// serve is told to stop; it must still finish.
	type outcome struct {
		msg anthropic.Message
		err error
	}
	got := make(chan outcome, 1)
	go func() {
		var o outcome
		s := client.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{Model: anthropic.ModelClaudeHaiku4_5,
			MaxTokens: 200, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("a long story"))}})
		for s.Next() {
			o.msg.Accumulate(s.Current())
		}
		o.err = s.Err()
		s.Close()
		got <- o
	}()
	for !strings.Contains(metricsText(t, base), "clade_serve_upstream_in_flight 1") {
		select {
		case o := <-got:
			t.Fatalf("the stream ended before clade serve was stopped (%v); the test needs it in flight", o.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	o := <-got
	if o.err != nil || o.msg.StopReason == "" {
		t.Errorf("stream in flight at shutdown = %+v, %v; want it finished", o.msg, o.err)
	}
	if code := <-done; code != cli.ExitOK {
		t.Errorf("clade serve exited %d, want 0\nstderr:\n%s", code, stderr.String())
	}
	if _, err := http.Get(base + "/_clade/status"); err == nil {
		t.Errorf("clade serve still answers after it stopped")
	}
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestServeCLIUsage checks the help and the refusals a user meets first.
func TestServeCLIUsage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{name: "help", args: []string{"serve", "--help"}, code: cli.ExitOK,
			contains: []string{"ANTHROPIC_BASE_URL", "--client-keys", "--limits-redis", "--max-wait", "Examples:", "127.0.0.1:8080"}},
		{name: "open listener without client keys", args: []string{"serve", "--emulate", "tier-1", "--listen", "0.0.0.0:0"},
			code: cli.ExitUsage, contains: []string{"Error: --listen 0.0.0.0:0 reaches beyond this machine", "Try: clade serve"}},
		{name: "bad keys file", args: []string{"serve", "--emulate", "tier-1", "--client-keys", "/nonexistent/keys.yaml"},
			code: cli.ExitUsage, contains: []string{"Error: client keys", "Try: clade serve --client-keys"}},
		{name: "upstream is the gateway itself", args: []string{"serve", "--listen", "127.0.0.1:18080", "--base-url", "http://localhost:18080"},
			code: cli.ExitUsage, contains: []string{"calls would loop", "Try: clade serve --base-url https://api.anthropic.com"}},
		{name: "bad tier", args: []string{"serve", "--tier", "tier-99"}, code: cli.ExitUsage, contains: []string{"Error: --tier"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr testkit.Buffer
			code := cli.Run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tt.code {
				t.Errorf("clade %s exited %d, want %d\n%s", strings.Join(tt.args, " "), code, tt.code, out)
			}
			for _, want := range tt.contains {
				if !strings.Contains(out, want) {
					t.Errorf("clade %s output lacks %q:\n%s", strings.Join(tt.args, " "), want, out)
				}
			}
		})
	}
}

// TestServeCLIShutdownCuts: a stream still in flight when --shutdown-timeout runs out
// after the first signal is cut off: the client sees it break off (an error, not a
// short answer), and clade serve exits with a failure that says calls were cut off.
func TestServeCLIShutdownCuts(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"serve", "--emulate", "tier-4", "--listen", "127.0.0.1:0", "--shutdown-timeout", "200ms"},
			strings.NewReader(""), &stdout, &stderr)
	}()
	base := waitBaseURL(t, "serve", &stderr, &stdout, done)
	client := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(base),
		option.WithAPIKey("ck-any-000001"), option.WithMaxRetries(0))
	// 4,000 tokens at the emulator's modelled speed take far longer than 200ms.
	s := client.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{Model: anthropic.ModelClaudeHaiku4_5,
		MaxTokens: 4000, Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("a very long story"))}})
	if !s.Next() {
		t.Fatalf("stream gave no first event: %v", s.Err())
	}
	cancel()
	var acc anthropic.Message
	for s.Next() {
		acc.Accumulate(s.Current())
	}
	err := s.Err()
	s.Close()
	if err == nil {
		t.Errorf("stream in flight past --shutdown-timeout ended cleanly (stop_reason %q), want it cut off", acc.StopReason)
	}
	if code := <-done; code != cli.ExitFailure || !strings.Contains(stderr.String(), "cut off") {
		t.Errorf("clade serve exited %d, want %d saying calls were cut off\nstderr:\n%s", code, cli.ExitFailure, stderr.String())
	}
}
