package batch

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/jobs"
)

func TestBodyStaysWithinMaxBytes(t *testing.T) {
	t.Parallel()
	reqs := make([]jobs.Request, 50)
	for i := range reqs {
		params := fmt.Sprintf(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":%q}]}`, strings.Repeat("é\"x", i))
		reqs[i] = jobs.Request{ID: int64(i + 1), CustomID: fmt.Sprintf("id-%d", i), Params: json.RawMessage(params)}
	}
	// One spool, largest body first: a later, smaller body must not carry bytes of
	// an earlier one.
	b := newBody(t.TempDir())
	defer b.close()
	for _, maxBytes := range []int{1 << 20, 4096, 1000, 200} {
		b.reset()
		n := 0
		for n < len(reqs) {
			ok, err := b.add(&reqs[n], maxBytes)
			if err != nil {
				t.Fatalf("add() error = %v", err)
			}
			if !ok {
				break
			}
			n++
		}
		rd, err := b.reader()
		if err != nil {
			t.Fatalf("reader() error = %v", err)
		}
		got, err := io.ReadAll(rd)
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		if int64(len(got)) != b.size() || rd.Size() != b.size() {
			t.Errorf("body with max %d: read %d bytes, reader size %d, size() %d; want all equal", maxBytes, len(got), rd.Size(), b.size())
		}
		if len(got) > maxBytes {
			t.Errorf("body with max %d = %d bytes, want ≤ %d", maxBytes, len(got), maxBytes)
		}
		if n < len(reqs) && len(got)+itemSize(&reqs[n]) <= maxBytes {
			t.Errorf("body with max %d stopped at %d bytes although request %d (%d bytes) fits", maxBytes, len(got), n, itemSize(&reqs[n]))
		}
		var v struct {
			Requests []struct {
				CustomID string          `json:"custom_id"`
				Params   json.RawMessage `json:"params"`
			} `json:"requests"`
		}
		if err := json.Unmarshal(got, &v); err != nil {
			t.Fatalf("body with max %d is not JSON: %v", maxBytes, err)
		}
		if len(v.Requests) != n || len(b.ids) != n {
			t.Fatalf("body with max %d holds %d requests (%d ids), want %d", maxBytes, len(v.Requests), len(b.ids), n)
		}
		for i, r := range v.Requests {
			if r.CustomID != reqs[i].CustomID || string(r.Params) != string(reqs[i].Params) {
				t.Errorf("request %d = %s %s, want %s %s (params byte for byte)", i, r.CustomID, r.Params, reqs[i].CustomID, reqs[i].Params)
			}
		}
	}
}

// TestBodySpoolLeavesNoFile checks the spool is unlinked while in use: a crash
// leaves no body behind.
func TestBodySpoolLeavesNoFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := newBody(dir)
	if ok, err := b.add(&jobs.Request{ID: 1, CustomID: "a", Params: json.RawMessage(`{}`)}, 1<<20); !ok || err != nil {
		t.Fatalf("add() = %v, %v; want true, nil", ok, err)
	}
	if _, err := b.reader(); err != nil {
		t.Fatalf("reader() error = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("files in the spool directory while the body is open = %v, want none", left)
	}
	if err := b.close(); err != nil {
		t.Errorf("close() error = %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}

func TestFingerprintIgnoresOrder(t *testing.T) {
	t.Parallel()
	a, b := fingerprint([]string{"x", "y", "z"}), fingerprint([]string{"z", "x", "y"})
	if a != b {
		t.Errorf("fingerprint(x y z) = %s, fingerprint(z x y) = %s; want equal", a, b)
	}
	if c := fingerprint([]string{"x", "y"}); c == a {
		t.Errorf("fingerprint(x y) = fingerprint(x y z) = %s, want different", c)
	}
}
