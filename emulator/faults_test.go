package emulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	anthropic1 "github.com/anthropics/anthropic-sdk-go"
	anthropic "github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/clade-dev/clade/emulator"
)

// faultClock is a settable clock for burst windows and spend-cap dates.
type faultClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFaultClock(t time.Time) *faultClock { return &faultClock{t: t} }

func (c *faultClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *faultClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func hello(model anthropic.Model, maxTokens int64) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model: model, MaxTokens: maxTokens,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hello there"))},
	}
}

func hello1(maxTokens int64) anthropic1.MessageNewParams {
	return anthropic1.MessageNewParams{
		Model: anthropic1.ModelClaudeHaiku4_5, MaxTokens: maxTokens,
		Messages: []anthropic1.MessageParam{anthropic1.NewUserMessage(anthropic1.NewTextBlock("Hello there"))},
	}
}

// faultPost sends a Messages request with v1 headers and returns status, headers, body.
func faultPost(t *testing.T, url, path, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", testKey)
	req.Header.Set("anthropic-version", emulator.Version2023)
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, b
}

const helloBody = `{"model":"claude-haiku-4-5","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`

// faultEnvelope is the error body with details.
type faultEnvelope struct {
	Type  string `json:"type"`
	Error struct {
		Type    string            `json:"type"`
		Message string            `json:"message"`
		Details map[string]string `json:"details"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func TestFaultOverloadedSDK(t *testing.T) {
	t.Parallel()
	clock := newFaultClock(time.Date(2026, 8, 14, 12, 0, 0, 0, time.UTC))
	em := start(t, emulator.Config{Now: clock.Now, Faults: emulator.Faults{Overloaded: 1}})

	t.Run("v2", func(t *testing.T) {
		c := clientV2(em.URL)
		for i := range 3 {
			_, err := c.Messages.New(context.Background(), hello(anthropic.ModelClaudeSonnet5_5, 100))
			var apiErr *anthropic.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("request %d: Messages.New error = %v, want an API error", i, err)
			}
			if apiErr.StatusCode != 529 || apiErr.Type() != "overloaded_error" || apiErr.Message != "Overloaded" {
				t.Errorf("request %d: error = %d %q %q, want 529 overloaded_error \"Overloaded\"", i, apiErr.StatusCode, apiErr.Type(), apiErr.Message)
			}
			// Decided before admission: nothing is taken from the request bucket.
			h := apiErr.Response.Header
			if lim, rem := h.Get("anthropic-ratelimit-requests-limit"), h.Get("anthropic-ratelimit-requests-remaining"); lim == "" || rem != lim {
				t.Errorf("request %d: requests remaining/limit = %q/%q, want equal (a 529 charges nothing)", i, rem, lim)
			}
		}
	})
	t.Run("v1", func(t *testing.T) {
		c := clientV1(em.URL)
		_, err := c.Messages.New(context.Background(), hello1(100))
		var apiErr *anthropic1.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("Messages.New error = %v, want an API error", err)
		}
		if apiErr.StatusCode != 529 || apiErr.Type() != "overloaded_error" {
			t.Errorf("error = %d %q, want 529 overloaded_error", apiErr.StatusCode, apiErr.Type())
		}
		if !strings.Contains(apiErr.RawJSON(), `"message":"Overloaded"`) {
			t.Errorf("body = %s, want message Overloaded", apiErr.RawJSON())
		}
	})
}

// streamOutcome is what one SDK stream saw.
type streamOutcome struct {
	started bool // got message_start, so the response was a 200
	deltas  int  // content_block_delta events before the end
	stopped bool // got message_stop
	err     error
}

func streamV2(c anthropic.Client, maxTokens int64) streamOutcome {
	var o streamOutcome
	st := c.Messages.NewStreaming(context.Background(), hello(anthropic.ModelClaudeSonnet5_5, maxTokens))
	for st.Next() {
		switch st.Current().Type {
		case "message_start":
			o.started = true
		case "content_block_delta":
			o.deltas++
		case "message_stop":
			o.stopped = true
		}
	}
	o.err = st.Err()
	st.Close()
	return o
}

func streamV1(c anthropic1.Client, maxTokens int64) streamOutcome {
	var o streamOutcome
	st := c.Messages.NewStreaming(context.Background(), hello1(maxTokens))
	for st.Next() {
		switch st.Current().Type {
		case "message_start":
			o.started = true
		case "content_block_delta":
			o.deltas++
		case "message_stop":
			o.stopped = true
		}
	}
	o.err = st.Err()
	st.Close()
	return o
}

func TestFaultStreamErrorAfter200(t *testing.T) {
	t.Parallel()
	// 200 output tokens a response: 25 deltas of 8 tokens.
	em := start(t, emulator.Config{Tier: "unlimited", Seed: 11,
		Output: emulator.OutputModel{MedianTokens: 200}, Faults: emulator.Faults{StreamError: 1}})

	check := func(t *testing.T, o streamOutcome, status int, errType string) {
		t.Helper()
		if !o.started || o.stopped {
			t.Errorf("stream started/stopped = %v/%v, want a 200 (message_start) and no message_stop", o.started, o.stopped)
		}
		if status != 200 || errType != "overloaded_error" {
			t.Errorf("stream error = %d %q (%v), want an API error 200 overloaded_error", status, errType, o.err)
		}
		if o.deltas >= 25 {
			t.Errorf("deltas before the error = %d, want fewer than the 25 of the whole output", o.deltas)
		}
	}
	t.Run("v1", func(t *testing.T) {
		o := streamV1(clientV1(em.URL), 1000)
		var apiErr *anthropic1.Error
		if !errors.As(o.err, &apiErr) {
			t.Fatalf("stream Err() = %v, want an API error", o.err)
		}
		check(t, o, apiErr.StatusCode, string(apiErr.Type()))
	})
	t.Run("v2", func(t *testing.T) {
		c := clientV2(em.URL)
		points := map[int]bool{}
		for range 12 {
			o := streamV2(c, 1000)
			var apiErr *anthropic.Error
			if !errors.As(o.err, &apiErr) {
				t.Fatalf("stream Err() = %v, want an API error", o.err)
			}
			check(t, o, apiErr.StatusCode, string(apiErr.Type()))
			if apiErr.Message != "Overloaded" {
				t.Errorf("stream error message = %q, want Overloaded", apiErr.Message)
			}
			points[o.deltas] = true
		}
		if len(points) < 3 {
			t.Errorf("12 streams failed after %v deltas, want the error at varying points of the output", points)
		}
	})
}

func TestFaultServerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		faults     emulator.Faults
		status     int
		errType    string
		retryAfter string
		code       string
	}{
		{name: "server_error", faults: emulator.Faults{ServerError: 1}, status: 500, errType: "api_error"},
		{name: "timeout", faults: emulator.Faults{Timeout: 1}, status: 504, errType: "timeout_error"},
		{name: "ramp", faults: emulator.Faults{Ramp: 1, RampRetryAfter: 1500 * time.Millisecond}, status: 429, errType: "rate_limit_error", retryAfter: "2", code: "ramp_limit_exceeded"},
		{name: "ramp default", faults: emulator.Faults{Ramp: 1}, status: 429, errType: "rate_limit_error", retryAfter: "10", code: "ramp_limit_exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{Tier: "unlimited", Faults: tt.faults})
			cl := clientV2(em.URL)
			_, err := cl.Messages.New(context.Background(), hello(anthropic.ModelClaudeHaiku4_5, 100))
			var apiErr *anthropic.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("Messages.New error = %v, want an API error", err)
			}
			if apiErr.StatusCode != tt.status || string(apiErr.Type()) != tt.errType {
				t.Errorf("error = %d %q, want %d %q", apiErr.StatusCode, apiErr.Type(), tt.status, tt.errType)
			}
			if got := apiErr.Response.Header.Get("retry-after"); got != tt.retryAfter {
				t.Errorf("retry-after = %q, want %q", got, tt.retryAfter)
			}
			if apiErr.Details.ErrorCode != tt.code {
				t.Errorf("details.error_code = %q, want %q", apiErr.Details.ErrorCode, tt.code)
			}
			cl1 := clientV1(em.URL)
			_, err = cl1.Messages.New(context.Background(), hello1(100))
			var apiErr1 *anthropic1.Error
			if !errors.As(err, &apiErr1) || apiErr1.StatusCode != tt.status || string(apiErr1.Type()) != tt.errType {
				t.Errorf("v1 Messages.New error = %v, want %d %s", err, tt.status, tt.errType)
			}
		})
	}
}

func TestFaultDropIsTransportError(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited", Seed: 5,
		Output: emulator.OutputModel{MedianTokens: 200}, Faults: emulator.Faults{Drop: 1}})
	t.Run("v2", func(t *testing.T) {
		cl := clientV2(em.URL)
		_, err := cl.Messages.New(context.Background(), hello(anthropic.ModelClaudeHaiku4_5, 100))
		var apiErr *anthropic.Error
		if err == nil || errors.As(err, &apiErr) {
			t.Fatalf("Messages.New error = %v, want a transport error, not an API error", err)
		}
	})
	t.Run("v1", func(t *testing.T) {
		cl := clientV1(em.URL)
		_, err := cl.Messages.New(context.Background(), hello1(100))
		var apiErr *anthropic1.Error
		if err == nil || errors.As(err, &apiErr) {
			t.Fatalf("Messages.New error = %v, want a transport error, not an API error", err)
		}
	})
	t.Run("v2 stream", func(t *testing.T) {
		o := streamV2(clientV2(em.URL), 1000)
		var apiErr *anthropic.Error
		if !o.started || o.stopped || o.err == nil || errors.As(o.err, &apiErr) {
			t.Fatalf("stream started/stopped/err = %v/%v/%v, want a 200 cut mid-stream with a transport error", o.started, o.stopped, o.err)
		}
	})
	t.Run("v1 stream", func(t *testing.T) {
		o := streamV1(clientV1(em.URL), 1000)
		var apiErr *anthropic1.Error
		if !o.started || o.stopped || o.err == nil || errors.As(o.err, &apiErr) {
			t.Fatalf("stream started/stopped/err = %v/%v/%v, want a 200 cut mid-stream with a transport error", o.started, o.stopped, o.err)
		}
	})
}

func TestFaultSpendCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		now  time.Time
		back string
	}{
		{name: "mid month", now: time.Date(2026, 8, 14, 12, 0, 0, 0, time.UTC), back: "2026-09-01"},
		{name: "new year", now: time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC), back: "2027-01-01"},
		{name: "UTC not local", now: time.Date(2026, 3, 1, 1, 0, 0, 0, time.FixedZone("UTC+5", 5*3600)), back: "2026-03-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{Now: func() time.Time { return tt.now }, Faults: emulator.Faults{SpendCap: true}})
			for i := range 2 {
				status, h, body := faultPost(t, em.URL, "/v1/messages", helloBody)
				if status != 429 {
					t.Fatalf("status = %d (%s), want 429", status, body)
				}
				if v, ok := h["Retry-After"]; ok {
					t.Errorf("retry-after = %q, want none on a spend-cap 429", v)
				}
				var env faultEnvelope
				if err := json.Unmarshal(body, &env); err != nil {
					t.Fatalf("body %s: %v", body, err)
				}
				if env.Type != "error" || env.Error.Type != "rate_limit_error" || env.Error.Details["error_code"] != "enforced_spend_limit_reached" {
					t.Errorf("body = %s, want rate_limit_error with details.error_code enforced_spend_limit_reached", body)
				}
				want := "You will regain access on " + tt.back + " at 00:00 UTC."
				if !strings.HasPrefix(env.Error.Message, "You have reached your API usage limits") || !strings.HasSuffix(env.Error.Message, want) {
					t.Errorf("message = %q, want it to start with the usage-limits text and end %q", env.Error.Message, want)
				}
				if lim, rem := h.Get("anthropic-ratelimit-requests-limit"), h.Get("anthropic-ratelimit-requests-remaining"); lim == "" || rem != lim {
					t.Errorf("request %d: requests remaining/limit = %q/%q, want equal (a spend-cap 429 charges nothing)", i, rem, lim)
				}
			}
		})
	}
	t.Run("SDK v2", func(t *testing.T) {
		t.Parallel()
		em := start(t, emulator.Config{Tier: "unlimited", Faults: emulator.Faults{SpendCap: true}})
		cl := clientV2(em.URL)
		_, err := cl.Messages.New(context.Background(), hello(anthropic.ModelClaudeHaiku4_5, 100))
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Details.ErrorCode != "enforced_spend_limit_reached" {
			t.Fatalf("Messages.New error = %v, want 429 with details.error_code enforced_spend_limit_reached", err)
		}
	})
	t.Run("after N requests", func(t *testing.T) {
		t.Parallel()
		em := start(t, emulator.Config{Tier: "unlimited", Faults: emulator.Faults{SpendCap: true, SpendCapAfter: 3}})
		var got []int
		for range 6 {
			status, _, _ := faultPost(t, em.URL, "/v1/messages", helloBody)
			got = append(got, status)
		}
		if want := []int{200, 200, 200, 429, 429, 429}; !equalInts(got, want) {
			t.Errorf("statuses = %v, want %v", got, want)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFaultBurstWindow(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 8, 14, 12, 0, 0, 0, time.UTC)
	clock := newFaultClock(t0)
	em := start(t, emulator.Config{Tier: "unlimited", Now: clock.Now,
		Faults: emulator.Faults{BurstEvery: 10 * time.Second, BurstFor: 2 * time.Second}})
	// The first request anchors the periods: bursts are [8s, 10s), [18s, 20s), …
	steps := []struct {
		at     time.Duration
		status int
	}{
		{0, 200},
		{7999 * time.Millisecond, 200},
		{8 * time.Second, 529},
		{9 * time.Second, 529},
		{9999 * time.Millisecond, 529},
		{10 * time.Second, 200},
		{15 * time.Second, 200},
		{18500 * time.Millisecond, 529},
		{20 * time.Second, 200},
	}
	for _, st := range steps {
		clock.Set(t0.Add(st.at))
		n := 1
		if st.status == 529 {
			n = 20 // every request in the window
		}
		for i := range n {
			status, _, body := faultPost(t, em.URL, "/v1/messages", helloBody)
			if status != st.status {
				t.Errorf("at +%v request %d: status = %d (%.80s), want %d", st.at, i, status, body, st.status)
			}
		}
	}
}

func TestFaultSlowAddsDelay(t *testing.T) {
	t.Parallel()
	const delay = 40 * time.Millisecond
	em := start(t, emulator.Config{Tier: "unlimited", Faults: emulator.Faults{Slow: 1, SlowDelay: delay}})
	c := clientV2(em.URL)
	begin := time.Now()
	if _, err := c.Messages.New(context.Background(), hello(anthropic.ModelClaudeHaiku4_5, 100)); err != nil {
		t.Fatalf("Messages.New error: %v", err)
	}
	if d := time.Since(begin); d < delay {
		t.Errorf("slow response took %v, want at least %v", d, delay)
	}
	begin = time.Now()
	if o := streamV2(c, 100); o.err != nil || !o.stopped {
		t.Fatalf("slow stream = %+v, want a complete stream", o)
	}
	if d := time.Since(begin); d < delay {
		t.Errorf("slow stream took %v, want at least %v", d, delay)
	}
}

func TestFaultEndpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		endpoints []string
		want      map[string]int // endpoint -> status
	}{
		{name: "default", endpoints: nil, want: map[string]int{"messages": 529, "count_tokens": 200, "models": 200, "batches": 200}},
		{name: "count_tokens only", endpoints: []string{"count_tokens"}, want: map[string]int{"messages": 200, "count_tokens": 529, "models": 200, "batches": 200}},
		{name: "models", endpoints: []string{"messages", "models"}, want: map[string]int{"messages": 529, "count_tokens": 200, "models": 529, "batches": 200}},
		{name: "batches", endpoints: []string{"batches"}, want: map[string]int{"messages": 200, "count_tokens": 200, "models": 200, "batches": 529}},
		{name: "all", endpoints: []string{"all"}, want: map[string]int{"messages": 529, "count_tokens": 529, "models": 529, "batches": 529}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			em := start(t, emulator.Config{Tier: "unlimited", Faults: emulator.Faults{Overloaded: 1, Endpoints: tt.endpoints}})
			got := map[string]int{}
			got["messages"], _, _ = faultPost(t, em.URL, "/v1/messages", helloBody)
			got["count_tokens"], _, _ = faultPost(t, em.URL, "/v1/messages/count_tokens", `{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}`)
			cl := clientV2(em.URL)
			sdkStatus := func(what string, err error) int {
				var apiErr *anthropic.Error
				if errors.As(err, &apiErr) {
					return apiErr.StatusCode
				} else if err != nil {
					t.Fatalf("%s error: %v", what, err)
				}
				return 200
			}
			_, err := cl.Models.List(context.Background(), anthropic.ModelListParams{})
			got["models"] = sdkStatus("Models.List", err)
			_, err = cl.Messages.Batches.List(context.Background(), anthropic.MessageBatchListParams{})
			got["batches"] = sdkStatus("Batches.List", err)
			for ep, want := range tt.want {
				if got[ep] != want {
					t.Errorf("%s status = %d, want %d", ep, got[ep], want)
				}
			}
		})
	}
}

func faultsDo(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url+"/_emulator/faults", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s /_emulator/faults: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s /_emulator/faults Content-Type = %q, want application/json", method, ct)
	}
	return resp.StatusCode, b
}

func TestFaultsChangeAtRuntime(t *testing.T) {
	t.Parallel()
	em := start(t, emulator.Config{Tier: "unlimited"})
	expect := func(step string, want int) {
		t.Helper()
		if status, _, body := faultPost(t, em.URL, "/v1/messages", helloBody); status != want {
			t.Errorf("%s: messages status = %d (%s), want %d", step, status, body, want)
		}
	}
	expect("no faults", 200)

	if status, body := faultsDo(t, http.MethodPut, em.URL, `{"overloaded":1,"slow_delay":"3s"}`); status != 200 {
		t.Fatalf("PUT JSON = %d %s, want 200", status, body)
	}
	expect("after PUT overloaded", 529)
	status, body := faultsDo(t, http.MethodGet, em.URL, "")
	var got emulator.Faults
	if err := json.Unmarshal(body, &got); status != 200 || err != nil {
		t.Fatalf("GET = %d %s (%v), want 200 and a Faults object", status, body, err)
	}
	if got.Overloaded != 1 || got.SlowDelay != 3*time.Second || !strings.Contains(string(body), `"slow_delay":"3s"`) {
		t.Errorf("GET = %s, want overloaded 1 and slow_delay \"3s\"", body)
	}

	if status, body := faultsDo(t, http.MethodPut, em.URL, "server_error=1"); status != 200 {
		t.Fatalf("PUT spec = %d %s, want 200", status, body)
	}
	expect("after PUT server_error spec", 500)

	bad := []struct{ body, names string }{
		{`{"overloaded":2}`, "overloaded"},
		{`{"overloaded":0.5,"timeout":0.6}`, "timeout"},
		{`{"overloded":1}`, "overloded"},
		{`{"burst_every":"soon"}`, "burst_every"},
		{`drop=lots`, "drop=lots"},
	}
	for _, b := range bad {
		status, body := faultsDo(t, http.MethodPut, em.URL, b.body)
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(body, &e); status != 400 || err != nil || !strings.Contains(e.Error, b.names) {
			t.Errorf("PUT %s = %d %s, want 400 with an error naming %q", b.body, status, body, b.names)
		}
	}
	expect("bad PUTs change nothing", 500)

	if err := em.Server.SetFaults(emulator.Faults{Timeout: 1}); err != nil {
		t.Fatalf("SetFaults error: %v", err)
	}
	expect("after SetFaults timeout", 504)
	if err := em.Server.SetFaults(emulator.Faults{Timeout: -1}); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("SetFaults(timeout -1) error = %v, want one naming timeout", err)
	}
	if f := em.Server.Faults(); f.Timeout != 1 {
		t.Errorf("Faults() after a rejected SetFaults = %+v, want timeout 1 still", f)
	}
	if status, body := faultsDo(t, http.MethodPut, em.URL, `{}`); status != 200 {
		t.Fatalf("PUT {} = %d %s, want 200", status, body)
	}
	expect("after PUT {}", 200)
}

func TestFaultsInvalidConfig(t *testing.T) {
	t.Parallel()
	_, err := emulator.New(emulator.Config{Faults: emulator.Faults{Drop: 1.5}})
	if err == nil || !strings.Contains(err.Error(), "drop") {
		t.Errorf("New(drop 1.5) error = %v, want one naming drop", err)
	}
}
