package batch

import (
	"encoding/json"
	"fmt"
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
	for _, maxBytes := range []int{200, 1000, 4096, 1 << 20} {
		var b body
		b.reset()
		n := 0
		for n < len(reqs) && b.add(&reqs[n], maxBytes) {
			n++
		}
		got := b.bytes()
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
