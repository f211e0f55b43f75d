package cli_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestEmulateServesUntilCancelled runs `clade emulate` as main does, reads the URL it
// prints, talks to it with the official SDK, then cancels (SIGINT in main) and expects
// a clean exit.
func TestEmulateServesUntilCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"emulate", "--addr", "127.0.0.1:0", "--latency-scale", "0", "--log-level", "debug"}, strings.NewReader(""), &stdout, &stderr)
	}()

	base := waitBaseURL(t, "emulate", &stdout, &stderr, done)
	if !strings.Contains(stdout.String(), "ANTHROPIC_API_KEY=anything") {
		t.Errorf("banner = %q, want it to say ANTHROPIC_API_KEY=anything", stdout.String())
	}

	client := anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(base),
		option.WithAPIKey("anything"),
		option.WithMaxRetries(0),
	)
	msg, err := client.Messages.New(ctx, anthropic.MessageNewParams{
		Model:     anthropic.ModelClaudeHaiku4_5,
		MaxTokens: 20,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))},
	})
	if err != nil {
		t.Fatalf("Messages.New against %s error: %v", base, err)
	}
	if msg.Role != "assistant" || msg.Usage.OutputTokens <= 0 {
		t.Errorf("Messages.New = %+v, want an assistant message with output", msg)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics error: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `clade_emulator_responses_total{class="haiku-4-5",code="200",endpoint="messages"} 1`) {
		t.Errorf("/metrics does not count the request:\n%s", body)
	}

	cancel()
	select {
	case code := <-done:
		if code != cli.ExitOK {
			t.Errorf("clade emulate exit code after cancel = %d, want 0\nstderr:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("clade emulate did not stop within 20s of cancel")
	}
	logs := stderr.String()
	for _, want := range []string{"emulator listening", "api request", "request_id=req_", "model_class=haiku-4-5", "emulator stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("stderr logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "hello") {
		t.Errorf("stderr logs contain the prompt:\n%s", logs)
	}
}

// TestEmulateUsageErrors checks that bad flags exit 2 with an Error line and a Try line.
func TestEmulateUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantTry string
	}{
		{name: "unknown flag", args: []string{"emulate", "--bogus"}, wantErr: "unknown flag: --bogus", wantTry: "clade emulate --help"},
		{name: "unknown tier", args: []string{"emulate", "--tier", "platinum"}, wantErr: `unknown tier "platinum"`, wantTry: "clade emulate --tier start"},
		{name: "negative latency", args: []string{"emulate", "--latency-scale", "-1"}, wantErr: "--latency-scale -1: want 0 or more", wantTry: "clade emulate --help"},
		{name: "not a number", args: []string{"emulate", "--seed", "abc"}, wantErr: `invalid argument "abc"`, wantTry: "clade emulate --help"},
		{name: "burst too big", args: []string{"emulate", "--burst-fraction", "2"}, wantErr: "--burst-fraction 2", wantTry: "clade emulate --help"},
		{name: "bad fraction", args: []string{"emulate", "--burst-fraction", "1/0"}, wantErr: "fraction such as 1/60", wantTry: "clade emulate --help"},
		{name: "error rate above 1", args: []string{"emulate", "--batch-error-rate", "1.5"}, wantErr: "--batch-error-rate 1.5: want from 0 to 1", wantTry: "clade emulate --help"},
		{name: "batch cache group 0", args: []string{"emulate", "--batch-cache-group", "0"}, wantErr: "--batch-cache-group 0: want 1 or more", wantTry: "clade emulate --help"},
		{name: "bad faults", args: []string{"emulate", "--faults", "meteor=0.5"}, wantErr: "--faults:", wantTry: "clade emulate --faults overloaded=0.05"},
		{name: "bad log format", args: []string{"emulate", "--log-format", "xml"}, wantErr: `--log-format "xml"`, wantTry: "clade emulate --log-format json"},
		{name: "bad log level", args: []string{"emulate", "--log-level", "loud"}, wantErr: `--log-level "loud"`, wantTry: "clade emulate --log-level info"},
		{name: "bad addr", args: []string{"emulate", "--addr", "8080"}, wantErr: `--addr "8080": want HOST:PORT`, wantTry: "clade emulate --addr 127.0.0.1:8080"},
		{name: "relative base url", args: []string{"emulate", "--base-url", "/x"}, wantErr: "--base-url", wantTry: "clade emulate --base-url"},
		{name: "missing catalog", args: []string{"emulate", "--catalog", "/nonexistent/catalog.yaml"}, wantErr: "read catalog", wantTry: "clade emulate (without --catalog"},
		{name: "stray argument", args: []string{"emulate", "now"}, wantErr: `unknown command "now"`, wantTry: "clade emulate --help"},
		{name: "unknown command", args: []string{"emulatte"}, wantErr: `unknown command "emulatte"`, wantTry: "did you mean clade emulate?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := cli.Run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != cli.ExitUsage {
				t.Errorf("Run(%q) = %d, want %d", tt.args, code, cli.ExitUsage)
			}
			got := stderr.String()
			if !strings.HasPrefix(got, "Error: ") || !strings.Contains(got, tt.wantErr) {
				t.Errorf("Run(%q) stderr = %q, want it to start with Error: and contain %q", tt.args, got, tt.wantErr)
			}
			if !strings.Contains(got, "\nTry: "+tt.wantTry) {
				t.Errorf("Run(%q) stderr = %q, want a line Try: %s…", tt.args, got, tt.wantTry)
			}
			if stdout.Len() != 0 {
				t.Errorf("Run(%q) stdout = %q, want nothing", tt.args, stdout.String())
			}
		})
	}
}

// TestEmulatePortInUse: a busy port is a failure to start (exit 1), with a hint.
func TestEmulatePortInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), []string{"emulate", "--addr", ln.Addr().String()}, strings.NewReader(""), &stdout, &stderr)
	if code != cli.ExitFailure {
		t.Errorf("Run(emulate --addr busy) = %d, want %d", code, cli.ExitFailure)
	}
	if got := stderr.String(); !strings.Contains(got, "Error: listen on "+ln.Addr().String()) || !strings.Contains(got, "Try: clade emulate --addr 127.0.0.1:0") {
		t.Errorf("stderr = %q, want Error: listen on … and Try: … --addr 127.0.0.1:0", got)
	}
}

// TestEmulateHelp compares `clade emulate --help` with the golden file; refresh it with
// go test ./internal/cli -run TestEmulateHelp -update.
func TestEmulateHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"emulate", "--help"}, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("Run(emulate --help) = %d, want 0; stderr %q", code, stderr.String())
	}
	golden := filepath.Join("testdata", "emulate-help.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if stdout.String() != string(want) {
		t.Errorf("clade emulate --help differs from %s (run with -update if intended):\n--- got\n%s\n--- want\n%s", golden, stdout.String(), want)
	}
	// Every flag is documented; a new emulator.Config field needs one here too.
	for _, flag := range []string{"--addr", "--tier", "--catalog", "--api-key", "--seed", "--latency-scale",
		"--clock-speed", "--batch-rate", "--batch-cache-group", "--batch-error-rate", "--legacy-otpm", "--burst-fraction",
		"--output-median", "--output-sigma", "--faults", "--base-url", "--organization-id", "--log-format", "--log-level"} {
		if !strings.Contains(stdout.String(), flag) {
			t.Errorf("clade emulate --help does not document %s", flag)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"--version"}, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("Run(--version) = %d, want 0", code)
	}
	if !strings.HasPrefix(stdout.String(), "clade ") {
		t.Errorf("Run(--version) stdout = %q, want clade VERSION", stdout.String())
	}
}

// waitBaseURL waits for `clade cmd`, running in the background, to print its
// ANTHROPIC_BASE_URL line to out, and returns the URL. It fails the test, showing
// out and other (the command's other stream), if the command exits first (done)
// or prints none within 20 s.
func waitBaseURL(t *testing.T, cmd string, out, other *testkit.Buffer, done <-chan int) string {
	t.Helper()
	re := regexp.MustCompile(`ANTHROPIC_BASE_URL=(http://127\.0\.0\.1:\d+)\n`)
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case <-out.Changed():
		case code := <-done:
			t.Fatalf("clade %s exited with %d before printing its URL\n%s\n%s", cmd, code, out.String(), other.String())
		case <-timeout.C:
			t.Fatalf("clade %s printed no ANTHROPIC_BASE_URL within 20s\n%s\n%s", cmd, out.String(), other.String())
		}
	}
}
