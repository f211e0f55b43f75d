package upstream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clade-dev/clade/emulator"
	"github.com/clade-dev/clade/internal/upstream"
)

// wireTap is an http.RoundTripper that keeps each request body and a copy of each
// response body as the client read it: the emulator stays the server.
type wireTap struct {
	mu   sync.Mutex
	reqs [][]byte
	resp []*bytes.Buffer
}

func (w *wireTap) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	buf := &bytes.Buffer{}
	w.mu.Lock()
	w.reqs = append(w.reqs, body)
	w.resp = append(w.resp, buf)
	w.mu.Unlock()
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(resp.Body, buf), resp.Body}
	return resp, nil
}

// sseText concatenates the text_delta texts of a raw SSE stream, decoded with
// encoding/json: a reference independent of the client's splicing.
func sseText(t *testing.T, raw string) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range strings.Split(raw, "\n\n") {
		_, data, ok := strings.Cut(ev, "data: ")
		if !ok {
			continue
		}
		var e struct {
			Delta struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"delta"`
		}
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatalf("stream event %q: %v", data, err)
		}
		if e.Delta.Type == "text_delta" {
			b.WriteString(e.Delta.Text)
		}
	}
	return b.String()
}

var (
	idRE   = regexp.MustCompile(`"id":"(msg|toolu)_[0-9A-Za-z]+"`)
	textRE = regexp.MustCompile(`"text":"[^"]*"`)
)

// normalize blanks what differs between two answers of the emulator to requests
// that differ only by "stream": ids (random) and the filler text (drawn from the
// body's hash), keeping the text's length.
func normalize(body []byte) string {
	s := idRE.ReplaceAllString(string(body), `"id":"$1_X"`)
	return textRE.ReplaceAllStringFunc(s, func(m string) string {
		return `"text":"` + strings.Repeat(".", len(m)-len(`"text":""`)) + `"`
	})
}

// TestMessagesStreamMatchesMessages checks that a streamed call comes back as the
// non-streaming call would: the same JSON, member for member and in the same order,
// and the same Response fields. The emulator's answer is fixed by its seed and the
// request body, and "stream": true is part of the body, so the streamed and the
// non-streaming answers share their length (a fixed output model), structure and
// tool input, but not their ids or filler text: ids are compared by shape, the
// text by length, and the streamed text against the text_deltas on the wire.
func TestMessagesStreamMatchesMessages(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{Seed: 11, Output: emulator.OutputModel{MedianTokens: 300}})
	tests := []struct {
		name, params, stop string
	}{
		{name: "text", params: `{"model":"claude-haiku-4-5","max_tokens":1000,"messages":[{"role":"user","content":"Tell me a story"}]}`, stop: "end_turn"},
		{name: "max_tokens", params: ` {"model":"claude-haiku-4-5", "max_tokens":100,"messages":[{"role":"user","content":"Tell me a longer story"}]}`, stop: "max_tokens"},
		{name: "tool_use", params: `{"model":"claude-sonnet-5","max_tokens":30000,"tool_choice":{"type":"tool","name":"get_weather"},` +
			`"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string","enum":["Paris"]},"unit":{"type":"string","enum":["celsius"]}}}}],` +
			`"messages":[{"role":"user","content":"Weather in Paris?"}]}`, stop: "tool_use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tap := &wireTap{}
			c := newClient(t, em.URL, func(c *upstream.Config) { c.HTTPClient = &http.Client{Transport: tap} })
			plain, err := c.Messages(context.Background(), []byte(tt.params))
			if err != nil {
				t.Fatalf("Messages: %v", err)
			}
			streamed, err := c.MessagesStream(context.Background(), []byte(tt.params))
			if err != nil {
				t.Fatalf("MessagesStream: %v", err)
			}
			if got, want := normalize(streamed.Body), normalize(plain.Body); got != want {
				t.Errorf("MessagesStream body =\n%s\nwant (as Messages)\n%s", got, want)
			}
			if streamed.StopReason != tt.stop || streamed.StopReason != plain.StopReason || streamed.Model != plain.Model ||
				streamed.Usage != plain.Usage || streamed.Status != 200 {
				t.Errorf("MessagesStream = status %d stop %q model %q usage %+v, want 200 and Messages' %q %q %+v",
					streamed.Status, streamed.StopReason, streamed.Model, streamed.Usage, plain.StopReason, plain.Model, plain.Usage)
			}
			if !strings.HasPrefix(streamed.ID, "msg_") || streamed.ID == plain.ID || !bytes.Contains(streamed.Body, []byte(`"id":"`+streamed.ID+`"`)) {
				t.Errorf("MessagesStream ID = %q, want the message_start id (msg_...) found in Body", streamed.ID)
			}
			if !strings.HasPrefix(streamed.RequestID, "req_") || streamed.RateLimit.RequestID != streamed.RequestID ||
				!streamed.RateLimit.Requests.Valid || !streamed.RateLimit.OutputTokens.Valid || streamed.Duration <= 0 {
				t.Errorf("MessagesStream RequestID %q, RateLimit %+v, Duration %v: want the response's headers and a duration",
					streamed.RequestID, streamed.RateLimit, streamed.Duration)
			}

			tap.mu.Lock()
			defer tap.mu.Unlock()
			if want := `{"stream":true,` + strings.TrimPrefix(strings.TrimSpace(tt.params), "{"); len(tap.reqs) != 2 ||
				strings.TrimSpace(string(tap.reqs[1])) != want {
				t.Errorf("stream request on the wire = %q, want the params with \"stream\":true spliced in: %q", tap.reqs[1], want)
			}
			var m struct {
				Content []struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"content"`
			}
			if err := json.Unmarshal(streamed.Body, &m); err != nil {
				t.Fatalf("streamed body: %v", err)
			}
			text := ""
			for _, b := range m.Content {
				text += b.Text
			}
			if want := sseText(t, tap.resp[1].String()); text != want {
				t.Errorf("streamed text = %.60q… (%d bytes), want the text_deltas on the wire %.60q… (%d bytes)", text, len(text), want, len(want))
			}
		})
	}
}

// TestMessagesStreamErrorEvent checks that an error event after the 200 (the
// emulator's stream_error fault: overloaded_error at a random point of the output)
// is the *APIError a 529 response would have been, so the runner retries it the
// same way.
func TestMessagesStreamErrorEvent(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{Faults: emulator.Faults{StreamError: 1}})
	_, err := newClient(t, em.URL).MessagesStream(context.Background(), []byte(params))
	var ae *upstream.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("MessagesStream under stream_error = %v, want an *APIError", err)
	}
	if ae.Status != 529 || ae.Type != "overloaded_error" || ae.Message != "Overloaded" || upstream.Classify(err) != upstream.Overloaded {
		t.Errorf("APIError = %d %s %q (class %v), want 529 overloaded_error \"Overloaded\" (overloaded)", ae.Status, ae.Type, ae.Message, upstream.Classify(err))
	}
	var env struct {
		Type  string `json:"type"`
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(ae.Body, &env); err != nil || env.Type != "error" || env.Error.Type != "overloaded_error" ||
		!strings.HasPrefix(ae.RequestID, "req_") || env.RequestID != ae.RequestID {
		t.Errorf("APIError.Body = %s (request id %q), want the error envelope with the request id, as a result line embeds it", ae.Body, ae.RequestID)
	}
}

// TestMessagesStreamDropped checks that a stream cut before message_stop (the
// emulator's drop fault closes the connection mid-output) is a retryable
// *TransportError, not a truncated message.
func TestMessagesStreamDropped(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{Faults: emulator.Faults{Drop: 1}})
	_, err := newClient(t, em.URL).MessagesStream(context.Background(), []byte(params))
	var te *upstream.TransportError
	if !errors.As(err, &te) || te.Timeout || upstream.Classify(err) != upstream.Retry {
		t.Errorf("MessagesStream on a dropped stream = %v, want a *TransportError classed retry", err)
	}
}

// TestMessagesStreamIdleTimeout checks both halves of the stream's timeout: a stream
// that stalls after message_start (the emulator's slow fault holds the output back)
// is cut after StreamIdleTimeout, long before the stall would end; a stream that
// takes several idle timeouts in all but keeps sending completes.
func TestMessagesStreamIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = time.Second
	stalled := startEmulator(t, emulator.Config{Faults: emulator.Faults{Slow: 1, SlowDelay: time.Minute}})
	c := newClient(t, stalled.URL, func(c *upstream.Config) { c.StreamIdleTimeout = idle })
	start := time.Now()
	_, err := c.MessagesStream(context.Background(), []byte(params))
	var te *upstream.TransportError
	if !errors.As(err, &te) || !te.Timeout || upstream.Classify(err) != upstream.Retry {
		t.Errorf("MessagesStream on a stalled stream = %v, want a *TransportError with Timeout, classed retry", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("MessagesStream returned after %v: the idle timeout did not cut the minute-long stall", d)
	}

	// Haiku at the modelled speed: 400 ms to the first token, then 8 tokens every
	// 53 ms; 400 tokens take about 3 s, three idle timeouts.
	slow := startEmulator(t, emulator.Config{LatencyScale: 1, Output: emulator.OutputModel{MedianTokens: 400}})
	c = newClient(t, slow.URL, func(c *upstream.Config) { c.StreamIdleTimeout = idle })
	resp, err := c.MessagesStream(context.Background(), []byte(`{"model":"claude-haiku-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil {
		t.Fatalf("MessagesStream on a slow but live stream: %v", err)
	}
	if resp.Duration < 2*idle {
		t.Errorf("stream took %v, want more than 2 idle timeouts (%v) for the test to mean anything", resp.Duration, 2*idle)
	}
}

// TestMessagesStreamParamsRefused checks the one params shape MessagesStream will not
// send: a "stream" member other than true.
func TestMessagesStreamParamsRefused(t *testing.T) {
	t.Parallel()
	em := startEmulator(t, emulator.Config{})
	c := newClient(t, em.URL)
	_, err := c.MessagesStream(context.Background(), []byte(`{"model":"claude-haiku-4-5","max_tokens":16,"stream":false,"messages":[{"role":"user","content":"x"}]}`))
	if !errors.Is(err, upstream.ErrStreamParam) || upstream.Classify(err) != upstream.Final {
		t.Errorf(`MessagesStream with "stream": false = %v, want ErrStreamParam (final)`, err)
	}
	resp, err := c.MessagesStream(context.Background(), []byte(`{"model":"claude-haiku-4-5","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"x"}]}`))
	if err != nil || resp.StopReason == "" {
		t.Errorf(`MessagesStream with "stream": true = %v, want the message`, err)
	}
}

// BenchmarkMessagesStream compares a streamed call with a non-streaming one on the
// same emulator, for answers of 120 and 4,000 tokens (a fixed output model, so both
// modes carry the same number of tokens; latency off, so it measures the client and
// the emulator's framing, not the model).
func BenchmarkMessagesStream(b *testing.B) {
	for _, tokens := range []int{120, 4000} {
		em := emulator.StartTB(b, emulator.Config{Tier: "unlimited", APIKeys: []string{testKey},
			Output: emulator.OutputModel{MedianTokens: float64(tokens)}})
		c, err := upstream.New(upstream.Config{BaseURL: em.URL, APIKey: upstream.NewSecret(testKey)})
		if err != nil {
			b.Fatal(err)
		}
		p := []byte(`{"model":"claude-haiku-4-5","max_tokens":8000,"messages":[{"role":"user","content":"Say hi"}]}`)
		for _, mode := range []struct {
			name string
			call func(context.Context, []byte) (*upstream.Response, error)
		}{{"json", c.Messages}, {"stream", c.MessagesStream}} {
			b.Run(mode.name+"/tokens="+strconv.Itoa(tokens), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := mode.call(context.Background(), p); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
