// Package conformance_test runs the real npm clients (testdata/node: the
// TypeScript SDK, the Vercel AI SDK, LangChain JS, Claude Code) against clade
// emulate directly and through clade serve in front of it, each client's main
// calls one case at a time (testdata/node/conformance/*.mjs). A case fails naming
// client, case and target, with the requests and responses the client saw.
package conformance_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/testkit"
)

// scripts are the per-client scripts in testdata/node/conformance.
var scripts = []string{"sdk.mjs", "ai-sdk.mjs", "langchain.mjs"}

// TestRealClients starts clade emulate (latency off, a fast batch clock) and
// clade serve in front of it, in process as main would, and runs every script
// against both, and Claude Code against both.
func TestRealClients(t *testing.T) {
	node := testkit.NodeClients(t)
	// clade serve takes the upstream key from its environment; the emulator
	// accepts any key. Set before the subtests run in parallel.
	t.Setenv("ANTHROPIC_API_KEY", "sk-ant-conformance-upstream")
	t.Setenv("ANTHROPIC_BASE_URL", "")

	emURL := start(t, "emulate", []string{"emulate", "--addr", "127.0.0.1:0", "--tier", "tier-4",
		"--latency-scale", "0", "--clock-speed", "1000"})
	gwURL := start(t, "serve", []string{"serve", "--listen", "127.0.0.1:0", "--base-url", emURL,
		"--tier", "tier-4", "--max-attempts", "1"})

	for _, target := range []struct{ name, url string }{{"direct", emURL}, {"gateway", gwURL}} {
		for _, script := range scripts {
			t.Run(target.name+"/"+strings.TrimSuffix(script, ".mjs"), func(t *testing.T) {
				t.Parallel()
				runScript(t, node, script, target.name, target.url)
			})
		}
	}
	for _, target := range []struct{ name, url string }{{"direct", emURL}, {"gateway", gwURL}} {
		t.Run(target.name+"/claude-code", func(t *testing.T) {
			t.Parallel()
			claudeCode(t, node, target.name, target.url)
		})
	}
}

// start runs a clade command with cli.Run until the test ends (then cancels it,
// as Ctrl-C would) and returns the base URL it prints.
func start(t *testing.T, name string, args []string) string {
	t.Helper()
	var stdout, stderr testkit.Buffer
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- cli.Run(ctx, args, strings.NewReader(""), &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("clade %s did not stop within 15 s", name)
		}
	})
	re := regexp.MustCompile(`ANTHROPIC_BASE_URL=(http://127\.0\.0\.1:\d+)\n`)
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		for _, b := range []*testkit.Buffer{&stdout, &stderr} {
			if m := re.FindStringSubmatch(b.String()); m != nil {
				return m[1]
			}
		}
		select {
		case <-stdout.Changed():
		case <-stderr.Changed():
		case code := <-done:
			t.Fatalf("clade %s exited with %d before printing its URL\n%s\n%s", name, code, stdout.String(), stderr.String())
		case <-timeout.C:
			t.Fatalf("clade %s printed no ANTHROPIC_BASE_URL within 30 s\n%s\n%s", name, stdout.String(), stderr.String())
		}
	}
}

// caseLine is one line a script prints: its plan first, then one per case.
type caseLine struct {
	Client    string            `json:"client"`
	Plan      []string          `json:"plan"`
	Case      string            `json:"case"`
	OK        bool              `json:"ok"`
	Error     string            `json:"error"`
	Exchanges []json.RawMessage `json:"exchanges"`
}

// runScript runs one client's script against base and fails for every case that
// failed or never reported.
func runScript(t *testing.T, node testkit.Node, script, target, base string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node.Exe, filepath.Join(node.Dir, "conformance", script))
	cmd.Dir = node.Dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "BASE_URL=" + base,
		"KEY=sk-ant-conformance-client", "AI_SDK_LOG_WARNINGS=false", "NODE_NO_WARNINGS=1"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()

	var plan []string
	client := script
	reported := map[string]bool{}
	passed := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var l caseLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Errorf("%s against %s printed %q: %v", script, target, sc.Text(), err)
			continue
		}
		client = l.Client
		if l.Plan != nil {
			plan = l.Plan
			continue
		}
		reported[l.Case] = true
		if l.OK {
			passed++
			continue
		}
		var ex strings.Builder
		for _, e := range l.Exchanges {
			var pretty bytes.Buffer
			if json.Indent(&pretty, e, "  ", "  ") != nil {
				pretty.Write(e)
			}
			fmt.Fprintf(&ex, "\n  %s", pretty.String())
		}
		t.Errorf("%s case %s via %s (%s) failed: %s\nlast requests and responses:%s", l.Client, l.Case, target, base, l.Error, ex.String())
	}
	if len(plan) == 0 {
		t.Fatalf("%s against %s printed no plan (exit %v)\nstdout: %s\nstderr: %s", script, target, runErr, out, stderr.String())
	}
	for _, c := range plan {
		if !reported[c] {
			t.Errorf("%s case %s via %s never reported (the script stopped: exit %v)\nstderr: %s", client, c, target, runErr, stderr.String())
		}
	}
	if runErr != nil && passed == len(plan) {
		t.Errorf("%s via %s: every case passed but the script failed: %v\nstderr: %s", client, target, runErr, stderr.String())
	}
	t.Logf("%s via %s: %d/%d cases pass", client, target, passed, len(plan))
}

// messagesTap is a reverse proxy in front of the emulator that keeps each
// Messages call's request body and response status, in order.
type messagesTap struct {
	mu    sync.Mutex
	calls []tapCall
}

type tapCall struct {
	body, betas, version string
	status               int
	answer               string // the response body when not 200
}

func (m *messagesTap) start(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != "/v1/messages" {
			return nil
		}
		var answer string
		if r.StatusCode != http.StatusOK {
			b, err := io.ReadAll(io.LimitReader(r.Body, 8<<10))
			if err != nil {
				return err
			}
			r.Body.Close()
			r.Body = io.NopCloser(bytes.NewReader(b))
			answer = string(b)
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		for i := range m.calls {
			if m.calls[i].status == 0 {
				m.calls[i].status, m.calls[i].answer = r.StatusCode, answer
				break
			}
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/v1/messages" {
			m.mu.Lock()
			m.calls = append(m.calls, tapCall{body: string(body), betas: r.Header.Get("anthropic-beta"), version: r.Header.Get("anthropic-version")})
			m.mu.Unlock()
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// claudeCode runs claude -p with a tool round trip against target (through a
// tap that only records): it exits 0, its first Messages call is answered 200, a
// tool_result answers a tool_use, and no tool result is an input-validation error.
// (TestServeClaudeCode in internal/serve checks the gateway's accounting of it.)
func claudeCode(t *testing.T, node testkit.Node, target, url string) {
	var tap messagesTap
	base := tap.start(t, url)
	work, home := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "hello.txt"), []byte("hello from the conformance suite\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node.Bin("claude"), "-p", "Use the Read tool to read hello.txt and tell me what it says.",
		"--output-format", "stream-json", "--verbose", "--max-turns", "12")
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"ANTHROPIC_BASE_URL=" + base, "ANTHROPIC_API_KEY=sk-ant-conformance-client",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	tap.mu.Lock()
	calls := append([]tapCall(nil), tap.calls...)
	tap.mu.Unlock()
	dump := func() string {
		var b strings.Builder
		for i, c := range calls {
			fmt.Fprintf(&b, "\n  call %d: anthropic-version %s, anthropic-beta %s\n    request %.1500s\n    answered %d %s", i, c.version, c.betas, c.body, c.status, c.answer)
		}
		return b.String()
	}
	if err != nil {
		t.Fatalf("claude-code via %s: claude -p: %v\nstdout: %.8000s\nstderr: %s\ncalls:%s", target, err, out, stderr.String(), dump())
	}
	if len(calls) == 0 || calls[0].status != http.StatusOK {
		t.Errorf("claude-code via %s: first Messages call not answered 200; calls:%s", target, dump())
	}

	var success bool
	var toolResults, invalid int
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var ev struct {
			Type    string          `json:"type"`
			Subtype string          `json:"subtype"`
			IsError bool            `json:"is_error"`
			Message json.RawMessage `json:"message"` // an object in user events, a string in some system ones
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Errorf("claude-code: stream-json line %.300q: %v", line, err)
			continue
		}
		if ev.Type == "result" {
			success = ev.Subtype == "success" && !ev.IsError
		}
		var blocks []struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
			IsError bool            `json:"is_error"`
		}
		var msg struct {
			Content json.RawMessage `json:"content"`
		}
		if ev.Type != "user" || json.Unmarshal(ev.Message, &msg) != nil || json.Unmarshal(msg.Content, &blocks) != nil {
			continue
		}
		for _, b := range blocks {
			if b.Type != "tool_result" {
				continue
			}
			toolResults++
			if strings.Contains(string(b.Content), "InputValidationError") {
				invalid++
				t.Errorf("claude-code via %s: tool result is an input-validation error: %.1000s", target, b.Content)
			}
		}
	}
	if !success {
		t.Errorf("claude-code via %s: no successful result event\nstdout: %.8000s", target, out)
	}
	if toolResults == 0 {
		t.Errorf("claude-code via %s: no tool result in its output: no tool round trip\nstdout: %.8000s\ncalls:%s", target, out, dump())
	}
	roundTrip := false
	for _, c := range calls {
		if c.status == http.StatusOK && strings.Contains(c.body, `"tool_result"`) {
			roundTrip = true
		}
	}
	if !roundTrip {
		t.Errorf("claude-code via %s: no Messages call carried a tool_result answered 200; calls:%s", target, dump())
	}
	t.Logf("claude-code via %s: %d Messages calls, %d tool results, %d input-validation errors", target, len(calls), toolResults, invalid)
}
