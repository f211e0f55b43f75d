package serve_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	option1 "github.com/anthropics/anthropic-sdk-go/option"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/jobs/jobstest"
	"github.com/clade-dev/clade/internal/spend"
	"github.com/clade-dev/clade/internal/testkit"
)

// TestServeBudgetRefusalRealClients: once a team's budget is spent, the previous Go
// SDK (v1) and the official TypeScript SDK, both with their retries on, raise the
// gateway's 402 billing_error after sending the call once: neither retries it.
// (The current Go SDK is checked by the other budget tests.)
func TestServeBudgetRefusalRealClients(t *testing.T) {
	t.Parallel()
	node := testkit.NodeClients(t)
	gw := startGateway(t, setup{keys: budgetKeys("0.002"), spend: openSpend(t, jobstest.SQLite().NewDSN(t))})
	if _, answered := spendUntilRefused(t, v2(gw.URL, researchKey)); answered == 0 {
		t.Fatal("the first call was refused: the budget was not spent by calls")
	}
	upstream := gw.rec.count(200)

	var n atomic.Int64
	c1 := anthropic1.NewClient(option1.WithBaseURL(gw.URL), option1.WithAPIKey(researchKey), option1.WithMaxRetries(3),
		option1.WithMiddleware(func(r *http.Request, next option1.MiddlewareNext) (*http.Response, error) {
			n.Add(1)
			return next(r)
		}))
	_, err := c1.Messages.New(context.Background(), anthropic1.MessageNewParams{Model: "claude-haiku-4-5", MaxTokens: 100,
		Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("over budget?"))}})
	var ae *anthropic1.Error
	if !errors.As(err, &ae) {
		t.Fatalf("Go SDK v1: error = %v, want an API error", err)
	}
	if ae.StatusCode != http.StatusPaymentRequired || !strings.Contains(ae.RawJSON(), `"billing_error"`) || n.Load() != 1 {
		t.Errorf("Go SDK v1: %d %s after %d attempts, want 402 billing_error sent once", ae.StatusCode, ae.RawJSON(), n.Load())
	}

	out, err := node.Command("budget-refusal.mjs", gw.URL, researchKey).Output()
	if err != nil {
		t.Fatalf("node budget-refusal.mjs: %v\n%s", err, exitStderr(err))
	}
	var ts struct {
		Answered                        bool
		Class, Type, Message, RequestID string
		Status, Attempts                int
	}
	if err := json.Unmarshal(out, &ts); err != nil {
		t.Fatalf("node budget-refusal.mjs printed %q: %v", out, err)
	}
	t.Logf("TypeScript SDK: %s", out)
	if ts.Answered || ts.Status != 402 || ts.Type != "billing_error" || ts.Attempts != 1 ||
		!strings.Contains(ts.Message, "team research") || !strings.HasPrefix(ts.RequestID, "req_clade_") {
		t.Errorf("TypeScript SDK: %+v, want a 402 billing_error naming team research with the gateway's request-id, sent once", ts)
	}
	if ts.Class != "APIError" && !strings.HasSuffix(ts.Class, "Error") {
		t.Errorf("TypeScript SDK raised %q, want one of its API error classes", ts.Class)
	}
	if got := gw.rec.count(200); got != upstream {
		t.Errorf("upstream answered %d calls after the budget ran out (%d before), want none: refusals must not reach the API", got, upstream)
	}
}

// exitStderr is the stderr that a failed exec.Cmd.Output kept, if any.
func exitStderr(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// bodyTap is a reverse proxy in front of the emulator that keeps every Messages
// request body the gateway sent upstream.
type bodyTap struct {
	mu     sync.Mutex
	bodies []string
}

func (b *bodyTap) start(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/v1/messages" {
			b.mu.Lock()
			b.bodies = append(b.bodies, string(body))
			b.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// roundTrips counts the tool_result blocks of the requests sent upstream that
// answer a tool_use of the same request's conversation: a tool the client ran and
// sent back.
func (b *bodyTap) roundTrips(t *testing.T) (requests, results int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, body := range b.bodies {
		var req struct {
			Messages []struct {
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			t.Fatalf("upstream body %.200s: %v", body, err)
		}
		uses := map[string]bool{}
		for _, m := range req.Messages {
			var blocks []struct{ Type, ID, ToolUseID string }
			var raw []map[string]any
			if json.Unmarshal(m.Content, &raw) != nil {
				continue // a string content
			}
			for _, r := range raw {
				s := func(k string) string { v, _ := r[k].(string); return v }
				blocks = append(blocks, struct{ Type, ID, ToolUseID string }{s("type"), s("id"), s("tool_use_id")})
			}
			for _, blk := range blocks {
				switch blk.Type {
				case "tool_use":
					uses[blk.ID] = true
				case "tool_result":
					if uses[blk.ToolUseID] {
						results++
					}
				}
			}
		}
	}
	return len(b.bodies), results
}

// TestServeClaudeCode runs the real Claude Code CLI (claude -p, from npm) through
// the gateway to the emulator, as a developer of a fleet would with the env vars
// docs/claude-code.md gives: it completes with exit status 0, one of its tools runs
// and its result goes back (a tool round trip), the organisation's key is what
// reaches the API, and what the gateway charges to the developer's key, and to the
// team, is what Claude Code itself reports it cost.
func TestServeClaudeCode(t *testing.T) {
	t.Parallel()
	node := testkit.NodeClients(t)
	em := emulator.StartTB(t, emulator.Config{Tier: "tier-2", APIKeys: []string{orgKey}})
	var tap bodyTap
	store := openSpend(t, jobstest.SQLite().NewDSN(t))
	keys := "teams:\n  platform: {budget: {day: 50}}\nkeys:\n  ck-dev-alice-7f3a9c: {team: platform, label: alice, budget: {day: 5}}\n"
	gw := startGateway(t, setup{keys: keys, spend: store, upURL: tap.start(t, em.URL), tier: "tier-2"})

	work, home := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "hello.txt"), []byte("hello from the fleet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node.Bin("claude"), "-p", "Use the Read tool to read hello.txt and tell me what it says.",
		"--output-format", "json", "--max-turns", "12")
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"ANTHROPIC_BASE_URL=" + gw.URL, "ANTHROPIC_API_KEY=ck-dev-alice-7f3a9c",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("claude -p: %v\nstdout: %s\nstderr: %s\ngateway log:\n%s", err, out, stderr.String(), gw.logs.String())
	}
	var res struct {
		Subtype  string  `json:"subtype"`
		IsError  bool    `json:"is_error"`
		NumTurns int     `json:"num_turns"`
		CostUSD  float64 `json:"total_cost_usd"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("claude -p printed %q: %v", out, err)
	}
	if res.Subtype != "success" || res.IsError {
		t.Fatalf("claude -p result %s, want success", out)
	}
	requests, results := tap.roundTrips(t)
	if results == 0 {
		t.Errorf("%d Messages calls upstream, none with a tool_result answering a tool_use: no tool round trip", requests)
	}
	for _, h := range gw.rec.headersSoFar() {
		if h.Get("x-api-key") != orgKey {
			t.Errorf("upstream request credentials %v, want the organisation's key", h)
			break
		}
	}
	// The gateway keeps each call's cost in whole micro-dollars, rounded: the sum
	// may differ from Claude Code's by up to a micro-dollar per call.
	want, slack := spend.FromUSD(res.CostUSD), spend.Micros(requests)
	near := func(got spend.Micros) bool { return got > 0 && got >= want-slack && got <= want+slack }
	for _, scope := range []string{"key:alice", "team:platform"} {
		var got spend.Micros
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			got, _ = store.SpendOf(ctx, scope, jobs.PeriodDay, time.Now())
			if near(got) || time.Now().After(deadline) {
				break
			}
		}
		if !near(got) {
			t.Errorf("%s spent %v, want Claude Code's cost %v within $0.000001 per call (%s)", scope, got, want, out)
		}
	}
	t.Logf("claude -p: %d turns, %d calls upstream, %d tool results, cost $%.6f", res.NumTurns, requests, results, res.CostUSD)
}
