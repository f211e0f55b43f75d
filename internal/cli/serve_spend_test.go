package cli_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestServeCLIBudget runs `clade serve` with a team budget and --db: calls are
// answered until the budget is reached, the next gets a 402 billing_error, /metrics
// shows the team's spend (labels team, key, period; no key), and `clade serve
// spend --db` prints it per period once the gateway has stopped.
func TestServeCLIBudget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	const key = "ck-research-0001"
	if err := os.WriteFile(keys, []byte("teams:\n  research: {budget: {day: 0.002}}\nkeys:\n  "+key+": research\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "spend.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"serve", "--emulate", "tier-4", "--listen", "127.0.0.1:0", "--client-keys", keys, "--db", db},
			strings.NewReader(""), &stdout, &stderr)
	}()
	base := waitBaseURL(t, "serve", &stderr, &stdout, done)
	client := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(base),
		option.WithAPIKey(key), option.WithMaxRetries(0))
	params := anthropic.MessageNewParams{Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}}
	answered := 0
	var ae *anthropic.Error
	for range 50 {
		_, err := client.Messages.New(ctx, params)
		if err == nil {
			answered++
			continue
		}
		if !errors.As(err, &ae) {
			t.Fatalf("Messages.New = %v, want an answer or an API error", err)
		}
		break
	}
	if answered == 0 || ae == nil || ae.StatusCode != 402 || !strings.Contains(ae.RawJSON(), "team research: its daily budget of $0.00") {
		t.Fatalf("after %d answers: refusal %v, want a 402 naming research's daily budget", answered, ae)
	}
	m := metricsText(t, base)
	if !strings.Contains(m, `clade_serve_budget_spent_usd{key="",period="day",team="research"}`) ||
		!strings.Contains(m, `clade_serve_budget_refused_total 1`) || strings.Contains(m, key) {
		t.Errorf("/metrics lacks research's daily spend or the refusal, or names the key:\n%s", m)
	}
	cancel()
	if code := <-done; code != cli.ExitOK {
		t.Fatalf("clade serve exited %d\n%s", code, stderr.String())
	}
	var out, errOut testkit.Buffer
	if code := cli.Run(context.Background(), []string{"serve", "spend", "--db", db}, strings.NewReader(""), &out, &errOut); code != cli.ExitOK {
		t.Fatalf("clade serve spend exited %d\n%s", code, errOut.String())
	}
	for _, want := range []string{"SCOPE", "team:research  day", "team:research  week", "team:research  month", "$0.00"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("clade serve spend output lacks %q:\n%s", want, out.String())
		}
	}
	code := cli.Run(context.Background(), []string{"serve", "spend", "--db", filepath.Join(dir, "none.db")}, strings.NewReader(""), &out, &errOut)
	if code != cli.ExitUsage || !strings.Contains(errOut.String(), "no store at") {
		t.Errorf("clade serve spend on no store exited %d: %s; want a usage error", code, errOut.String())
	}
}
