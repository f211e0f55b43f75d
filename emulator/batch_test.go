package emulator_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/emulator"
)

const haiku = "claude-haiku-4-5"

// perHour is a BatchProcessingRate of n requests per emulator hour: slow enough that
// the real time a test takes does not matter, so Clock.Advance alone moves batches.
func perHour(n float64) float64 { return n / 3600 }

func TestBatchLifecycle(t *testing.T) {
	t.Parallel()
	for _, sdk := range []string{"v1", "v2"} {
		t.Run(sdk, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{Seed: 3, BatchProcessingRate: perHour(1)})
			api := sdkFor(em.URL, sdk)
			ctx := context.Background()
			reqs := []batchReq{
				{ID: "ok-0", Model: haiku, MaxTokens: 50, Text: "hello"},
				{ID: "bad-1", Model: haiku, MaxTokens: 10_000_000, Text: "too many tokens"},
				{ID: "ok-2", Model: haiku, MaxTokens: 50, Text: "again"},
				{ID: "model-3", Model: "claude-nope-9", MaxTokens: 50, Text: "unknown model"},
			}
			b, err := api.create(ctx, reqs)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if !strings.HasPrefix(b.ID, "msgbatch_01") || len(b.ID) != len("msgbatch_")+24 {
				t.Errorf("id = %q, want msgbatch_01 + 22 base62", b.ID)
			}
			if b.Status != "in_progress" || b.Counts != [5]int64{4, 0, 0, 0, 0} {
				t.Errorf("create = %s %v, want in_progress [4 0 0 0 0]", b.Status, b.Counts)
			}
			if got := b.ExpiresAt.Sub(b.CreatedAt); got != 24*time.Hour {
				t.Errorf("expires_at - created_at = %v, want 24h", got)
			}
			if d := time.Since(b.CreatedAt); d < -time.Minute || d > time.Minute {
				t.Errorf("created_at = %v, want about now", b.CreatedAt)
			}
			if !b.EndedAt.IsZero() || b.ResultsURL != "" || !b.ArchivedAt.IsZero() || !b.CancelInitiatedAt.IsZero() {
				t.Errorf("new batch has ended_at %v results_url %q archived_at %v cancel_initiated_at %v, want all null",
					b.EndedAt, b.ResultsURL, b.ArchivedAt, b.CancelInitiatedAt)
			}

			if _, _, err := api.results(ctx, b.ID); !isStatus(err, 400, "invalid_request_error") {
				t.Errorf("results before the end: err = %v, want 400 invalid_request_error", err)
			}
			if _, err := api.del(ctx, b.ID); !isStatus(err, 400, "invalid_request_error") {
				t.Errorf("delete before the end: err = %v, want 400 invalid_request_error", err)
			}

			// Two of four processed: the counts still say nothing.
			em.Server.Clock().Advance(2*time.Hour + 30*time.Minute)
			g, err := api.get(ctx, b.ID)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if g.ID != b.ID || g.Status != "in_progress" || g.Counts != [5]int64{4, 0, 0, 0, 0} || !g.EndedAt.IsZero() {
				t.Errorf("get mid-way = %s %s %v ended %v, want %s in_progress [4 0 0 0 0] not ended", g.ID, g.Status, g.Counts, g.EndedAt, b.ID)
			}

			em.Server.Clock().Advance(2 * time.Hour)
			e := waitBatch(t, api, b.ID, "ended")
			if e.Counts != [5]int64{0, 2, 2, 0, 0} {
				t.Errorf("final counts = %v, want [0 2 2 0 0]", e.Counts)
			}
			// The fourth request finished 4 h (at 1 an hour) after creation.
			if d := e.EndedAt.Sub(e.CreatedAt); d < 4*time.Hour-time.Second || d > 4*time.Hour+time.Minute {
				t.Errorf("ended_at - created_at = %v, want about 4h", d)
			}
			if want := em.URL + "/v1/messages/batches/" + b.ID + "/results"; e.ResultsURL != want {
				t.Errorf("results_url = %q, want %q", e.ResultsURL, want)
			}

			res, _, err := api.results(ctx, b.ID)
			if err != nil {
				t.Fatalf("results: %v", err)
			}
			if len(res) != 4 {
				t.Fatalf("results has %d lines, want 4: %+v", len(res), res)
			}
			for _, id := range []string{"ok-0", "ok-2"} {
				r := res[id]
				if r.Type != "succeeded" || r.ServiceTier != "batch" || r.Output <= 0 || r.InputTokens <= 0 || r.Text == "" || !strings.HasPrefix(r.MessageID, "msg_") {
					t.Errorf("result %s = %+v, want succeeded, service_tier batch, text and usage", id, r)
				}
			}
			if r := res["bad-1"]; r.Type != "errored" || r.ErrType != "invalid_request_error" || !strings.Contains(r.ErrMessage, "max_tokens") || !strings.HasPrefix(r.RequestID, "req_") {
				t.Errorf("result bad-1 = %+v, want errored invalid_request_error about max_tokens with a request id", r)
			}
			if r := res["model-3"]; r.Type != "errored" || r.ErrType != "not_found_error" {
				t.Errorf("result model-3 = %+v, want errored not_found_error", r)
			}
			again, _, err := api.results(ctx, b.ID)
			if err != nil {
				t.Fatalf("results again: %v", err)
			}
			for id, r := range res {
				if again[id] != r {
					t.Errorf("second download of %s = %+v, want the same as the first %+v", id, again[id], r)
				}
			}

			typ, err := api.del(ctx, b.ID)
			if err != nil || typ != "message_batch_deleted" {
				t.Fatalf("delete = %q, %v, want message_batch_deleted", typ, err)
			}
			if _, err := api.get(ctx, b.ID); !isStatus(err, 404, "not_found_error") {
				t.Errorf("get after delete: err = %v, want 404 not_found_error", err)
			}
			if ids, _, err := api.list(ctx, 20, "", ""); err != nil || len(ids) != 0 {
				t.Errorf("list after delete = %v, %v, want empty", ids, err)
			}
		})
	}
}

func TestBatchCancel(t *testing.T) {
	t.Parallel()
	for _, sdk := range []string{"v1", "v2"} {
		t.Run(sdk, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{BatchProcessingRate: perHour(1)})
			api := sdkFor(em.URL, sdk)
			ctx := context.Background()
			reqs := []batchReq{
				{ID: "c-0", Model: haiku, MaxTokens: 20, Text: "first"},
				{ID: "c-1", Model: haiku, MaxTokens: 0, Text: "max_tokens 0 is invalid"},
			}
			for i := 2; i < 10; i++ {
				reqs = append(reqs, batchReq{ID: fmt.Sprintf("c-%d", i), Model: haiku, MaxTokens: 20, Text: "later"})
			}
			b, err := api.create(ctx, reqs)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			em.Server.Clock().Advance(2*time.Hour + 30*time.Minute) // c-0 and c-1 processed
			c, err := api.cancel(ctx, b.ID)
			if err != nil {
				t.Fatalf("cancel: %v", err)
			}
			if c.Status != "canceling" || c.Counts != [5]int64{10, 0, 0, 0, 0} || !c.EndedAt.IsZero() || c.ResultsURL != "" {
				t.Errorf("cancel = %s %v ended %v url %q, want canceling [10 0 0 0 0], not ended", c.Status, c.Counts, c.EndedAt, c.ResultsURL)
			}
			if d := c.CancelInitiatedAt.Sub(c.CreatedAt); d < 2*time.Hour+30*time.Minute || d > 3*time.Hour {
				t.Errorf("cancel_initiated_at - created_at = %v, want about 2h30m", d)
			}
			if c2, err := api.cancel(ctx, b.ID); err != nil || c2.Status == "in_progress" || !c2.CancelInitiatedAt.Equal(c.CancelInitiatedAt) {
				t.Errorf("second cancel = %s %v, %v, want the same cancel_initiated_at", c2.Status, c2.CancelInitiatedAt, err)
			}

			em.Server.Clock().Advance(time.Minute)
			e := waitBatch(t, api, b.ID, "ended")
			if e.Counts != [5]int64{0, 1, 1, 8, 0} {
				t.Errorf("final counts = %v, want [0 1 1 8 0]", e.Counts)
			}
			if e.EndedAt.Before(e.CancelInitiatedAt) {
				t.Errorf("ended_at %v before cancel_initiated_at %v", e.EndedAt, e.CancelInitiatedAt)
			}
			res, _, err := api.results(ctx, b.ID)
			if err != nil {
				t.Fatalf("results: %v", err)
			}
			want := map[string]string{"c-0": "succeeded", "c-1": "errored"}
			for i := 2; i < 10; i++ {
				want[fmt.Sprintf("c-%d", i)] = "canceled"
			}
			if got := resultTypes(res); !maps.Equal(got, want) {
				t.Errorf("result types = %v, want %v", got, want)
			}
			if _, err := api.cancel(ctx, b.ID); !isStatus(err, 400, "invalid_request_error") {
				t.Errorf("cancel after the end: err = %v, want 400 invalid_request_error", err)
			}
			if _, err := api.del(ctx, b.ID); err != nil {
				t.Errorf("delete after cancel: %v", err)
			}
		})
	}
}

// TestBatchExpiresPartway: requests not processed within 24 h expire; the processed
// ones keep their results. With TestBatchCancel this covers all four result types.
func TestBatchExpiresPartway(t *testing.T) {
	t.Parallel()
	for _, sdk := range []string{"v1", "v2"} {
		t.Run(sdk, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{BatchProcessingRate: perHour(0.1)}) // one per 10 h
			api := sdkFor(em.URL, sdk)
			ctx := context.Background()
			b, err := api.create(ctx, []batchReq{
				{ID: "e-0", Model: "no-such-model", MaxTokens: 20, Text: "x"},
				{ID: "e-1", Model: haiku, MaxTokens: 20, Text: "y"},
				{ID: "e-2", Model: haiku, MaxTokens: 20, Text: "z"},
			})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			em.Server.Clock().Advance(15 * time.Hour)
			if g, err := api.get(ctx, b.ID); err != nil || g.Status != "in_progress" || g.Counts != [5]int64{3, 0, 0, 0, 0} {
				t.Errorf("get at 15h = %s %v, %v, want in_progress [3 0 0 0 0]", g.Status, g.Counts, err)
			}
			em.Server.Clock().Advance(10 * time.Hour)
			e := waitBatch(t, api, b.ID, "ended")
			if e.Counts != [5]int64{0, 1, 1, 0, 1} {
				t.Errorf("final counts = %v, want [0 1 1 0 1]", e.Counts)
			}
			if !e.EndedAt.Equal(e.ExpiresAt) {
				t.Errorf("ended_at = %v, want expires_at %v", e.EndedAt, e.ExpiresAt)
			}
			res, _, err := api.results(ctx, b.ID)
			if err != nil {
				t.Fatalf("results: %v", err)
			}
			want := map[string]string{"e-0": "errored", "e-1": "succeeded", "e-2": "expired"}
			if got := resultTypes(res); !maps.Equal(got, want) {
				t.Errorf("result types = %v, want %v", got, want)
			}
		})
	}
}

func TestBatchExpiresAt24hOnFastClock(t *testing.T) {
	t.Parallel()
	// 24 emulator hours pass in about 0.4 s; almost nothing is processed.
	em := start(t, emulator.Config{ClockSpeed: 200_000, BatchProcessingRate: 1e-9})
	api := sdkFor(em.URL, "v2")
	ctx := context.Background()
	b, err := api.create(ctx, []batchReq{
		{ID: "a", Model: haiku, MaxTokens: 10, Text: "x"},
		{ID: "b", Model: haiku, MaxTokens: 10, Text: "y"},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	e := waitBatch(t, api, b.ID, "ended")
	if e.Counts != [5]int64{0, 0, 0, 0, 2} {
		t.Errorf("counts = %v, want [0 0 0 0 2]", e.Counts)
	}
	if !e.EndedAt.Equal(e.CreatedAt.Add(24 * time.Hour)) {
		t.Errorf("ended_at = %v, want created_at + 24h = %v", e.EndedAt, e.CreatedAt.Add(24*time.Hour))
	}
	res, _, err := api.results(ctx, b.ID)
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	if got := resultTypes(res); !maps.Equal(got, map[string]string{"a": "expired", "b": "expired"}) {
		t.Errorf("result types = %v, want both expired", got)
	}
}

func TestBatchListPagination(t *testing.T) {
	t.Parallel()
	for _, sdk := range []string{"v1", "v2"} {
		t.Run(sdk, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{BatchProcessingRate: perHour(1)})
			api := sdkFor(em.URL, sdk)
			ctx := context.Background()
			var created []string
			for i := range 5 {
				b, err := api.create(ctx, []batchReq{{ID: fmt.Sprint("r", i), Model: haiku, MaxTokens: 5, Text: "x"}})
				if err != nil {
					t.Fatalf("create %d: %v", i, err)
				}
				created = append(created, b.ID)
			}
			newest := slices.Clone(created)
			slices.Reverse(newest)

			tests := []struct {
				name          string
				after, before string
				want          []string
				wantMore      bool
			}{
				{"first page", "", "", newest[0:2], true},
				{"second page", newest[1], "", newest[2:4], true},
				{"last page", newest[3], "", newest[4:], false},
				{"before", "", newest[2], newest[0:2], false},
			}
			for _, tt := range tests {
				ids, more, err := api.list(ctx, 2, tt.after, tt.before)
				if err != nil {
					t.Fatalf("%s: list: %v", tt.name, err)
				}
				if !slices.Equal(ids, tt.want) || more != tt.wantMore {
					t.Errorf("%s: list(limit 2) = %v has_more %v, want %v has_more %v", tt.name, ids, more, tt.want, tt.wantMore)
				}
			}
			all, err := api.listAll(ctx, 2)
			if err != nil || !slices.Equal(all, newest) {
				t.Errorf("auto-paging list = %v, %v, want %v", all, err, newest)
			}
			if _, _, err := api.list(ctx, 1001, "", ""); !isStatus(err, 400, "invalid_request_error") {
				t.Errorf("list limit 1001: err = %v, want 400", err)
			}
		})
	}
}

func TestBatchCreateRejected(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{BatchProcessingRate: perHour(1)})
	many := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString(`{"requests":[`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"custom_id":"r%d","params":{}}`, i)
		}
		b.WriteString(`]}`)
		return b.Bytes()
	}
	tests := []struct {
		name string
		body []byte
		want []string // substrings of the message
	}{
		{"space in custom_id", batchBody("ok", okParams, "bad id", okParams), []string{"requests.1.custom_id", `"bad id"`}},
		{"65-char custom_id", batchBody(strings.Repeat("a", 65), okParams), []string{"requests.0.custom_id", strings.Repeat("a", 65)}},
		{"empty custom_id", batchBody("a", okParams, "", okParams), []string{"requests.1.custom_id"}},
		{"unicode custom_id", batchBody("é", okParams), []string{"requests.0.custom_id", `"é"`}},
		{"duplicate custom_id", batchBody("a", okParams, "b", okParams, "a", okParams), []string{"requests.2.custom_id", `"a"`, "requests.0", "unique"}},
		{"custom_id not a string", []byte(`{"requests":[{"custom_id":7,"params":{}}]}`), []string{"requests.0.custom_id"}},
		{"missing custom_id", []byte(`{"requests":[{"params":{}}]}`), []string{"requests.0.custom_id: Field required"}},
		{"params a string", batchBody("a", `"hello"`), []string{"requests.0.params"}},
		{"params null", batchBody("a", okParams, "b", `null`), []string{"requests.1.params"}},
		{"missing params", []byte(`{"requests":[{"custom_id":"a"}]}`), []string{"requests.0.params: Field required"}},
		{"extra item field", []byte(`{"requests":[{"custom_id":"a","params":{},"x":1}]}`), []string{"requests.0.x"}},
		{"item not an object", []byte(`{"requests":[1]}`), []string{"requests.0"}},
		{"no requests", []byte(`{"requests":[]}`), []string{"requests", "at least 1"}},
		{"requests missing", []byte(`{}`), []string{"requests: Field required"}},
		{"requests not a list", []byte(`{"requests":{}}`), []string{"requests: Input should be a valid list"}},
		{"extra top-level field", []byte(`{"requests":[{"custom_id":"a","params":{}}],"foo":1}`), []string{"foo"}},
		{"truncated JSON", []byte(`{"requests":[{"custom_id":"a"`), []string{"parsing the body"}},
		{"not JSON", []byte(`hello`), []string{"parsing the body"}},
		{"trailing data", []byte(`{"requests":[{"custom_id":"a","params":{}}]} x`), []string{"parsing the body"}},
		{"array body", []byte(`[]`), []string{"dictionary"}},
		{"100,001 requests", many(100_001), []string{"at most 100000", "100001"}},
	}
	for _, tt := range tests {
		r := rawCall(t, "POST", em.URL+"/v1/messages/batches", emulator.Version2023, tt.body)
		if r.status != 400 {
			t.Errorf("%s: status %d (%s), want 400", tt.name, r.status, r.body)
			continue
		}
		typ, msg := r.errEnvelope(t)
		if typ != "invalid_request_error" {
			t.Errorf("%s: error type %q, want invalid_request_error", tt.name, typ)
		}
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message %q does not contain %q", tt.name, msg, w)
			}
		}
	}
	// None of them created anything.
	if r := rawCall(t, "GET", em.URL+"/v1/messages/batches", emulator.Version2023, nil); !bytes.Contains(r.body, []byte(`"data":[]`)) {
		t.Errorf("list after rejected creates = %s, want no batches", r.body)
	}
	// The tier's max_requests is the bound: exactly that many is allowed.
	small := start(t, emulator.Config{Catalog: smallTier(t, 1000, 1000, 5), Tier: "small"})
	if r := rawCall(t, "POST", small.URL+"/v1/messages/batches", emulator.Version2023, many(5)); r.status != 200 {
		t.Errorf("max_requests (5) requests: status %d (%.300s), want 200", r.status, r.body)
	}
	if r := rawCall(t, "POST", small.URL+"/v1/messages/batches", emulator.Version2023, many(6)); r.status != 400 || !bytes.Contains(r.body, []byte("at most 5 items")) {
		t.Errorf("max_requests+1 (6) requests: status %d (%.300s), want 400 naming the limit", r.status, r.body)
	}
}

func TestBatchCustomIDRulesSDK(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{})
	tests := []struct {
		name string
		ids  []string
	}{
		{"bad characters", []string{"ok", "no/slash"}},
		{"duplicate", []string{"x", "y", "x"}},
		{"too long", []string{strings.Repeat("z", 65)}},
	}
	for _, s := range sdks(em.URL) {
		for _, tt := range tests {
			var reqs []batchReq
			for _, id := range tt.ids {
				reqs = append(reqs, batchReq{ID: id, Model: haiku, MaxTokens: 5, Text: "x"})
			}
			if _, err := s.api.create(context.Background(), reqs); !isStatus(err, 400, "invalid_request_error") {
				t.Errorf("%s %s: create err = %v, want 400 invalid_request_error", s.name, tt.name, err)
			}
		}
	}
}

func TestBatchCreateTooLarge(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(em.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Declare one byte over 256 MB and send only the start: the limit is enforced on
	// the declared length, as the API's front end does.
	fmt.Fprintf(conn, "POST /v1/messages/batches HTTP/1.1\r\nHost: emu\r\nx-api-key: %s\r\nanthropic-version: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"requests\":[",
		testKey, emulator.Version2023, emulator.MaxBatchCreateBody+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	var env struct {
		Error struct{ Type string } `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&env)
	if resp.StatusCode != 413 || env.Error.Type != "request_too_large" {
		t.Errorf("status %d type %q, want 413 request_too_large", resp.StatusCode, env.Error.Type)
	}
}

// smallTier is the start tier with tiny batch limits.
func smallTier(t *testing.T, rpm, queue, maxRequests int) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Overlay(catalog.Default(), fmt.Appendf(nil, `
tiers:
  small:
    description: test tier
    batch: {rpm: %d, queue: %d, max_requests: %d}
    limits:
      default: {rpm: 1000, itpm: 1000000, otpm: 100000}
`, rpm, queue, maxRequests))
	if err != nil {
		t.Fatalf("overlay: %v", err)
	}
	return c
}

func TestBatchQueueLimit(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Catalog: smallTier(t, 1000, 5, 10), Tier: "small", BatchProcessingRate: perHour(1)})
	create := func(ids ...string) rawResponse {
		var pairs []string
		for _, id := range ids {
			pairs = append(pairs, id, okParams)
		}
		return rawCall(t, "POST", em.URL+"/v1/messages/batches", emulator.Version2023, batchBody(pairs...))
	}
	if r := create("a", "b", "c"); r.status != 200 {
		t.Fatalf("first batch of 3: status %d %s", r.status, r.body)
	}
	r := create("d", "e", "f")
	if r.status != 429 {
		t.Fatalf("3 more with 3 of 5 queued: status %d %s, want 429", r.status, r.body)
	}
	if typ, msg := r.errEnvelope(t); typ != "rate_limit_error" || !strings.Contains(msg, "5") {
		t.Errorf("429 = %s %q, want rate_limit_error naming the limit", typ, msg)
	}
	// One request must be processed first: about an hour at 1 an hour.
	if ra, err := strconv.Atoi(r.header.Get("retry-after")); err != nil || ra < 3000 || ra > 3601 {
		t.Errorf("retry-after = %q, want about 3600", r.header.Get("retry-after"))
	}
	for _, s := range sdks(em.URL) {
		_, err := s.api.create(context.Background(), []batchReq{{ID: "q1", Model: haiku, MaxTokens: 5, Text: "x"}, {ID: "q2", Model: haiku, MaxTokens: 5, Text: "x"}, {ID: "q3", Model: haiku, MaxTokens: 5, Text: "x"}})
		if !isStatus(err, 429, "rate_limit_error") {
			t.Errorf("%s: create over the queue limit: err = %v, want 429 rate_limit_error", s.name, err)
		}
	}
	if r := create("d", "e"); r.status != 200 {
		t.Errorf("2 more, filling the queue to 5: status %d %s, want 200", r.status, r.body)
	}
	if r := create("g", "h", "i", "j", "k", "l"); r.status != 400 {
		t.Errorf("a batch larger than the whole queue: status %d, want 400", r.status)
	}
	em.Server.Clock().Advance(time.Hour + time.Minute) // one request processed
	if r := create("m"); r.status != 200 {
		t.Errorf("1 more after one was processed: status %d %s, want 200", r.status, r.body)
	}
	if r := create("n"); r.status != 429 {
		t.Errorf("queue full again: status %d, want 429", r.status)
	}
}

func TestBatchRPMLimit(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Catalog: smallTier(t, 3, 1000, 100), Tier: "small"})
	calls := []struct {
		method, path string
		body         []byte
	}{
		{"POST", "/v1/messages/batches", batchBody("a", okParams)},
		{"GET", "/v1/messages/batches", nil},
		{"GET", "/v1/messages/batches/msgbatch_nope", nil}, // a 404 still counts
		{"GET", "/v1/messages/batches", nil},
	}
	for i, c := range calls {
		r := rawCall(t, c.method, em.URL+c.path, emulator.Version2023, c.body)
		if i < 3 {
			if r.status == 429 {
				t.Errorf("call %d (%s %s) got 429 within the limit of 3", i, c.method, c.path)
			}
			continue
		}
		if r.status != 429 {
			t.Fatalf("call %d (%s %s): status %d, want 429", i, c.method, c.path, r.status)
		}
		typ, _ := r.errEnvelope(t)
		ra, err := strconv.Atoi(r.header.Get("retry-after"))
		if typ != "rate_limit_error" || err != nil || ra < 1 || ra > 20 {
			t.Errorf("429 type %q retry-after %q, want rate_limit_error and 1..20 s", typ, r.header.Get("retry-after"))
		}
	}
	// Messages traffic does not count against batch RPM.
	msg := rawCall(t, "POST", em.URL+"/v1/messages", emulator.Version2023, []byte(okParams))
	if msg.status != 200 {
		t.Errorf("messages call while batch RPM is spent: status %d, want 200", msg.status)
	}
}

func TestBatchResultsURLPlainGET(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Seed: 9, ClockSpeed: 1000})
	api := sdkFor(em.URL, "v2")
	b, err := api.create(context.Background(), []batchReq{
		{ID: "one", Model: haiku, MaxTokens: 30, Text: "a"},
		{ID: "two", Model: haiku, MaxTokens: 30, Text: "b"},
		{ID: "three", Model: haiku, MaxTokens: 30, Text: "c"},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	e := waitBatch(t, api, b.ID, "ended")
	if !strings.HasPrefix(e.ResultsURL, "http://127.0.0.1:") {
		t.Fatalf("results_url = %q, want absolute on the emulator's host", e.ResultsURL)
	}
	tests := []struct {
		name, accept, wantType string
		auth                   []string
	}{
		{"x-api-key, jsonl", "application/x-jsonl", "application/x-jsonl", nil},
		{"bearer, binary (python SDK)", "application/binary", "application/binary", []string{"x-api-key", "", "Authorization", "Bearer " + testKey}},
	}
	var first []byte
	for _, tt := range tests {
		r := rawCall(t, "GET", e.ResultsURL, emulator.Version2023, nil, append([]string{"Accept", tt.accept}, tt.auth...)...)
		if r.status != 200 || r.header.Get("Content-Type") != tt.wantType {
			t.Fatalf("%s: GET results_url = %d %q, want 200 %s", tt.name, r.status, r.header.Get("Content-Type"), tt.wantType)
		}
		lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
		var ids []string
		for _, l := range lines {
			var x struct {
				CustomID string `json:"custom_id"`
				Result   struct {
					Type    string `json:"type"`
					Message struct {
						Usage struct {
							ServiceTier string `json:"service_tier"`
						} `json:"usage"`
					} `json:"message"`
				} `json:"result"`
			}
			if err := json.Unmarshal([]byte(l), &x); err != nil || x.Result.Type != "succeeded" || x.Result.Message.Usage.ServiceTier != "batch" {
				t.Errorf("%s: line %q is not a succeeded batch result", tt.name, l)
			}
			ids = append(ids, x.CustomID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"one", "three", "two"}) {
			t.Errorf("%s: custom_ids %v, want one, three, two", tt.name, ids)
		}
		if first == nil {
			first = r.body
		} else if !bytes.Equal(first, r.body) {
			t.Errorf("%s: body differs between downloads", tt.name)
		}
	}

	withBase := start(t, emulator.Config{ClockSpeed: 1000, BaseURL: "https://emu.example/"})
	api = sdkFor(withBase.URL, "v1")
	b, err = api.create(context.Background(), []batchReq{{ID: "x", Model: haiku, MaxTokens: 5, Text: "a"}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	e = waitBatch(t, api, b.ID, "ended")
	if want := "https://emu.example/v1/messages/batches/" + b.ID + "/results"; e.ResultsURL != want {
		t.Errorf("results_url with BaseURL = %q, want %q", e.ResultsURL, want)
	}
}

func TestBatchArchived(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{ClockSpeed: 1000})
	for _, s := range sdks(em.URL) {
		b, err := s.api.create(context.Background(), []batchReq{{ID: "x", Model: haiku, MaxTokens: 5, Text: "a"}})
		if err != nil {
			t.Fatalf("%s: create: %v", s.name, err)
		}
		e := waitBatch(t, s.api, b.ID, "ended")
		if !e.ArchivedAt.IsZero() {
			t.Errorf("%s: archived_at = %v right after the end, want null", s.name, e.ArchivedAt)
		}
		if _, _, err := s.api.results(context.Background(), b.ID); err != nil {
			t.Fatalf("%s: results before archiving: %v", s.name, err)
		}
		em.Server.Clock().Advance(29 * 24 * time.Hour)
		a, err := s.api.get(context.Background(), b.ID)
		if err != nil {
			t.Fatalf("%s: get after 29 days: %v", s.name, err)
		}
		if !a.ArchivedAt.Equal(a.CreatedAt.Add(29*24*time.Hour)) || a.Status != "ended" || a.Counts != [5]int64{0, 1, 0, 0, 0} {
			t.Errorf("%s: after 29 days = %s %v archived_at %v, want ended, counts kept, archived_at = created_at + 29d", s.name, a.Status, a.Counts, a.ArchivedAt)
		}
		if _, _, err := s.api.results(context.Background(), b.ID); !isStatus(err, 404, "not_found_error") {
			t.Errorf("%s: results after archiving: err = %v, want 404 not_found_error", s.name, err)
		}
		if _, err := s.api.del(context.Background(), b.ID); err != nil {
			t.Errorf("%s: delete an archived batch: %v", s.name, err)
		}
	}
}

func TestBatchUnknownID(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{})
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/messages/batches/msgbatch_01nope"},
		{"POST", "/v1/messages/batches/msgbatch_01nope/cancel"},
		{"DELETE", "/v1/messages/batches/msgbatch_01nope"},
		{"GET", "/v1/messages/batches/msgbatch_01nope/results"},
		{"GET", "/v1/messages/batches/%00%ff/results"},
	} {
		r := rawCall(t, c.method, em.URL+c.path, emulator.Version2023, nil)
		if r.status != 404 {
			t.Errorf("%s %s: status %d, want 404", c.method, c.path, r.status)
			continue
		}
		if typ, _ := r.errEnvelope(t); typ != "not_found_error" {
			t.Errorf("%s %s: type %q, want not_found_error", c.method, c.path, typ)
		}
	}
	if _, err := sdkFor(em.URL, "v2").get(context.Background(), "msgbatch_01nope"); !isStatus(err, 404, "not_found_error") {
		t.Errorf("SDK get of an unknown id: err = %v, want 404 not_found_error", err)
	}
}

// TestBatchParamsErrorsMatchMessages: bad params are found asynchronously, and each
// errored line carries exactly the error /v1/messages gives for the same body, under
// the API version the batch was created with.
func TestBatchParamsErrorsMatchMessages(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{ClockSpeed: 1000})
	params := []struct{ id, body string }{
		{"unknown-model", `{"model":"claude-zzz","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`},
		{"huge-max-tokens", `{"model":"claude-haiku-4-5","max_tokens":900000,"messages":[{"role":"user","content":"x"}]}`},
		{"no-messages", `{"model":"claude-haiku-4-5","max_tokens":5}`},
		{"extra-field", `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"x"}],"bogus":1}`},
		{"zero-max-tokens", `{"model":"claude-haiku-4-5","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`},
		{"system-role", `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"system","content":[{"type":"text","text":"be brief"}]},{"role":"user","content":"x"}]}`},
	}
	for _, version := range []string{emulator.Version2023, emulator.Version2026} {
		var pairs []string
		for _, p := range params {
			pairs = append(pairs, p.id, p.body)
		}
		pairs = append(pairs, "streaming", `{"model":"claude-haiku-4-5","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
		r := rawCall(t, "POST", em.URL+"/v1/messages/batches", version, batchBody(pairs...))
		if r.status != 200 {
			t.Fatalf("%s: create: %d %s (bad params must not fail the create)", version, r.status, r.body)
		}
		var b struct {
			ID string `json:"id"`
		}
		json.Unmarshal(r.body, &b)
		got := rawResults(t, em, b.ID, version)
		for _, p := range params {
			direct := rawCall(t, "POST", em.URL+"/v1/messages", version, []byte(p.body))
			line := got[p.id]
			if direct.status == 200 {
				if line.Result.Type != "succeeded" {
					t.Errorf("%s %s: /v1/messages succeeds but the batch line is %+v", version, p.id, line.Result)
				}
				continue
			}
			typ, msg := direct.errEnvelope(t)
			e := line.Result.Error
			if line.Result.Type != "errored" || e.Type != "error" || e.Error.Type != typ || e.Error.Message != msg || !strings.HasPrefix(e.RequestID, "req_") {
				t.Errorf("%s %s: batch line %+v, want errored with %s %q as /v1/messages gives", version, p.id, line.Result, typ, msg)
			}
		}
		if l := got["streaming"]; l.Result.Type != "errored" || l.Result.Error.Error.Type != "invalid_request_error" || !strings.Contains(l.Result.Error.Error.Message, "stream") {
			t.Errorf("%s: stream:true line = %+v, want errored invalid_request_error about stream", version, l.Result)
		}
	}
	// The system role is valid only in the 2026 version: the version of the create
	// call decides.
	if direct := rawCall(t, "POST", em.URL+"/v1/messages", emulator.Version2026, []byte(params[5].body)); direct.status != 200 {
		t.Errorf("system role under %s: status %d, want 200 (test premise)", emulator.Version2026, direct.status)
	}
	if direct := rawCall(t, "POST", em.URL+"/v1/messages", emulator.Version2023, []byte(params[5].body)); direct.status != 400 {
		t.Errorf("system role under %s: status %d, want 400 (test premise)", emulator.Version2023, direct.status)
	}
}

type rawLine struct {
	CustomID string `json:"custom_id"`
	Result   struct {
		Type    string `json:"type"`
		Message *struct {
			ID string `json:"id"`
		} `json:"message"`
		Error struct {
			Type  string `json:"type"`
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	} `json:"result"`
}

// rawResults waits for the batch to end and returns its result lines by custom_id.
func rawResults(t *testing.T, em *emulator.Running, id, version string) map[string]rawLine {
	t.Helper()
	waitBatch(t, sdkFor(em.URL, "v1"), id, "ended")
	r := rawCall(t, "GET", em.URL+"/v1/messages/batches/"+id+"/results", version, nil)
	if r.status != 200 {
		t.Fatalf("results: %d %s", r.status, r.body)
	}
	out := make(map[string]rawLine)
	for _, l := range strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n") {
		var x rawLine
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatalf("result line %q: %v", l, err)
		}
		out[x.CustomID] = x
	}
	return out
}

func TestBatchItemErrorRateIsSeeded(t *testing.T) {
	t.Parallel()
	const n = 300
	var pairs []string
	var submitted []string
	for i := range n {
		id := fmt.Sprintf("item-%03d", i)
		submitted = append(submitted, id)
		pairs = append(pairs, id, fmt.Sprintf(`{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"q%d"}]}`, i))
	}
	body := batchBody(pairs...)
	run := func(seed int64) (failed []string, order []string, raw []byte) {
		em := start(t, emulator.Config{Seed: seed, ClockSpeed: 1000, BatchItemErrorRate: 0.3})
		r := rawCall(t, "POST", em.URL+"/v1/messages/batches", emulator.Version2023, body)
		var b struct {
			ID string `json:"id"`
		}
		json.Unmarshal(r.body, &b)
		api := sdkFor(em.URL, "v2")
		e := waitBatch(t, api, b.ID, "ended")
		res, order, err := api.results(context.Background(), b.ID)
		if err != nil {
			t.Fatalf("results: %v", err)
		}
		types := map[string]int{}
		for id, x := range res {
			switch {
			case x.Type == "errored" && (x.ErrType == "api_error" || x.ErrType == "overloaded_error"):
				failed = append(failed, id)
				types[x.ErrType]++
			case x.Type != "succeeded":
				t.Errorf("seed %d: %s = %+v, want succeeded or errored api_error/overloaded_error", seed, id, x)
			}
		}
		if types["api_error"] == 0 || types["overloaded_error"] == 0 {
			t.Errorf("seed %d: failed items by error type %v, want both api_error and overloaded_error", seed, types)
		}
		if e.Counts[2] != int64(len(failed)) || e.Counts[1] != int64(n-len(failed)) {
			t.Errorf("seed %d: counts %v, want %d errored and the rest succeeded", seed, e.Counts, len(failed))
		}
		slices.Sort(failed)
		raw = rawCall(t, "GET", em.URL+"/v1/messages/batches/"+b.ID+"/results", emulator.Version2023, nil).body
		raw2 := rawCall(t, "GET", em.URL+"/v1/messages/batches/"+b.ID+"/results", emulator.Version2023, nil).body
		if !bytes.Equal(raw, raw2) {
			t.Errorf("seed %d: two downloads differ", seed)
		}
		return failed, order, raw
	}
	f1, o1, _ := run(42)
	f2, o2, _ := run(42)
	_, o3, _ := run(43)
	if len(f1) < n*15/100 || len(f1) > n*45/100 {
		t.Errorf("%d of %d failed, want about 30%%", len(f1), n)
	}
	if !slices.Equal(f1, f2) {
		t.Errorf("same seed, different failures: %v vs %v", f1, f2)
	}
	if !slices.Equal(o1, o2) {
		t.Errorf("same seed, different result order")
	}
	if slices.Equal(o1, submitted) || slices.Equal(o1, o3) {
		t.Errorf("result order is the submission order or ignores the seed")
	}
}

// TestBatchLarge runs a largeBatch-request batch end to end on a fast clock.
func TestBatchLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large batch")
	}
	t.Parallel()
	const n = largeBatch
	var b bytes.Buffer
	b.WriteString(`{"requests":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"custom_id":"r%d","params":{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"n%d"}]}}`, i, i)
	}
	b.WriteString(`]}`)
	em := start(t, emulator.Config{Tier: "unlimited", ClockSpeed: 100_000, BatchProcessingRate: 10_000, Output: emulator.OutputModel{MedianTokens: 4}})
	r := rawCall(t, "POST", em.URL+"/v1/messages/batches", emulator.Version2023, b.Bytes())
	if r.status != 200 {
		t.Fatalf("create: %d %.300s", r.status, r.body)
	}
	var created struct {
		ID string `json:"id"`
	}
	json.Unmarshal(r.body, &created)
	api := sdkFor(em.URL, "v2")
	e := waitBatch(t, api, created.ID, "ended")
	if e.Counts != [5]int64{0, n, 0, 0, 0} {
		t.Fatalf("counts = %v, want all %d succeeded", e.Counts, n)
	}
	res, _, err := api.results(context.Background(), created.ID)
	if err != nil || len(res) != n {
		t.Fatalf("results: %d lines, %v; want %d", len(res), err, n)
	}
}

func sdkFor(url, name string) batchAPI {
	for _, s := range sdks(url) {
		if s.name == name {
			return s.api
		}
	}
	panic("unknown sdk " + name)
}

func isStatus(err error, status int, typ string) bool {
	s, ty := apiStatus(err)
	return s == status && ty == typ
}

func resultTypes(res map[string]sdkResult) map[string]string {
	out := make(map[string]string, len(res))
	for id, r := range res {
		out[id] = r.Type
	}
	return out
}

// endedLog passes the batch_id of every "batch ended" log record to ch.
type endedLog struct{ ch chan string }

func (h endedLog) Enabled(context.Context, slog.Level) bool { return true }
func (h endedLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "batch ended" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "batch_id" {
				h.ch <- a.Value.String()
			}
			return true
		})
	}
	return nil
}
func (h endedLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h endedLog) WithGroup(string) slog.Handler      { return h }

// TestBatchEndsWithoutPolling: the engine's goroutine ends batches on its own, and a
// clock jump through the control endpoint wakes it at once.
func TestBatchEndsWithoutPolling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  emulator.Config
		jump string // advance via POST /_emulator/clock after create
	}{
		{"fast clock", emulator.Config{ClockSpeed: 1000}, ""},
		{"clock jump", emulator.Config{BatchProcessingRate: perHour(1)}, "2h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ended := make(chan string, 10)
			tt.cfg.Logger = slog.New(endedLog{ended})
			em := start(t, tt.cfg)
			b, err := sdkFor(em.URL, "v2").create(context.Background(), []batchReq{{ID: "x", Model: haiku, MaxTokens: 5, Text: "a"}})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if tt.jump != "" {
				resp, err := http.Post(em.URL+"/_emulator/clock", "application/json", strings.NewReader(`{"advance":"`+tt.jump+`"}`))
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("advance the clock: %v %v", resp, err)
				}
				resp.Body.Close()
			}
			select {
			case id := <-ended:
				if id != b.ID {
					t.Errorf("ended batch %s, want %s", id, b.ID)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("batch %s did not end within 20 s without polling", b.ID)
			}
		})
	}
}

// TestBatchRetentionConfigured: Config.BatchRetention moves archived_at, and the
// results stay downloadable until then.
func TestBatchRetentionConfigured(t *testing.T) {
	t.Parallel()
	const keep = 40 * 24 * time.Hour
	em := start(t, emulator.Config{ClockSpeed: 1000, BatchRetention: keep})
	s := sdks(em.URL)[0]
	b, err := s.api.create(context.Background(), []batchReq{{ID: "x", Model: haiku, MaxTokens: 5, Text: "a"}})
	if err != nil {
		t.Fatalf("%s: create: %v", s.name, err)
	}
	waitBatch(t, s.api, b.ID, "ended")
	em.Server.Clock().Advance(30 * 24 * time.Hour)
	if _, _, err := s.api.results(context.Background(), b.ID); err != nil {
		t.Fatalf("results after 30 days with a retention of 40: %v", err)
	}
	em.Server.Clock().Advance(10 * 24 * time.Hour)
	a, err := s.api.get(context.Background(), b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !a.ArchivedAt.Equal(a.CreatedAt.Add(keep)) {
		t.Errorf("archived_at = %v, want created_at + 40 days (%v)", a.ArchivedAt, a.CreatedAt.Add(keep))
	}
	if _, _, err := s.api.results(context.Background(), b.ID); !isStatus(err, 404, "not_found_error") {
		t.Errorf("results after 40 days: err = %v, want 404 not_found_error", err)
	}
}
