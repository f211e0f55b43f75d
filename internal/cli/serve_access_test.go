package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestServeCLIAccessLog: clade serve --access-log FILE appends one JSON line per API
// call (a line already in the file is kept), with the team, the key's label, the
// model, the status and the cost, and never the client key.
func TestServeCLIAccessLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.yaml")
	const key = "ck-search-0001-secret"
	if err := os.WriteFile(keys, []byte("keys:\n  "+key+": {team: search, label: crawler}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "access.jsonl")
	if err := os.WriteFile(logPath, []byte(`{"earlier":"line"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"serve", "--emulate", "tier-4", "--listen", "127.0.0.1:0", "--client-keys", keys, "--access-log", logPath},
			strings.NewReader(""), &stdout, &stderr)
	}()
	base := waitBaseURL(t, "serve", &stderr, &stdout, done)
	client := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(base),
		option.WithAPIKey(key), option.WithMaxRetries(0))
	for range 2 {
		if _, err := client.Messages.New(ctx, anthropic.MessageNewParams{Model: anthropic.ModelClaudeHaiku4_5, MaxTokens: 20,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}}); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("clade serve exited %d: %s", code, stderr.String())
	}
	f, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), key) {
			t.Errorf("access log line holds the client key: %s", sc.Text())
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 || lines[0]["earlier"] != "line" {
		t.Fatalf("access log = %v, want the earlier line kept and one line per call", lines)
	}
	for _, l := range lines[1:] {
		if l["msg"] != "call" || l["team"] != "search" || l["key"] != "crawler" || l["model"] != "claude-haiku-4-5" ||
			l["status"] != float64(200) || !(costOf(l) > 0) {
			t.Errorf("access log line %v, want a call of team search, key crawler, claude-haiku-4-5, 200, with a cost", l)
		}
	}
}

func costOf(l map[string]any) float64 {
	c, _ := l["cost_usd"].(float64)
	return c
}
