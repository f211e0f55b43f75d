package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/cli"
	"github.com/clade-dev/clade/internal/intake"
	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/testkit"
)

// writeSharedPrefixes writes prefixes x perPrefix lines: each group shares a long
// system prompt (well over claude-sonnet-5's 1,024 min_cache_tokens) and asks its
// own question; no line has cache_control. It returns the file's bytes.
func writeSharedPrefixes(t *testing.T, path string, prefixes, perPrefix int) []byte {
	t.Helper()
	var b bytes.Buffer
	for p := range prefixes {
		system := strings.Repeat(fmt.Sprintf("Context %d for the questions that follow. ", p), 200)
		for i := range perPrefix {
			l, err := json.Marshal(map[string]any{"custom_id": fmt.Sprintf("p%d-q%d", p, i), "params": map[string]any{
				"model": "claude-sonnet-5", "max_tokens": 8, "system": system,
				"messages": []any{map[string]any{"role": "user", "content": fmt.Sprintf("Question %d?", i)}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// cacheUsage is a succeeded result's prompt-cache usage.
func cacheUsage(t *testing.T, r testkit.Result) (read, write int64) {
	t.Helper()
	var l struct {
		Result struct {
			Message struct {
				Usage struct {
					CacheRead  int64 `json:"cache_read_input_tokens"`
					CacheWrite int64 `json:"cache_creation_input_tokens"`
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(r.Line), &l); err != nil {
		t.Fatalf("result %s: %v", r.CustomID, err)
	}
	return l.Result.Message.Usage.CacheRead, l.Result.Message.Usage.CacheWrite
}

func TestRunCacheBreakpoints(t *testing.T) {
	t.Parallel()
	const prefixes, perPrefix = 2, 4
	for _, tc := range []struct {
		name, mode   string
		extra        []string // more flags
		wantWarming  int      // results with a cache write
		wantReads    int      // results with a cache read
		wantAnnounce bool
	}{
		{name: "auto", mode: "auto", wantWarming: prefixes, wantReads: prefixes * (perPrefix - 1), wantAnnounce: true},
		{name: "off", mode: "off"},
		// Hybrid (--mode auto: batches, realtime if the window runs short) imports
		// the same way; the emulator's batch caches best effort, as the API's does:
		// its requests are looked up 4 at a time (emulator.DefaultBatchCacheGroup),
		// so each 4-line prefix, one group, writes on every line.
		{name: "hybrid", mode: "auto", extra: []string{"--mode", "auto"}, wantWarming: prefixes * perPrefix, wantReads: 0, wantAnnounce: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
			orig := writeSharedPrefixes(t, in, prefixes, perPrefix)
			args := append([]string{"run", in, "-o", out, "--emulate", "tier-2", "--cache-breakpoints", tc.mode}, tc.extra...)
			var stdout, stderr bytes.Buffer
			if code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
				t.Fatalf("clade %s = exit %d, want 0; stderr:\n%s", strings.Join(args, " "), code, stderr.String())
			}
			if got, _ := os.ReadFile(in); !bytes.Equal(got, orig) {
				t.Errorf("the input file changed")
			}
			results := testkit.ResultLines(t, out)
			if len(results) != prefixes*perPrefix {
				t.Fatalf("%d results, want %d", len(results), prefixes*perPrefix)
			}
			warming, reads := 0, 0
			for _, r := range results {
				if r.Type != "succeeded" {
					t.Fatalf("%s: %s, want succeeded", r.CustomID, r.Type)
				}
				read, write := cacheUsage(t, r)
				if read > 0 {
					reads++
				}
				if write > 0 {
					warming++
				}
			}
			if warming != tc.wantWarming || reads != tc.wantReads {
				t.Errorf("--cache-breakpoints %s: %d results wrote the cache and %d read it, want %d and %d",
					tc.mode, warming, reads, tc.wantWarming, tc.wantReads)
			}
			announce := fmt.Sprintf("cache breakpoints: added to %d lines, %d distinct prefixes", prefixes*perPrefix, prefixes)
			if got := strings.Contains(stderr.String(), announce); got != tc.wantAnnounce {
				t.Errorf("stderr has %q: %v, want %v:\n%s", announce, got, tc.wantAnnounce, stderr.String())
			}
		})
	}
}

// TestImportCacheBreakpointsParams checks what the store keeps to send: with the
// option off the input's params byte for byte, with it on the params carrying the
// breakpoint and the prefix they define.
func TestImportCacheBreakpointsParams(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeSharedPrefixes(t, in, 1, 3)
	min := func(string) (int64, bool) { return 1024, true }
	for _, auto := range []bool{false, true} {
		ctx := context.Background()
		s, err := jobs.Open(ctx, filepath.Join(dir, fmt.Sprintf("store-%v.db", auto)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		opt := jobs.ImportOptions{Path: in, NoJobs: true}
		if auto {
			opt.AutoCacheBreakpoints = min
		}
		run, st, err := s.Import(ctx, opt)
		if err != nil {
			t.Fatalf("Import(auto %v): %v", auto, err)
		}
		if auto && (st.AutoBreakpoints != 3 || st.AutoPrefixes != 1) {
			t.Errorf("Import(auto) stats: %d breakpoints, %d prefixes, want 3, 1", st.AutoBreakpoints, st.AutoPrefixes)
		}
		reqs, err := s.Pending(ctx, run.ID, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		rd := intake.NewReader(bytes.NewReader(mustRead(t, in)), intake.Options{})
		for _, r := range reqs {
			orig, _, err := rd.Next()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case !auto && !bytes.Equal(r.Params, orig.Params):
				t.Errorf("off: %s params = %.120s…, want the input's bytes", r.CustomID, r.Params)
			case auto && bytes.Count(r.Params, []byte(`"cache_control":{"type":"ephemeral"}`)) != 1:
				t.Errorf("auto: %s params have no added breakpoint: %.120s…", r.CustomID, r.Params)
			}
		}
		if len(reqs) != 3 {
			t.Errorf("%d requests stored, want 3", len(reqs))
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCacheBreakpointsUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeWorkload(t, in, 1)
	for _, args := range [][]string{
		{"run", "/dev/stdin", "--emulate", "tier-2", "--cache-breakpoints", "auto"},
		{"batch", "/dev/stdin", "--emulate", "tier-2", "--cache-breakpoints", "auto"},
		{"run", in, "--emulate", "tier-2", "--cache-breakpoints", "yes"},
	} {
		var stdout, stderr bytes.Buffer
		if code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != cli.ExitUsage {
			t.Errorf("clade %s = exit %d, want %d; stderr:\n%s", strings.Join(args, " "), code, cli.ExitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), "--cache-breakpoints") && !strings.Contains(stderr.String(), "cache-breakpoints") {
			t.Errorf("clade %s: stderr does not name the flag:\n%s", strings.Join(args, " "), stderr.String())
		}
	}
}
