package emulator

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// FuzzParseBatchCreate checks that any body either parses into 1..max items with valid,
// unique custom_ids and object params, or fails with a 400 invalid_request_error, and
// never panics.
func FuzzParseBatchCreate(f *testing.F) {
	for _, s := range []string{
		`{"requests":[{"custom_id":"a","params":{"model":"m","max_tokens":1,"messages":[]}}]}`,
		`{"requests":[{"custom_id":"a","params":{}},{"custom_id":"a","params":{}}]}`,
		`{"requests":[]}`, `{"requests":null}`, `{"requests":[1,2]}`, `{}`, `[]`, ``, `{"requests":[{"custom_id":"\u0061","params":{}}]} `,
		`{"requests":[{"custom_id":"a","params":"x"}]}`, `{"x":1}`, `{"requests":[{"custom_id":"a","params":{}}],"requests":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		const max = 3
		items, werr := parseBatchCreate(body, max)
		if werr != nil {
			if werr.Status != 400 || werr.Type != wire.InvalidRequest || werr.Message == "" {
				t.Fatalf("parseBatchCreate(%q) error = %+v, want a 400 invalid_request_error", body, werr)
			}
			return
		}
		if len(items) < 1 || len(items) > max {
			t.Fatalf("parseBatchCreate(%q) = %d items, want 1..%d", body, len(items), max)
		}
		seen := map[string]bool{}
		for _, it := range items {
			if !wire.ValidCustomID(it.customID) || seen[it.customID] {
				t.Fatalf("parseBatchCreate(%q) accepted custom_id %q (valid %v, duplicate %v)", body, it.customID, wire.ValidCustomID(it.customID), seen[it.customID])
			}
			seen[it.customID] = true
			if p := bytes.TrimSpace(it.params); len(p) == 0 || p[0] != '{' {
				t.Fatalf("parseBatchCreate(%q) accepted params %q", body, it.params)
			}
		}
	})
}

func TestParseBatchCreateMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body, want string
	}{
		{`{"requests":[{"custom_id":"a","params":{}},{"custom_id":"b c","params":{}}]}`, `requests.1.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$' (got "b c")`},
		{`{"requests":[{"custom_id":"a","params":{}},{"custom_id":"a","params":{}}]}`, `requests.1.custom_id: Duplicate custom_id "a" (first used by requests.0)`},
		{`{"requests":[{"custom_id":"a","params":{},"z":1,"y":2}]}`, `requests.0.y: Extra inputs are not permitted`},
		{`{"requests":[{"custom_id":"a","params":{}},{"custom_id":"b","params":{}},{"custom_id":"c","params":{}},{"custom_id":"d","params":{}}]}`, `requests: List should have at most 3 items after validation, not 4`},
	}
	for _, tt := range tests {
		_, werr := parseBatchCreate([]byte(tt.body), 3)
		if werr == nil || !strings.HasPrefix(werr.Message, tt.want) {
			t.Errorf("parseBatchCreate(%s) = %v, want message starting %q", tt.body, werr, tt.want)
		}
	}
}

// FuzzBatchCreateHandler checks that no create body makes the endpoint answer 5xx or
// panic, and that an accepted batch's results download whole.
func FuzzBatchCreateHandler(f *testing.F) {
	f.Add([]byte(`{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":3,"messages":[{"role":"user","content":"x"}]}}]}`))
	f.Add([]byte(`{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5","max_tokens":3,"stream":true,"tools":[{"name":"t","input_schema":{}}],"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}}]}`))
	f.Add([]byte(`{"requests":[{"custom_id":"a","params":{"model":7}}]}`))
	s, err := New(Config{Tier: "unlimited", ClockSpeed: 1e6})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/v1/messages/batches", bytes.NewReader(body))
		req.Header.Set("x-api-key", "k")
		req.Header.Set("anthropic-version", Version2026)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("create %q: status %d %s", body, rec.Code, rec.Body)
		}
		if rec.Code != 200 {
			return
		}
		var b MessageBatch
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatalf("create %q: body %s: %v", body, rec.Body, err)
		}
		s.Clock().Advance(25 * time.Hour)
		req = httptest.NewRequest("GET", "/v1/messages/batches/"+b.ID+"/results", nil)
		req.Header.Set("x-api-key", "k")
		req.Header.Set("anthropic-version", Version2026)
		rec = httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("results of %q: status %d %s", body, rec.Code, rec.Body)
		}
		lines := bytes.Count(rec.Body.Bytes(), []byte("\n"))
		if int64(lines) != b.RequestCounts.Processing {
			t.Fatalf("results of %q: %d lines, want %d", body, lines, b.RequestCounts.Processing)
		}
	})
}
