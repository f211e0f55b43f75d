package emulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/testkit"
)

const secretPrompt = "the secret prompt text 7f3a"

// TestMetricsCountRequests makes a few requests, one of them refused with a 429, and
// reads the counts back from /metrics as a Prometheus scraper would.
func TestMetricsCountRequests(t *testing.T) {
	t.Parallel()
	// A frozen clock keeps the buckets from refilling, and a burst fraction of 1/50
	// makes the tier-1 Haiku 4.5 request bucket (50 RPM) hold exactly one request.
	frozen := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	em := start(t, emulator.Config{
		Tier:          "tier-1",
		BurstFraction: 1.0 / 50,
		Registry:      prometheus.NewRegistry(),
		Now:           func() time.Time { return frozen },
	})
	c := clientV2(em.URL)
	ctx := context.Background()
	params := anthropic.MessageNewParams{
		Model:     anthropic.ModelClaudeHaiku4_5,
		MaxTokens: 50,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(secretPrompt))},
	}
	msg, err := c.Messages.New(ctx, params)
	if err != nil {
		t.Fatalf("first Messages.New error: %v", err)
	}
	_, err = c.Messages.New(ctx, params)
	var apiErr *anthropic.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second Messages.New error = %v, want a 429", err)
	}
	if _, err := c.Messages.CountTokens(ctx, anthropic.MessageCountTokensParams{
		Model:    anthropic.ModelClaudeHaiku4_5,
		Messages: params.Messages,
	}); err != nil {
		t.Fatalf("CountTokens error: %v", err)
	}
	// No key at all: a 401 that names no model class.
	req, _ := http.NewRequest(http.MethodGet, em.URL+"/v1/models", nil)
	req.Header.Set("anthropic-version", emulator.Version2023)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/models error: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v1/models without a key = %d, want 401", resp.StatusCode)
	}

	// The response counter is incremented after the body is written, so poll until
	// the last request shows up.
	var fams map[string]*dto.MetricFamily
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, fams = scrape(t, em.URL)
		if value(fams, "clade_emulator_responses_total", "endpoint", "models", "code", "401", "class", "none") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never counted the 401:\n%s", body)
		}
	}

	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"messages 200", "clade_emulator_responses_total", []string{"endpoint", "messages", "code", "200", "class", "haiku-4-5"}, 1},
		{"messages 429", "clade_emulator_responses_total", []string{"endpoint", "messages", "code", "429", "class", "haiku-4-5"}, 1},
		{"count_tokens 200", "clade_emulator_responses_total", []string{"endpoint", "count_tokens", "code", "200", "class", "none"}, 1},
		{"429 by limit", "clade_emulator_rate_limited_total", []string{"class", "haiku-4-5", "limit", "requests"}, 1},
		{"errors by type", "clade_emulator_errors_total", []string{"type", "rate_limit_error"}, 1},
		{"auth errors", "clade_emulator_errors_total", []string{"type", "authentication_error"}, 1},
		{"no overloads", "clade_emulator_overloaded_total", nil, 0},
		{"input tokens", "clade_emulator_tokens_total", []string{"class", "haiku-4-5", "direction", "input"}, float64(msg.Usage.InputTokens)},
		{"output tokens", "clade_emulator_tokens_total", []string{"class", "haiku-4-5", "direction", "output"}, float64(msg.Usage.OutputTokens)},
		{"cache reads", "clade_emulator_tokens_total", []string{"class", "haiku-4-5", "direction", "cache_read"}, 0},
		{"durations", "clade_emulator_request_duration_seconds", []string{"endpoint", "messages", "class", "haiku-4-5"}, 2},
		{"rpm limit", "clade_emulator_ratelimit_limit_per_minute", []string{"class", "haiku-4-5", "limit", "requests"}, 50},
		{"otpm limit", "clade_emulator_ratelimit_limit_per_minute", []string{"class", "haiku-4-5", "limit", "output_tokens"}, 10000},
		{"rpm capacity", "clade_emulator_ratelimit_capacity", []string{"class", "haiku-4-5", "limit", "requests"}, 1},
		{"unused class is full", "clade_emulator_ratelimit_remaining", []string{"class", "sonnet-4", "limit", "requests"}, 1},
	}
	for _, tt := range tests {
		if got := value(fams, tt.metric, tt.labels...); got != tt.want {
			t.Errorf("%s: %s%v = %v, want %v", tt.name, tt.metric, tt.labels, got, tt.want)
		}
	}
	if got := value(fams, "clade_emulator_ratelimit_remaining", "class", "haiku-4-5", "limit", "requests"); got >= 1 {
		t.Errorf("remaining requests of haiku-4-5 = %v, want < 1 after the bucket was emptied", got)
	}
	if got := value(fams, "clade_emulator_ratelimit_remaining", "class", "haiku-4-5", "limit", "output_tokens"); got != 200-float64(msg.Usage.OutputTokens) {
		t.Errorf("remaining output tokens of haiku-4-5 = %v, want %v (capacity 200 less the output)", got, 200-float64(msg.Usage.OutputTokens))
	}
	for _, secret := range []string{"claude-haiku-4-5", testKey} {
		if strings.Contains(body, secret) {
			t.Errorf("/metrics contains %q, want model strings and keys never used as labels", secret)
		}
	}
}

// TestRequestLogLine checks the one Debug line per API request: its keys, and that it
// carries neither the key, nor the prompt, nor the completion.
func TestRequestLogLine(t *testing.T) {
	t.Parallel()
	var buf testkit.Buffer
	em := start(t, emulator.Config{
		Tier:   "unlimited",
		Logger: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	c := clientV2(em.URL)
	var resp *http.Response
	msg, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{
		Model:     anthropic.ModelClaudeSonnet5,
		MaxTokens: 30,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(secretPrompt))},
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("Messages.New error: %v", err)
	}
	rid := resp.Header.Get("request-id")

	var line map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for line == nil {
		for _, l := range strings.Split(buf.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["request_id"] == rid {
				line = m
			}
		}
		if line == nil && time.Now().After(deadline) {
			t.Fatalf("no log line with request_id %s in:\n%s", rid, buf.String())
		}
	}
	want := map[string]any{"level": "DEBUG", "endpoint": "messages", "status": float64(200), "model_class": "sonnet-5"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log line %s = %v, want %v", k, line[k], v)
		}
	}
	if d, ok := line["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("log line duration_ms = %v, want a non-negative number", line["duration_ms"])
	}
	text := msg.Content[0].Text
	for _, secret := range []string{testKey, secretPrompt, text[:min(len(text), 40)], "claude-sonnet-5"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("log contains %q, want no key, prompt, completion or model string", secret)
		}
	}
}

// scrape GETs /metrics and parses it as Prometheus text.
func scrape(t *testing.T, url string) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics error: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d, %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, b)
	}
	return string(b), fams
}

// value returns the value of the series of family name with the given label pairs
// (a histogram gives its sample count), or -1 if there is no such series.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestMetricsSharedRegistry: two emulators on one registry both start, and their
// responses add up in one set of series.
func TestMetricsSharedRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a := start(t, emulator.Config{Tier: "unlimited", Registry: reg})
	b := start(t, emulator.Config{Tier: "unlimited", Registry: reg})
	for _, em := range []*emulator.Running{a, b} {
		c := clientV2(em.URL)
		if _, err := c.Models.List(context.Background(), anthropic.ModelListParams{}); err != nil {
			t.Fatalf("Models.List error: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, fams := scrape(t, a.URL)
		if got := value(fams, "clade_emulator_responses_total", "endpoint", "models", "code", "200"); got == 2 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("models 200 responses = %v, want 2 from both emulators:\n%s", got, body)
		}
	}
}
